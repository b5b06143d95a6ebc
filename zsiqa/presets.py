"""Presets: ``paper`` reproduces the official code bit for bit, ``fixed`` is the same method with its bugs fixed.

One registry for the feature settings (``zsiqa.metric.FRMetric``), the distance a preset runs (``resolve_distance``)
and the robustness transforms' variants (``zsiqa.transforms``).
"""
from __future__ import annotations

from .errors import ConfigError
from .registry import Registry

PRESETS: Registry[dict] = Registry("preset", error=ConfigError)
# Exactly the official code: raw [0, 1] input (no mean/std), the model in the dtype the authors ran it in on CUDA
# (fp16 for OpenAI CLIP), distances computed in the feature dtype, distance names taken as given.
PRESETS.register("paper", {"normalize": False, "paper_dtype": True, "fp32_distances": False, "fixed_variants": False})
# The same method with its bugs fixed: backbone mean/std normalisation, fp32 throughout, and distances swapped
# for their fixed variants where one exists (see FIXED_VARIANTS and the README's table).
PRESETS.register("fixed", {"normalize": True, "paper_dtype": False, "fp32_distances": True, "fixed_variants": True})
FIXED_VARIANTS = {"cos": "cos_channel", "swd": "swd_fixed"}


def resolve_distance(name: str, preset: str) -> str:
    """The distance a preset actually runs: ``fixed`` swaps a head for its fixed variant where one exists."""
    return FIXED_VARIANTS.get(name, name) if PRESETS.get(preset)["fixed_variants"] else name
