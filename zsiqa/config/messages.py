"""One-line wording of configuration errors: close matches, Hydra's and OmegaConf's messages condensed."""
from __future__ import annotations

import re

from ..errors import choose_one, did_you_mean

__all__ = ["choose_one", "did_you_mean", "one_line"]

_ENUM = re.compile(r"Invalid value '(?P<value>[^']*)', expected one of \[(?P<allowed>[^\]]*)\]")


def one_line(e: BaseException, outer: BaseException | None = None) -> str:
    """An OmegaConf / Hydra message as one line: its first line plus the key it concerns. An invalid choice reads as
    ``choose_one``."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    full_key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), "")
    text = next((ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "reference_type="))), str(e))
    enum = _ENUM.search(text)
    if enum and full_key:
        return choose_one(full_key, enum["value"], [a.strip() for a in enum["allowed"].split(",")])
    if outer is not None and outer is not e:
        first = str(outer).splitlines()[0]
        if first.startswith("Error merging override "):
            return f"{first.removeprefix('Error merging override ')}: {text}"
    return f"{full_key}: {text}" if full_key and full_key not in text else text
