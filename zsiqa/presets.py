"""Presets: ``paper`` reproduces the official code bit for bit, ``fixed`` is the same method with its bugs fixed.

One table for the feature settings (``zsiqa.metric.FRMetric``), the distance a preset runs (``resolve_distance``)
and the robustness transforms' variants (``zsiqa.transforms``).
"""
from __future__ import annotations

from dataclasses import dataclass

from .choices import Preset


@dataclass(frozen=True)
class PresetSettings:
    """normalize: backbone mean/std on the input. paper_dtype: the model in the dtype the authors ran it in on CUDA
    (fp16 for OpenAI CLIP). fp32_distances: distances in fp32 (else in the feature dtype). fixed_variants: distances
    swapped for their fixed variants where one exists (``FIXED_VARIANTS``)."""

    normalize: bool
    paper_dtype: bool
    fp32_distances: bool
    fixed_variants: bool


PRESETS = {
    # Exactly the official code: raw [0, 1] input, the authors' dtype, distances in the feature dtype.
    Preset.paper: PresetSettings(normalize=False, paper_dtype=True, fp32_distances=False, fixed_variants=False),
    # The same method with its bugs fixed (docs/reference/distances.md, "Paper quirks").
    Preset.fixed: PresetSettings(normalize=True, paper_dtype=False, fp32_distances=True, fixed_variants=True),
}
FIXED_VARIANTS = {"cos": "cos_channel", "swd": "swd_fixed"}


def preset_settings(preset: str) -> PresetSettings:
    """The settings of ``preset`` ("paper" or "fixed"); an unknown name is a ``ConfigError`` listing both."""
    return PRESETS[Preset.of(preset, "preset")]


def resolve_distance(name: str, preset: str) -> str:
    """The distance a preset actually runs: ``fixed`` swaps a head for its fixed variant where one exists."""
    return FIXED_VARIANTS.get(name, name) if preset_settings(preset).fixed_variants else name
