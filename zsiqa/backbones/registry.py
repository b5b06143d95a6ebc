"""The backbone registry: a name -> its builder, a one-line description and where its pretrained weights come from
(registered together, as timm registers a model with its pretrained config), plus generic ``<prefix>:...`` builders."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..registry import Registry
from .base import BackboneBuilder

if TYPE_CHECKING:
    from .weights import WeightSource


@dataclass(frozen=True)
class BackboneEntry:
    """``build(name, pretrained, weights) -> Backbone``, its description and its pretrained weight source."""

    name: str
    build: BackboneBuilder
    doc: str
    weights: WeightSource | None


BACKBONES: Registry[BackboneEntry] = Registry(
    "backbone", hint="or a generic form: timm:<model_name>, open_clip:<arch>:<pretrained_tag>")
@dataclass(frozen=True)
class BackbonePrefix:
    """``build(full_name, pretrained, weights) -> Backbone`` for every name ``<name>:<rest>``."""

    name: str
    build: BackboneBuilder


PREFIXES: Registry[BackbonePrefix] = Registry("backbone prefix")


def register_backbone(name: str, doc: str = "", weights: WeightSource | None = None):
    """Decorator: register ``builder(name, pretrained: bool, weights: str | None) -> Backbone`` under ``name``, with
    the source of its pretrained weights (used by ``zsiqa download`` and in logs)."""

    def deco(builder: BackboneBuilder) -> BackboneBuilder:
        BACKBONES.register(BackboneEntry(name, builder, doc, weights))
        return builder

    return deco


def register_prefix(prefix: str):
    """Decorator: register a builder for every name ``<prefix>:<rest>``; it receives the full name."""

    def deco(builder: BackboneBuilder) -> BackboneBuilder:
        PREFIXES.register(BackbonePrefix(prefix, builder))
        return builder

    return deco
