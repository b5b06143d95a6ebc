"""Distance-head registry: name -> ``DistanceHead``.

Features arrive as one tensor per tapped layer, with a leading window axis ``M`` (= images x windows):
``[M, T, C]`` for token layouts (ViTs) or ``[M, C, H, W]`` for feature maps (CNNs); ``ndim`` tells which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import ConfigError

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
    """

    name: str
    fn: Callable[..., torch.Tensor]
    lower_better: bool = True
    kind: str = "window"
    layer_terms: Callable[[Feats, Feats], torch.Tensor] | None = None
    channel_terms: Callable[[Feats, Feats], list[torch.Tensor]] | None = None
    doc: str = ""


_REGISTRY: dict[str, DistanceHead] = {}


def register_distance(head: DistanceHead) -> DistanceHead:
    if head.name in _REGISTRY:
        raise ValueError(f"distance {head.name!r} registered twice")
    _REGISTRY[head.name] = head
    return head


def get_distance(name: str) -> DistanceHead:
    _load()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown distance {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_distances() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def _load() -> None:
    """Import the modules that register heads."""
    from . import deepssim, heads  # noqa: F401


__all__ = ["DistanceHead", "Feats", "get_distance", "list_distances", "register_distance"]
