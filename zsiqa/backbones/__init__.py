"""Backbones by name: ``create_backbone(name)`` is the only way models are made.

Registered names are exact (``dino_vitb16``); two generic prefixes reach any other model:
``timm:<model_name>`` and ``open_clip:<arch>:<pretrained_tag>``. Each family module (``timm_models``,
``open_clip_models``, ``vgg``) registers its names with their weight sources (``registry``) on import.
"""
from __future__ import annotations

import torch

from . import open_clip_models, timm_models, vgg  # noqa: F401  (they register their backbones)
from .base import Backbone, BackboneBuilder
from .registry import BACKBONES, PREFIXES, register_backbone, register_prefix

RANDOM_INIT_SEED = 0


def list_backbones() -> list[str]:
    """Registered backbone names (the generic ``timm:`` / ``open_clip:`` prefixes are not listed)."""
    return BACKBONES.names()


def backbone_doc(name: str) -> str:
    return BACKBONES.get(name).doc


def _builder(name: str) -> BackboneBuilder:
    prefix = name.split(":", 1)[0]
    if name not in BACKBONES and ":" in name and prefix in PREFIXES:
        return PREFIXES.get(prefix).build
    return BACKBONES.get(name).build


def create_backbone(name: str, pretrained: bool = True, weights: str | None = None) -> Backbone:
    """Build a frozen, eval-mode backbone.

    pretrained: load the published weights through timm / open_clip's own hub mechanisms (cached once).
    weights: a local checkpoint file instead (implies pretrained weights, no network).
    Random-init models (``pretrained=False``) are seeded with ``RANDOM_INIT_SEED`` without touching the global RNG, so the
    same name gives the same weights in every call and every process.
    """
    builder = _builder(name)
    if pretrained or weights is not None:
        return builder(name, pretrained=pretrained, weights=weights).freeze()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return builder(name, pretrained=False, weights=None).freeze()


__all__ = ["BACKBONES", "Backbone", "backbone_doc", "create_backbone", "list_backbones", "register_backbone",
           "register_prefix"]
