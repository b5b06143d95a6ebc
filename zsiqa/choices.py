"""Every choice a user makes by name, one Enum each: the config schema, the API and the engine share them.

A ``Choice`` equals its value (``Preset.paper == "paper"``) and prints as it, so strings from the API, the command
line and saved configs compare and hash as before.
"""
from __future__ import annotations

from enum import Enum

from .errors import ConfigError, choose_one


class Choice(str, Enum):
    """A config choice: equal to its value, and printed as it (``paper``, not ``Preset.paper``)."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def of(cls, value: object, key: str):
        """``value`` (a member or its string) as a member, else ``ConfigError``: 'KEY=VALUE: choose one of ...'."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(choose_one(key, value, [m.value for m in cls])) from None


class Preset(Choice):
    """``paper``: the official code bit for bit; ``fixed``: its bugs fixed."""

    paper = "paper"
    fixed = "fixed"


class Align(Choice):
    """Reference and distorted sizes differ: ``error``, ``resize`` the distorted image, or ``auto`` (resize only
    after a size-changing transform)."""

    auto = "auto"
    error = "error"
    resize = "resize"


class Weighting(Choice):
    """What train.py learns: one weight per ``layer``, or also one per ``channel`` (LPIPS-style 1x1)."""

    layer = "layer"
    channel = "channel"


class OnBadImage(Choice):
    """An image that fails to decode in a dataset run: stop with the file named (``error``), or record the pair as
    failed and go on (``skip``)."""

    error = "error"
    skip = "skip"


class Exif(Choice):
    """EXIF orientation of image files: ``apply``, ``ignore`` (the official code), ``auto`` (ignore under preset
    paper, apply under fixed)."""

    auto = "auto"
    apply = "apply"
    ignore = "ignore"


class Precision(Choice):
    """The backbone's dtype (distances stay fp32 except under the paper's fp16 CLIP)."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
