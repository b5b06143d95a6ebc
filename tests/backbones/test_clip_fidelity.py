"""OpenAI CLIP fidelity: TorchScript checkpoints as ``weights=``, and fp16 cast the way ``clip.load`` casts.

The reference is the ``clip`` package's own ``model.py`` (clip-anytorch), loaded from its file because the package's
``__init__`` needs ``pkg_resources``. Tiny architectures registered with open_clip keep these tests fast; they use the
same module classes, so the same state names and casting rules, as ViT-B/32 and RN50.
"""
import importlib.util
import json
from pathlib import Path

import open_clip
import pytest
import torch

from zsiqa.backbones import create_backbone
from zsiqa.distances import get_distance
from zsiqa.errors import ConfigError

TINY = {
    "zsiqa-test-tiny-vit": {"image_size": 64, "layers": 2, "width": 128, "patch_size": 32},
    "zsiqa-test-tiny-rn": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 32},
}


def openai_clip_model():
    """clip-anytorch's ``clip/model.py`` as a module (``build_model``, ``convert_weights``: what ``clip.load`` runs)."""
    path = Path(importlib.util.find_spec("clip").origin).parent / "model.py"
    spec = importlib.util.spec_from_file_location("openai_clip_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_archs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("open_clip_configs")
    for arch, vision in TINY.items():
        cfg = {"embed_dim": 64, "quick_gelu": True, "vision_cfg": vision,
               "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 64, "heads": 1, "layers": 1}}
        (folder / f"{arch}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    return list(TINY)


def random_state(arch: str) -> dict[str, torch.Tensor]:
    """Random weights with non-trivial norm parameters (fresh LayerNorm/BatchNorm weights are exactly 1 and 0, which
    would hide whether they are cast)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = open_clip.create_model(arch, pretrained=None)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.ndim == 1 and (".ln" in name or "ln_" in name or ".bn" in name):
                    p.add_(torch.randn_like(p) * 0.1)
    return model.state_dict()


def openai_taps(model, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The official hooks' taps (resblock outputs / avgpool + layer1..4) and the embedding of OpenAI's model."""
    visual = model.visual
    resnet = hasattr(visual, "layer1")
    modules = [visual.avgpool, visual.layer1, visual.layer2, visual.layer3, visual.layer4] if resnet else \
        list(visual.transformer.resblocks)
    taps = []
    hooks = [m.register_forward_hook(lambda m, i, o: taps.append(o)) for m in modules]
    with torch.no_grad():
        emb = model.encode_image(x.type(model.dtype))
    for h in hooks:
        h.remove()
    return (taps if resnet else [t.permute(1, 0, 2) for t in taps]), emb


@pytest.mark.parametrize("arch", list(TINY))
def test_fp16_cast_equals_clip_load(tiny_archs, arch):
    """Under fp16 the taps and embedding equal OpenAI's clip model with clip.load's casting, bit for bit on the CPU;
    casting the whole tower (what zsiqa did before) does not."""
    state = random_state(arch)
    reference = openai_clip_model().build_model({k: v.clone() for k, v in state.items()})  # fp16 as clip.load
    x = torch.rand(2, 3, 64, 64)
    want_taps, want_emb = openai_taps(reference, x)

    backbone = create_backbone(f"open_clip:{arch}:none", pretrained=False)
    backbone.visual.load_state_dict({k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")})
    whole = create_backbone(f"open_clip:{arch}:none", pretrained=False)
    whole.load_state_dict(backbone.state_dict())
    whole.to(torch.float16)
    backbone.cast(torch.float16)
    assert backbone.visual.conv1.weight.dtype == torch.float16
    norms = {f"{m}.{p}" for m, module in backbone.visual.named_modules()
             if isinstance(module, (torch.nn.LayerNorm, torch.nn.BatchNorm2d)) for p in ("weight", "bias")}
    kept = {n for n, p in backbone.visual.named_parameters() if p.dtype == torch.float32}
    assert kept == norms | {n for n in kept if n.endswith("embedding")} and norms <= kept
    with torch.no_grad():
        taps, emb = backbone.taps(x.half()), backbone.embed(x.half())
        whole_taps = whole.taps(x.half())
    assert all(torch.equal(a, b) for a, b in zip(taps, want_taps)) and len(taps) == len(want_taps)
    assert torch.equal(emb, want_emb)
    if arch.endswith("vit"):  # LayerNorm and the attention path differ when the whole tower is fp16
        assert not all(torch.equal(a, b) for a, b in zip(whole_taps, want_taps))

    backbone.cast(torch.float32)  # back to fp32: every parameter
    assert all(p.dtype == torch.float32 for p in backbone.parameters())


def test_fp16_cast_scores_through_the_metric(tiny_archs):
    """The metric's fp16 path goes through Backbone.cast: l2 of the cast taps, in the feature dtype (paper preset)."""
    from zsiqa.metric import FRMetric

    backbone = create_backbone("open_clip:zsiqa-test-tiny-vit:none", pretrained=False)
    metric = FRMetric(backbone, get_distance("l2"), preset="paper", precision="fp16")
    ref, dis = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    score = metric(ref, dis)
    assert backbone.visual.ln_pre.weight.dtype == torch.float32 and backbone.visual.conv1.weight.dtype == torch.float16
    with torch.no_grad():
        expected = get_distance("l2").fn(backbone.taps(ref.half()), backbone.taps(dis.half())).float()
    assert torch.equal(score, expected)


def scripted_openai_checkpoint(state: dict, path: Path) -> dict[str, torch.Tensor]:
    """An OpenAI-style TorchScript archive at ``path``: clip's model (cast by ``convert_weights``, as released) traced
    and saved with torch.jit; returns that model's state dict."""
    model = openai_clip_model().build_model({k: v.clone() for k, v in state.items()})
    size = model.visual.input_resolution
    scripted = torch.jit.trace_module(model, {"encode_image": torch.rand(1, 3, size, size).half()}, check_trace=False)
    with open(path, "wb") as f:  # a file object: on a full disk jit.save given a name aborts the whole test run
        torch.jit.save(scripted, f)
    return model.state_dict()


def test_torchscript_checkpoint_loads_as_weights(tiny_archs, tmp_path):
    arch = "zsiqa-test-tiny-vit"
    state = random_state(arch)
    path = tmp_path / "tiny.pt"
    saved = scripted_openai_checkpoint(state, path)
    backbone = create_backbone(f"open_clip:{arch}:none", weights=str(path))
    for name, value in backbone.visual.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, saved[f"visual.{name}"].float()), name  # the file's values (fp16 or fp32), as fp32
    assert saved["visual.conv1.weight"].dtype == torch.float16

    scripted_openai_checkpoint(random_state("zsiqa-test-tiny-rn"), tmp_path / "rn.pt")
    with pytest.raises(ConfigError, match=r"rn.pt does not fit open_clip 'zsiqa-test-tiny-vit'"):
        create_backbone(f"open_clip:{arch}:none", weights=str(tmp_path / "rn.pt"))


@pytest.mark.slow
def test_torchscript_vit_b_32_checkpoint_loads_into_clip_vitb32(tmp_path):
    """A random ViT-B/32 saved as OpenAI's ViT-B-32.pt is (TorchScript, fp16, OpenAI state names) loads into clip_vitb32."""
    saved = scripted_openai_checkpoint(random_state("ViT-B-32-quickgelu"), tmp_path / "ViT-B-32.pt")
    backbone = create_backbone("clip_vitb32", weights=str(tmp_path / "ViT-B-32.pt"))
    for name, value in backbone.visual.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, saved[f"visual.{name}"].float()), name
