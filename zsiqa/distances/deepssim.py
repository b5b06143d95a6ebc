"""DeepSSIM (Zhang, Chen, Zhao, Wang, TPAMI 2025): SSIM's structure term on 4x4 blocks of the channel Gram matrix.

The official metric is backbone ``vgg16`` (relu5_1, whole image) + head ``deepssim``. The Gram matrix ignores where
features are, so the reference and distorted images may differ in size (retargeting, geometric disparity).

Saliency calibration (the official ``wSC`` variant) happens in the backbone: binarise each image's saliency map with
``saliency_mask`` and pass it to ``deepssim_score(..., ref_mask=, dis_mask=)``; it reaches the ``vgg16`` backbone's
``taps(x, mask=)``, which multiplies it into the conv1_1 maps.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .registry import DistanceHead, Feats, register_distance

if TYPE_CHECKING:  # a distance compares features; it never builds or imports a backbone
    from ..backbones.base import Backbone


def gram(f: torch.Tensor) -> torch.Tensor:
    """``[N, C, P]`` (channels x positions) -> ``[N, C, C]`` = F F^T, not normalised."""
    return f @ f.transpose(1, 2)


def block_ssim(g_ref: torch.Tensor, g_dis: torch.Tensor, block: int = 4, c: float = 1e-6) -> torch.Tensor:
    """Mean over non-overlapping ``block x block`` blocks of ``(2 s_xy + c) / (s_x^2 + s_y^2 + c)`` -> ``[N]``.

    Statistics are population ones (divided by block*block). ``g_*``: ``[N, C, C]`` with ``C`` divisible by ``block``.
    """
    if g_ref.shape != g_dis.shape or g_ref.ndim != 3 or g_ref.shape[1] != g_ref.shape[2]:
        raise ValueError(
            f"block_ssim needs two [N, C, C] matrices of one shape, got {list(g_ref.shape)} and {list(g_dis.shape)}"
        )
    n, ch, _ = g_ref.shape
    if ch % block:
        raise ValueError(f"block={block} must divide the number of channels C={ch}")

    def blocks(g: torch.Tensor) -> torch.Tensor:  # [N, C, C] -> [N, (C/block)^2, block*block]
        return g.reshape(n, ch // block, block, ch // block, block).transpose(2, 3).reshape(n, -1, block * block)

    x, y = blocks(g_ref), blocks(g_dis)
    dx = x - x.mean(-1, keepdim=True)
    dy = y - y.mean(-1, keepdim=True)
    var_x, var_y, cov = dx.square().mean(-1), dy.square().mean(-1), (dx * dy).mean(-1)
    return ((2 * cov + c) / (var_x + var_y + c)).mean(-1)


def gram_ssim(
    f_ref: torch.Tensor, f_dis: torch.Tensor, block: int = 4, c: float = 1e-6, normalize: bool = False
) -> torch.Tensor:
    """DeepSSIM of features ``[N, C, P_ref]`` and ``[N, C, P_dis]`` (P may differ) -> ``[N]``, higher = more similar.

    Always computed in fp32 (fp64 stays fp64) with autocast off: un-normalised Gram entries reach 1e8 and block
    variances 1e16, which overflow fp16. ``normalize`` divides each Gram by ``C * P`` (DeepSSIM-Lite).
    """
    if f_ref.ndim != 3 or f_dis.ndim != 3 or f_ref.shape[:2] != f_dis.shape[:2]:
        raise ValueError(
            f"gram_ssim needs [N, C, P] features with equal N and C, got {list(f_ref.shape)} and {list(f_dis.shape)}"
        )
    dtype = torch.promote_types(f_ref.dtype, torch.float32)
    with torch.autocast(device_type=f_ref.device.type, enabled=False):
        g_ref, g_dis = gram(f_ref.to(dtype)), gram(f_dis.to(dtype))
        if normalize:
            g_ref = g_ref / (f_ref.shape[1] * f_ref.shape[2])
            g_dis = g_dis / (f_dis.shape[1] * f_dis.shape[2])
        return block_ssim(g_ref, g_dis, block, c)


def image_features(f: torch.Tensor, k: int) -> torch.Tensor:
    """One tap with ``k`` windows per image -> ``[N, C, k*P]``: every token/position of an image's windows side by side.

    Tokens ``[N*k, T, C]`` or maps ``[N*k, C, H, W]``. The Gram of the result is the sum of the window Grams.
    """
    if f.shape[0] % k:
        raise ValueError(f"a tap with {f.shape[0]} windows is not a whole number of images of k={k} windows")
    n = f.shape[0] // k
    if f.ndim == 3:
        return f.reshape(n, k * f.shape[1], f.shape[2]).transpose(1, 2)
    if f.ndim == 4:
        return f.reshape(n, k, f.shape[1], -1).transpose(1, 2).reshape(n, f.shape[1], -1)
    raise ValueError(f"a tap must be tokens [M, T, C] or maps [M, C, H, W], got {list(f.shape)}")


def deepssim_distance(ref: Feats, dis: Feats, k_ref: int, k_dis: int) -> torch.Tensor:
    """Gram-SSIM per tapped layer on all windows of each image, averaged over layers -> ``[N]`` in fp32."""
    if len(ref) != len(dis):
        raise ValueError(f"reference has {len(ref)} taps but distorted has {len(dis)}")
    layers = [gram_ssim(image_features(r, k_ref), image_features(d, k_dis)) for r, d in zip(ref, dis)]
    return torch.stack(layers, 1).mean(1)


def saliency_mask(saliency: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Binarise saliency maps in [0, 1] (``[N, H, W]`` or ``[N, C, H, W]``, channel 0 is used) -> ``[N, 1, H, W]``.

    As in the official code: 1 where saliency > ``threshold`` (0; the authors allow 0.01-0.05), else 0.
    """
    if saliency.ndim == 3:
        saliency = saliency.unsqueeze(1)
    if saliency.ndim != 4:
        raise ValueError(f"saliency must be [N, H, W] or [N, C, H, W], got {list(saliency.shape)}")
    return (saliency[:, :1] > threshold).to(torch.float32)


def deepssim_score(
    backbone: Backbone,
    ref: torch.Tensor,
    dis: torch.Tensor,
    ref_mask: torch.Tensor | None = None,
    dis_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """DeepSSIM of RGB images in [0, 1], ``ref [N, 3, H, W]`` vs ``dis [N, 3, H', W']`` -> ``[N]``, higher = better.

    The backbone runs on whole images (``window is None``; ``vgg16`` is the official one). Masks (see
    ``saliency_mask``) give the saliency-calibrated variant and need the ``vgg16`` backbone.
    """
    if backbone.window is not None:
        raise ValueError(
            f"deepssim_score runs the backbone on whole images, but {backbone.name!r} runs on {backbone.window}px "
            "windows; score windowed backbones through the metric with distance='deepssim'"
        )
    if (ref_mask is not None or dis_mask is not None) and not backbone.takes_mask:
        raise ValueError(f"saliency masks need the 'vgg16' backbone (its conv1_1 hook), got {backbone.name!r}")

    def taps(x: torch.Tensor, mask: torch.Tensor | None) -> Feats:
        mean = torch.tensor(backbone.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(backbone.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - mean) / std
        return backbone.taps(x) if mask is None else backbone.taps(x, mask=mask)

    return deepssim_distance(taps(ref, ref_mask), taps(dis, dis_mask), 1, 1)


register_distance(
    DistanceHead(
        name="deepssim",
        fn=deepssim_distance,
        lower_better=False,
        kind="image",
        doc="DeepSSIM: SSIM structure term on 4x4 blocks of each layer's channel Gram (all windows of an image "
        "pooled), layers averaged; with backbone vgg16 it is the official metric. Higher = more similar.",
    )
)
