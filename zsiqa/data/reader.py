"""The one dataset reader: a dataset is a ``DatasetSpec`` (data), read by ``read``.

Every official layout is read the same way: the root folder, its label file(s), an index of the image folders, one
``Row`` per label line (the dataset's row parser, or for LIVE its .mat files), the checks that no pair is listed twice
and no listed image is missing, then the counts of the full official set (``strict``). What differs per dataset is
its spec (``zsiqa.data.catalog``): label files and their format, folders, counts and a row parser of a few lines.
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from ..errors import DataError, MissingFileError
from .items import (
    FileIndex,
    ListedPairs,
    MissingFiles,
    PairItem,
    check_counts,
    dataset_root,
    label_error,
    label_lines,
    parse_label,
)

Fields = list[str] | dict[str, str]  # a text line's fields, or a CSV row by column


@dataclass(frozen=True)
class Row:
    """One labelled pair as the labels list it: file names (each may hold one sub-folder, ``jp2k/img1.bmp``),
    the label as written, the distortion type and level, and the reference's id."""

    ref: str
    dis: str
    label: str | float  # as written (a parser's row), then a finite float
    dist_type: str
    ref_id: str
    level: str = ""


@dataclass(frozen=True)
class LabelFile:
    """A label file: ``pattern`` (relative to the root; a glob reads every match, sorted) and its row format:
    ``words`` (whitespace-separated fields), ``comma`` (comma-separated), or ``csv`` (a header naming ``columns``;
    ``exact``: exactly those columns). ``expected`` shows a valid row in error messages."""

    pattern: str
    format: str
    expected: str
    columns: tuple[str, ...] = ()
    exact: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is. name: the config name; title: how messages name it; label_name, lower_better: the label
    and its direction; num_items, num_refs: the full official set (``per_ref``: distorted images per reference);
    layout: the folder's contents, for messages. labels: candidate label files, the first found is read (``hint``
    says what to do when none is); parse: a row's fields -> ``Row``, or None when malformed. refs / distorted:
    image folders (the root when ``refs`` is empty; the first of ``distorted`` that exists, a ``*`` pattern naming every matching folder, case
    ignored; the root when none exists), searched in sub-folders when ``recursive``. source: instead of labels + parse, the rows of a layout without label lines (LIVE's .mat files).
    """

    name: str
    title: str
    label_name: str
    lower_better: bool
    num_items: int
    num_refs: int
    layout: str
    labels: tuple[LabelFile, ...] = ()
    parse: Callable[[Fields], Row | None] | None = None
    refs: tuple[str, ...] = ()
    distorted: tuple[str, ...] = ()
    recursive: bool = False
    per_ref: int | None = None
    hint: str = ""
    source: Callable[..., Iterator[tuple[str, str, Row]]] | None = None
    options: tuple[str, ...] = field(default=())  # reader options the source takes (LIVE: label)
    default_root: Callable[[], Path] | None = None  # the folder read when no root is given (the demo set's cache)


def read(spec: DatasetSpec, root: str | os.PathLike | None, strict: bool = True, label_file: str | None = None,
         **options) -> list[PairItem]:
    """The pairs of ``spec``'s dataset at ``root`` in label order; ``label_file`` replaces the spec's label files
    (its format by suffix), ``options`` go to a ``source`` (e.g. LIVE's ``label``)."""
    unknown = set(options) - set(spec.options)
    if unknown:
        raise TypeError(f"{spec.name}: unknown reader option(s) {sorted(unknown)}; it takes strict, label_file"
                        + "".join(f", {o}" for o in spec.options))
    if root is None and spec.default_root is not None:
        root = spec.default_root()
    root = dataset_root(root, spec.title, spec.layout)
    labels = [] if spec.source is not None else label_paths(spec, root, label_file)
    rows = spec.source(root, **options) if spec.source is not None else _label_rows(spec, labels)
    refs = [root / f for f in spec.refs] or [root]
    folders = distorted_folders(spec, root)
    missing, listed = MissingFiles(spec.title), ListedPairs(spec.title)
    index: dict[tuple[str, str], FileIndex] = {}

    def find(name: str, where: str, what: str, roots: list[Path], recursive: bool) -> Path | None:
        if Path(name).is_absolute() or ".." in Path(name.replace("\\", "/")).parts:
            raise DataError(f"{where}: the {what} {name!r} is outside the dataset folder {root}; a label file names "
                            "images inside its dataset's folder (fix the line, or copy the image into the folder)")
        sub, _, base = name.rpartition("/")  # a name may hold one sub-folder of the dataset's folders
        if (what, sub) not in index:
            index[what, sub] = FileIndex([f / sub for f in roots], recursive=recursive)
        return missing.find(index[what, sub], base, where, what)

    items: list[PairItem] = []
    for where, line, row in rows:
        listed.add(row.ref, row.dis, where, line)
        ref = find(row.ref, where, "reference", refs, False)
        dis = find(row.dis, where, "distorted image", folders, spec.recursive)
        if ref is not None and dis is not None:
            items.append(PairItem(index=len(items), ref=ref, dis=dis, label=float(row.label),
                                  label_lower_better=spec.lower_better,
                                  dist_type=row.dist_type, ref_id=row.ref_id, level=row.level))
    if labels:
        listed.require_some(", ".join(str(path) for path, _ in labels))
    missing.raise_if_any()
    check_counts(items, spec.title, spec.num_items, spec.num_refs, root, strict)
    if strict and spec.per_ref is not None:
        uneven = {r: n for r, n in Counter(it.ref_id for it in items).items() if n != spec.per_ref}
        if uneven:
            raise DataError(f"{spec.title}: every reference has {spec.per_ref} distorted images, but these do not: "
                            f"{uneven}")
    return items


def distorted_folders(spec: DatasetSpec, root: Path) -> list[Path]:
    """Where the distorted images are searched: the first of ``spec.distorted`` that exists, else the root."""
    for name in spec.distorted:
        if "*" in name:
            found = sorted(p for p in root.iterdir() if p.is_dir() and fnmatch(p.name.lower(), name.lower()))
        else:
            found = [root / name] if (root / name).is_dir() else []
        if found:
            return found
    return [root]


def label_paths(spec: DatasetSpec, root: Path, label_file: str | os.PathLike | None = None) -> list[tuple[Path, LabelFile]]:
    """The label file(s) to read with their format: ``label_file`` if given, else the first of the spec's candidates
    that exists (every file of a glob, sorted); a clear error naming what was expected when there is none."""
    if label_file is not None:
        path = root / Path(label_file).expanduser()
        if not path.is_file():
            raise MissingFileError(f"{spec.title}: label file not found: {path}")
        fmt = next((lf for lf in spec.labels if Path(lf.pattern).suffix.lower() == path.suffix.lower()), spec.labels[-1])
        return [(path, fmt)]
    for lf in spec.labels:
        found = sorted(root.glob(lf.pattern)) if "*" in lf.pattern else [root / lf.pattern]
        found = [p for p in found if p.is_file()]
        if found:
            return [(p, lf) for p in found]
    if len(spec.labels) > 1:
        names = ", ".join(lf.pattern for lf in spec.labels)
        raise MissingFileError(f"{spec.title}: no label file in {root}; expected one of {names}{spec.hint}")
    (lf,) = spec.labels
    if "*" in lf.pattern:
        raise MissingFileError(f"{spec.title}: no label files {root / lf.pattern}; expected {spec.layout}")
    raise MissingFileError(f"{spec.title}: label file not found: {root / lf.pattern}{spec.hint}")


def _label_rows(spec: DatasetSpec, labels: list[tuple[Path, LabelFile]]) -> Iterator[tuple[str, str, Row]]:
    """``(file:line, line, Row)`` of every label line, the label parsed (a malformed line names file and line)."""
    for path, lf in labels:
        for lineno, line, fields in _fields(path, lf):
            row = spec.parse(fields)
            if row is None:
                raise label_error(path, lineno, line, lf.expected)
            label = parse_label(str(row.label), path, lineno, line, lf.expected)
            yield f"{path}:{lineno}", line, Row(row.ref, row.dis, label, row.dist_type, row.ref_id, row.level)


def _fields(path: Path, lf: LabelFile) -> Iterator[tuple[int, str, Fields]]:
    if lf.format == "words":
        yield from ((n, line, line.split()) for n, line in label_lines(path))
    elif lf.format == "comma":
        yield from ((n, line, [f.strip() for f in line.split(",")]) for n, line in label_lines(path))
    else:
        yield from _csv_rows(path, lf)


def _csv_rows(path: Path, lf: LabelFile) -> Iterator[tuple[int, str, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        header = rows.fieldnames or []
        if tuple(header) != lf.columns if lf.exact else not set(lf.columns) <= set(header):
            wanted = f"the header {','.join(lf.columns)}" if lf.exact else f"a header with the columns {', '.join(lf.columns)}"
            raise label_error(path, 1, ",".join(header), wanted)
        for row in rows:
            yield rows.line_num, ",".join(v for v in row.values() if isinstance(v, str)), row
