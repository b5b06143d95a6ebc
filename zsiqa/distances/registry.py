"""The distance-head record and its registry.

Features arrive as one tensor per tapped layer, with a leading window axis ``M`` (= images x windows):
``[M, T, C]`` for token layouts (ViTs) or ``[M, C, H, W]`` for feature maps (CNNs); ``ndim`` tells which.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..registry import Registry

Feats = list[torch.Tensor]


@dataclass(frozen=True)
class DistanceHead:
    """A parameter-free comparison of reference and distorted features.

    kind:
      "window" -> ``fn(ref, dis) -> [M]`` one score per window; the metric averages windows per image.
      "embed"  -> like "window" but on the backbone's final embedding (``[M, D]`` or ``[M, T, D]``).
      "image"  -> ``fn(ref, dis, k_ref, k_dis) -> [N]``: sees all ``k`` windows of each image at once, so
                  reference and distorted images may have different sizes (Gram-based heads).
    layer_terms: ``(ref, dis) -> [M, L]`` whose sum over L equals ``fn`` (l2, cos): what train.py weights.
    channel_terms: ``(ref, dis) -> list of L tensors [M, C_l]`` whose sum over C_l equals the layer term.
    fused: the kernel of ``zsiqa.distances.fused`` that gives exactly ``fn``'s scores while sharing intermediates
      with the other heads of a pass (one of ``fused.KERNELS``); None runs ``fn`` itself.
    differentiable: a deterministic, differentiable function of the features (usable as a loss; gradchecked).
    """

    name: str
    fn: Callable[..., torch.Tensor]
    lower_better: bool = True
    kind: str = "window"
    layer_terms: Callable[[Feats, Feats], torch.Tensor] | None = None
    channel_terms: Callable[[Feats, Feats], list[torch.Tensor]] | None = None
    doc: str = ""
    fused: str | None = None
    differentiable: bool = True


DISTANCES: Registry[DistanceHead] = Registry("distance", hint="see `zsiqa list`")


def register_distance(head: DistanceHead) -> DistanceHead:
    """Register ``head`` under its name."""
    return DISTANCES.register(head)
