"""The item schema every dataset reader returns, and the checks the readers share.

A reader turns one dataset, in its official layout, into ``list[PairItem]`` in the dataset's canonical order
(label-file order). Files are looked up case-insensitively (TID2013 mixes ``i01_01_2.bmp`` and ``I01_01_1.bmp``).
A listed image that is missing is always an error, never a silently dropped sample; so are a label file that lists
no pairs, a label that is not a finite number, and a pair listed twice (``ListedPairs``: both lines are named).
``strict`` adds the check that the whole official set is there.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import ConfigError, DataError, MissingFileError

_MAX_LISTED = 10  # missing files named in one error message


@dataclass(frozen=True)
class PairItem:
    """One (reference, distorted) pair with its subjective label.

    index: position in the dataset's canonical order, stable across runs (results are keyed by it).
    label: the score exactly as the official label file gives it; ``label_lower_better`` is its direction
      (DMOS: True; MOS, Elo: False). Sign flips such as the paper's ``100 - MOS`` happen at evaluation time.
    dist_type / level: the distortion type and severity as the dataset encodes them ("" where it has none).
    ref_id: the reference's name without extension; one ref_id always means one reference file.
    """

    index: int
    ref: Path
    dis: Path
    label: float
    label_lower_better: bool
    dist_type: str
    ref_id: str
    level: str = ""


def reference_paths(items: Iterable[PairItem]) -> dict[str, Path]:
    """ref_id -> reference path, in first-appearance order. Raises if one ref_id names two files."""
    refs: dict[str, Path] = {}
    for item in items:
        known = refs.setdefault(item.ref_id, item.ref)
        if known != item.ref:
            raise DataError(f"ref_id {item.ref_id!r} names two reference files: {known} and {item.ref}")
    return refs


def dataset_root(root: str | os.PathLike | None, dataset: str, layout: str) -> Path:
    """The dataset folder as an absolute path; a clear error when it is not given or does not exist."""
    if root is None:
        raise ConfigError(f"{dataset}: no dataset root given; pass the folder that holds {layout}")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise MissingFileError(f"{dataset}: dataset root {path} is not a folder; expected the folder holding {layout}")
    return path


def require_file(path: Path, dataset: str, what: str) -> Path:
    """``path`` if it is a file, else a FileNotFoundError saying what it should contain."""
    if not path.is_file():
        raise MissingFileError(f"{dataset}: {what} not found: {path}")
    return path


def label_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of every non-blank line of a text label file."""
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if text:
                yield lineno, text


def label_error(path: Path, lineno: int, line: str, expected: str) -> DataError:
    """The error for a malformed label line: file:line, the line itself and the expected format."""
    return DataError(f"{path}:{lineno}: malformed label line {line!r}; expected {expected}")


def parse_label(text: str, path: Path, lineno: int, line: str, expected: str) -> float:
    """A finite float from a label field, or ``label_error`` (NaN and Inf labels included)."""
    try:
        value = float(text)
    except ValueError:
        raise label_error(path, lineno, line, expected) from None
    if not math.isfinite(value):
        raise label_error(path, lineno, line, f"a finite number as the label, not {text.strip()!r}; {expected}")
    return value


class ListedPairs:
    """The (reference, distorted) pairs a dataset's labels list, with where each was listed.

    A pair listed twice (the same line repeated, or the same pair with another label) is an error naming both places:
    it would be scored twice and weigh double in the correlations. ``require_some`` rejects labels that list nothing.
    """

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._first: dict[tuple[str, str], tuple[str, str]] = {}

    def add(self, ref: str, dis: str, where: str, line: str) -> None:
        """Record the pair ``(ref, dis)`` (a file name, and a file name with any sub-folder its dataset gives, case
        ignored) listed at ``where`` (file:line) as ``line``."""
        key = (Path(ref).name.lower(), dis.lower())
        if key in self._first:
            first, first_line = self._first[key]
            what = f"duplicated label line {line!r}" if line == first_line else (
                f"pair ({ref}, {dis}) listed twice: {first_line!r} and {line!r}")
            raise DataError(f"{self.dataset}: {where}: {what} (first at {first}); remove one of them")
        self._first[key] = (where, line)

    def require_some(self, source: Path | str) -> None:
        if not self._first:
            raise DataError(f"{self.dataset}: {source} lists no pairs (empty label file); expected the official labels")


class FileIndex:
    """Case-insensitive file-name lookup in one or more folders (optionally recursive).

    Exact-case names win; two files whose names differ only in case (or, when recursive, the same name in two
    sub-folders) make a lookup of that name ambiguous, which is an error rather than a guess.
    """

    def __init__(self, folders: Sequence[Path], recursive: bool = False) -> None:
        self.folders = list(folders)
        self._files: dict[str, list[Path]] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for dirpath, _, names in os.walk(folder):
                for name in names:
                    self._files.setdefault(name.lower(), []).append(Path(dirpath) / name)
                if not recursive:
                    break

    def find(self, name: str) -> Path | None:
        """The file called ``name`` (any case), or None when there is none."""
        found = self._files.get(name.lower(), [])
        if len(found) > 1:
            exact = [p for p in found if p.name == name]
            if len(exact) != 1:
                listed = ", ".join(str(p) for p in sorted(found))
                raise DataError(f"{name!r} is ambiguous, several files match it: {listed}; remove the duplicates")
            return exact[0]
        return found[0] if found else None

    def where(self) -> str:
        """Where lookups searched, for error messages."""
        parts = [str(f) if f.is_dir() else f"{f} (folder does not exist)" for f in self.folders]
        return " or ".join(parts)


class MissingFiles:
    """Collects every listed file that is missing, so one error names them all (up to a limit)."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.lines: list[str] = []

    def find(self, index: FileIndex, name: str, where: str, what: str) -> Path | None:
        """Look ``name`` up in ``index``; record ``where`` (file:line) and ``what`` it is when it is missing."""
        path = index.find(name)
        if path is None:
            self.lines.append(f"{where}: {what} {name!r} not found in {index.where()}")
        return path

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        shown = self.lines[:_MAX_LISTED]
        more = len(self.lines) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        raise MissingFileError(
            f"{self.dataset}: {len(self.lines)} image(s) listed in the labels are missing:\n  "
            + "\n  ".join(shown) + tail
            + "\nEvery labelled pair needs both images; restore the missing files from the official archive."
        )


def check_counts(
    items: Sequence[PairItem], dataset: str, num_items: int, num_refs: int, root: Path, strict: bool
) -> None:
    """In strict mode, require the full official set (``num_items`` pairs from ``num_refs`` references)."""
    refs = Counter(item.ref_id for item in items)
    if strict and (len(items) != num_items or len(refs) != num_refs):
        raise DataError(
            f"{dataset}: found {len(items)} labelled pairs from {len(refs)} references in {root}, but the official "
            f"set has {num_items} pairs from {num_refs} references. The label file(s) are incomplete or from another "
            "release; to read a subset set data.strict=false (strict=False in read_dataset / FRDataModule)."
        )
