"""The one registry helper (one record type per registry, registered by its name), and that every registry of the
package uses it."""
from dataclasses import dataclass

import pytest

from zsiqa.backbones import BACKBONES
from zsiqa.baselines import BASELINES
from zsiqa.data import DATASETS
from zsiqa.distances import DISTANCES
from zsiqa.errors import ConfigError, InputError
from zsiqa.losses import MOS_LOSSES
from zsiqa.presets import PRESETS, preset_settings
from zsiqa.registry import Registry
from zsiqa.transforms import TRANSFORMS


@dataclass(frozen=True)
class Colour:
    name: str
    hex: str


def test_register_get_and_list():
    reg = Registry("colour")
    red, blue = reg.register(Colour("red", "#f00")), reg.register(Colour("blue", "#00f"))
    assert reg.get("red") is red and reg["blue"] is blue and reg.names() == ["blue", "red"]
    assert list(reg) == ["red", "blue"] and "red" in reg and "green" not in reg and len(reg) == 2
    assert reg.items() == [("red", red), ("blue", blue)]
    with pytest.raises(ValueError, match="colour 'red' registered twice"):
        reg.register(Colour("red", "#e00"))


def test_unknown_name_is_one_clear_error_naming_the_choices():
    reg = Registry("colour", hint="or any hex code")
    reg.register(Colour("red", "#f00"))
    with pytest.raises(ConfigError, match=r"unknown colour 'green'; available: red; or any hex code"):
        reg.get("green")
    with pytest.raises(InputError, match="unknown colour"):
        Registry("colour", error=InputError).get("green")


def test_registries_load_their_entries_once_on_first_lookup():
    calls = []
    reg = Registry("colour", load=lambda: calls.append(reg.register(Colour("red", "#f00"))))
    assert calls == []
    assert reg.names() == ["red"] and reg.get("red").hex == "#f00" and len(calls) == 1


@pytest.mark.parametrize("registry, known", [
    (BACKBONES, "vgg16"), (DISTANCES, "wsd"), (BASELINES, "psnr"), (DATASETS, "tid2013"), (TRANSFORMS, "rot"),
    (MOS_LOSSES, "fidelity"),
])
def test_every_registry_uses_the_helper(registry, known):
    assert isinstance(registry, Registry) and known in registry.names()
    assert len({type(entry) for _, entry in registry.items()}) == 1  # one record type, each named as registered
    assert all(entry.name == name for name, entry in registry.items())
    with pytest.raises(ConfigError, match=f"unknown {registry.kind} 'nope'; available: .*{known}"):
        registry.get("nope")


def test_a_backbone_is_registered_with_its_weight_source():
    from zsiqa.backbones.weights import UrlWeights, weight_source

    entry = BACKBONES.get("vgg16")
    assert isinstance(entry.weights, UrlWeights) and entry.weights.url.endswith("vgg16-397923af.pth")
    assert weight_source("vgg16") is entry.weights


def test_presets_are_a_closed_choice():
    assert list(PRESETS) == ["paper", "fixed"] and preset_settings("fixed").normalize is True
    with pytest.raises(ConfigError, match="preset=fixd: choose one of paper, fixed \\(did you mean fixed\\?\\)"):
        preset_settings("fixd")
