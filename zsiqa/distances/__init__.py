"""Distance heads: the parameter-free comparisons of reference and distorted features, by name.

``registry`` holds the ``DistanceHead`` record and the registry; ``catalog`` registers the ZS-IQA heads (``basic``:
l2 / cos, ``distribution``: skld / jsd / wsd / swd), ``deepssim`` registers DeepSSIM.
"""
from __future__ import annotations

from . import catalog, deepssim  # noqa: F401  (they register their heads)
from .registry import DISTANCES, DistanceHead, Feats, register_distance


def get_distance(name: str) -> DistanceHead:
    return DISTANCES.get(name)


def list_distances() -> list[str]:
    return DISTANCES.names()


__all__ = ["DISTANCES", "DistanceHead", "Feats", "get_distance", "list_distances", "register_distance"]
