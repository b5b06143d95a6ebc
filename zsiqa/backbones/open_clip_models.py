"""open_clip backbones: OpenAI CLIP ViT-B/32 and RN50, LAION ViT-B/32 and ConvNeXt-Base-W, and any
``open_clip:<arch>:<tag>``. Only the image tower is kept."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..errors import ConfigError
from .base import Backbone
from .registry import register_backbone, register_prefix
from .timm_models import vit_block_tokens
from .weights import RANDOM_TAGS, OpenClipWeights, create_open_clip, parse_open_clip_name


class OpenClipBackbone(Backbone):
    """Common part: holds ``visual`` (the image tower); embed = ``encode_image`` before normalisation, ``[B, D]``."""

    def __init__(self, name: str, visual: nn.Module, mean: tuple, std: tuple, window: int | None) -> None:
        super().__init__(name)
        self.visual = visual
        self.mean, self.std, self.window = tuple(mean), tuple(std), window

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


class OpenAICastMixin:
    """fp16 the way ``clip.load`` runs OpenAI CLIP on CUDA (its ``convert_weights``): only convolution, linear and
    attention weights and the output projection are fp16; LayerNorm / BatchNorm parameters and the class and position
    embeddings stay fp32 (the embeddings are rounded to fp16 where they are added). LayerNorm normalises in fp32 and
    rounds its output to fp16, as OpenAI's ``LayerNorm`` subclass does (open_clip's own ``precision="fp16"`` casts the
    same way, so other open_clip ViTs and ResNets share it). Other dtypes convert the whole tower."""

    visual: nn.Module

    def cast(self, dtype: torch.dtype) -> None:
        if dtype != torch.float16:
            super().cast(dtype)
            return
        if self.visual.conv1.weight.dtype == torch.float16:
            return
        from open_clip.model import convert_weights_to_lp
        from open_clip.transformer import LayerNormFp32

        self.float()
        convert_weights_to_lp(self.visual, torch.float16)
        for module in self.visual.modules():
            if isinstance(module, nn.LayerNorm):
                module.__class__ = LayerNormFp32  # open_clip's fp32-normalising LayerNorm; identical in fp32

    @property
    def clip_fp16(self) -> bool:
        return self.visual.conv1.weight.dtype == torch.float16


@contextmanager
def _plain_attention(enabled: bool) -> Iterator[None]:
    """Without PyTorch's fused inference path for ``nn.MultiheadAttention``, which open_clip's batch-first blocks take
    and OpenAI's sequence-first blocks never do: in fp16 the two round differently (about 1e-3 relative per block)."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(previous and not enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


class OpenClipViT(OpenAICastMixin, OpenClipBackbone):
    """open_clip VisionTransformer. Taps = each ``transformer.resblocks[i]`` output, ``[B, 1 + N, C]`` with CLS first
    (ln_pre applied at the input, no ln_post), as the official code hooks them."""

    layout = "tokens"

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        with _plain_attention(self.clip_fp16):
            out = self.visual.forward_intermediates(x, intermediates_only=True, output_fmt="NLC",
                                                    output_extra_tokens=True)
        return [torch.cat([prefix, tokens], dim=1)
                for tokens, prefix in zip(out["image_intermediates"], out["image_intermediates_prefix"])]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        with _plain_attention(self.clip_fp16):
            return self.visual(x)


class OpenClipResNet(OpenAICastMixin, OpenClipBackbone):
    """OpenAI ModifiedResNet. Taps = stem output (after its AvgPool2d(2), the official ``visual.avgpool`` hook),
    layer1..layer4: 5 maps. Embed = attention-pool output."""

    layout = "maps"

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.visual.forward_intermediates(x, intermediates_only=True)["image_intermediates"]


class OpenClipTimmTrunk(OpenClipBackbone):
    """open_clip image tower around a timm trunk. Staged CNN trunks (ConvNeXt): taps = the output of every block of
    every stage (forward hooks); ViT trunks: every block's tokens."""

    def __init__(self, name: str, visual: nn.Module, mean: tuple, std: tuple, window: int | None) -> None:
        super().__init__(name, visual, mean, std, window)
        trunk = visual.trunk
        if hasattr(trunk, "num_prefix_tokens"):
            self.layout = "tokens"
        elif hasattr(trunk, "stages") and all(hasattr(stage, "blocks") for stage in trunk.stages):
            self.layout = "maps"
            self._outputs: list[torch.Tensor] | None = None  # a list only while taps() runs
            for stage in trunk.stages:
                for block in stage.blocks:
                    block.register_forward_hook(self._record)
        else:
            raise ConfigError(f"backbone {name!r}: open_clip timm trunk {type(trunk).__name__} has neither stages of "
                             f"blocks nor ViT blocks; use timm:<model_name> for it instead")

    def _record(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self._outputs is not None:
            self._outputs.append(output)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.layout == "tokens":
            return vit_block_tokens(self.visual.trunk, x)
        self._outputs = []
        try:
            self.visual.trunk.forward_features(x)
            return self._outputs
        finally:
            self._outputs = None


def _wrap(name: str, model: nn.Module, arch: str, tag: str, window: int | None = None) -> Backbone:
    """Keep the image tower of an open_clip ``model``; mean/std from the pretrained tag, else the model's defaults."""
    import open_clip
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import VisionTransformer

    visual = model.visual
    stats = open_clip.get_pretrained_cfg(arch, tag) if tag not in RANDOM_TAGS else {}
    mean = stats.get("mean") or visual.preprocess_cfg["mean"]
    std = stats.get("std") or visual.preprocess_cfg["std"]
    if window is None:
        height, width = (visual.image_size,) * 2 if isinstance(visual.image_size, int) else visual.image_size
        window = height if height == width else None
    families = ((VisionTransformer, OpenClipViT), (ModifiedResNet, OpenClipResNet), (TimmModel, OpenClipTimmTrunk))
    for kind, cls in families:
        if isinstance(visual, kind):
            return cls(name, visual, mean, std, window)
    raise ConfigError(f"backbone {name!r}: open_clip image tower {type(visual).__name__} is not supported "
                     f"(supported: VisionTransformer, ModifiedResNet, TimmModel)")


def _register(name: str, arch: str, tag: str, doc: str, paper_dtype: torch.dtype = torch.float32,
              window: int | None = None) -> None:
    @register_backbone(name, doc, weights=OpenClipWeights(arch, tag))
    def build(name: str, pretrained: bool = True, weights: str | None = None) -> Backbone:
        backbone = _wrap(name, create_open_clip(name, arch, tag, pretrained, weights), arch, tag, window)
        backbone.paper_dtype = paper_dtype
        return backbone


_register("clip_vitb32", "ViT-B-32-quickgelu", "openai",
          "OpenAI CLIP ViT-B/32 (QuickGELU), open_clip ViT-B-32-quickgelu / openai; the paper's `clip_vitb32` "
          "(ran in fp16). 12 taps [B,50,768]; embed [B,512].", paper_dtype=torch.float16)
_register("openclip_vitb32_laion", "ViT-B-32", "laion2b_s34b_b79k",
          "OpenCLIP ViT-B/32 trained on LAION-2B, open_clip ViT-B-32 / laion2b_s34b_b79k. "
          "12 taps [B,50,768]; embed [B,512].")
_register("clip_rn50", "RN50-quickgelu", "openai",
          "OpenAI CLIP ResNet-50 (ModifiedResNet), open_clip RN50-quickgelu / openai; the paper's `clip_rn50` "
          "(ran in fp16). "
          "5 taps: stem avgpool 64@56², layer1..4 256@56², 512@28², 1024@14², 2048@7²; embed = attnpool [B,1024].",
          paper_dtype=torch.float16)
# Trained at 256 px; the paper ran it on 224 windows like the other CLIPs.
_register("openclip_convnext_base_w", "convnext_base_w", "laion2b_s13b_b82k",
          "OpenCLIP ConvNeXt-Base-W trained on LAION-2B, open_clip convnext_base_w / laion2b_s13b_b82k "
          "(= hf-hub laion/CLIP-convnext_base_w-laion2B-s13B-b82K); the paper's `openclip_convnext_base`. "
          "36 taps, one per block (3+3+27+3: 128@56², 256@28², 512@14², 1024@7²); embed [B,640].", window=224)


@register_prefix("open_clip")
def _open_clip_generic(name: str, pretrained: bool = True, weights: str | None = None) -> Backbone:
    """``open_clip:<arch>:<tag>``; tag ``none`` or empty builds a randomly initialised model."""
    arch, tag = parse_open_clip_name(name)
    return _wrap(name, create_open_clip(name, arch, tag, pretrained, weights), arch, tag)
