"""Backbone registry: name -> builder. ``create_backbone(name)`` is the only way models are made.

Registered names are exact (``dino_vitb16``); two generic prefixes reach any other model:
``timm:<model_name>`` and ``open_clip:<arch>:<pretrained_tag>``.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import Backbone, BackboneBuilder

RANDOM_INIT_SEED = 0

_REGISTRY: dict[str, tuple[BackboneBuilder, str]] = {}
_PREFIXES: dict[str, BackboneBuilder] = {}


def register_backbone(name: str, doc: str = ""):
    """Decorator: register ``builder(name, pretrained: bool, weights: str | None) -> Backbone`` under ``name``."""

    def deco(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = (builder, doc)
        return builder

    return deco


def register_prefix(prefix: str):
    """Decorator: register a builder for every name ``<prefix>:<rest>``; it receives the full name."""

    def deco(builder: BackboneBuilder) -> BackboneBuilder:
        _PREFIXES[prefix] = builder
        return builder

    return deco


def list_backbones() -> list[str]:
    """Registered backbone names (the generic ``timm:`` / ``open_clip:`` prefixes are not listed)."""
    _load_families()
    return sorted(_REGISTRY)


def backbone_doc(name: str) -> str:
    _load_families()
    return _REGISTRY[name][1]


def create_backbone(name: str, pretrained: bool = True, weights: str | None = None) -> Backbone:
    """Build a frozen, eval-mode backbone.

    pretrained: load the published weights through timm / open_clip's own hub mechanisms (cached once).
    weights: a local checkpoint file instead (implies pretrained weights, no network).
    Random-init models (``pretrained=False``) are seeded with ``RANDOM_INIT_SEED`` without touching the global RNG, so the
    same name gives the same weights in every call and every process.
    """
    _load_families()
    if name in _REGISTRY:
        builder = _REGISTRY[name][0]
    elif ":" in name and name.split(":", 1)[0] in _PREFIXES:
        builder = _PREFIXES[name.split(":", 1)[0]]
    else:
        raise ConfigError(
            f"unknown backbone {name!r}; registered: {', '.join(sorted(_REGISTRY))}; "
            f"or use a generic form: {', '.join(p + ':...' for p in sorted(_PREFIXES))}"
        )
    if pretrained or weights is not None:
        return builder(name, pretrained=pretrained, weights=weights).freeze()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return builder(name, pretrained=False, weights=None).freeze()


def _load_families() -> None:
    """Import the family modules once; each registers its names on import."""
    from . import families  # noqa: F401


__all__ = ["Backbone", "create_backbone", "list_backbones", "register_backbone", "register_prefix", "backbone_doc"]
