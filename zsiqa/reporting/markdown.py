"""Markdown tables, written one way for every report (summaries, training tests, grids)."""
from __future__ import annotations

from collections.abc import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """``| a | b |`` lines with a ``|---|`` rule under the header; cells are written with ``str``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def missing(v: object) -> bool:
    """An undefined value: None (as summary.json stores it) or NaN (in memory; any float type)."""
    return v is None or v != v


def fmt(v: float | None, digits: int = 4) -> str:
    """A correlation with ``digits`` decimals, ``–`` where it is undefined."""
    return "–" if missing(v) else f"{v:.{digits}f}"


def with_interval(entry: dict, key: str, digits: int = 4) -> str:
    """``entry[key]`` as ``value [lo, hi]`` with its interval ``entry[key + "_ci"]``, the value alone where the interval
    is undefined, ``–`` where the value is."""
    v, ci = entry.get(key), entry.get(f"{key}_ci")
    if missing(v) or ci is None or any(missing(c) for c in ci):
        return fmt(v, digits)
    return f"{fmt(v, digits)} [{ci[0]:.3f}, {ci[1]:.3f}]"
