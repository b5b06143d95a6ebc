"""The one registry helper, and that every registry of the package uses it."""
import pytest

from zsiqa.backbones import BACKBONES
from zsiqa.baselines import BASELINES
from zsiqa.data import DATASETS
from zsiqa.distances import DISTANCES
from zsiqa.engine.mos_objectives import MOS_LOSSES
from zsiqa.errors import ConfigError, InputError
from zsiqa.presets import PRESETS
from zsiqa.registry import Registry
from zsiqa.transforms import TRANSFORMS


def test_register_get_and_list():
    reg = Registry("colour")
    reg.register("red", 1)

    @reg.register("blue")
    def blue():
        return 2

    assert reg.get("red") == 1 and reg["blue"] is blue and reg.names() == ["blue", "red"]
    assert list(reg) == ["red", "blue"] and "red" in reg and "green" not in reg and len(reg) == 2
    with pytest.raises(ValueError, match="colour 'red' registered twice"):
        reg.register("red", 3)


def test_unknown_name_is_one_clear_error_naming_the_choices():
    reg = Registry("colour", hint="or any hex code")
    reg.register("red", 1)
    with pytest.raises(ConfigError, match=r"unknown colour 'green'; available: red; or any hex code"):
        reg.get("green")
    with pytest.raises(InputError, match="unknown colour"):
        Registry("colour", error=InputError).get("green")


def test_registries_load_their_entries_once_on_first_lookup():
    calls = []
    reg = Registry("colour", load=lambda: calls.append(reg.register("red", 1)))
    assert calls == []
    assert reg.names() == ["red"] and reg.get("red") == 1 and calls == [1]


@pytest.mark.parametrize("registry, known", [
    (BACKBONES, "vgg16"), (DISTANCES, "wsd"), (BASELINES, "psnr"), (DATASETS, "tid2013"), (TRANSFORMS, "rot"),
    (MOS_LOSSES, "fidelity"), (PRESETS, "paper"),
])
def test_every_registry_uses_the_helper(registry, known):
    assert isinstance(registry, Registry) and known in registry.names()
    with pytest.raises(ConfigError, match=f"unknown {registry.kind} 'nope'; available: .*{known}"):
        registry.get("nope")


def test_a_backbone_is_registered_with_its_weight_source():
    from zsiqa.backbones.weights import UrlWeights, weight_source

    entry = BACKBONES.get("vgg16")
    assert isinstance(entry.weights, UrlWeights) and entry.weights.url.endswith("vgg16-397923af.pth")
    assert weight_source("vgg16") is entry.weights
