"""PIPAL public training set (NTIRE 2021/2022) as distributed.

Layout: ``Train_Label/A0001.txt ...`` (200 files, 116 lines ``"<name>,<elo>"`` each, e.g.
``A0001_00_00.bmp,1520.0648``), ``Train_Ref/A0001.bmp ...`` and the 23,200 distorted ``A{ref}_{group}_{idx}.bmp``.
The distorted images are looked up in the first of these that exists: ``Train_Dis/`` (ZS-IQA's merged folder),
``Dist_Imgs/`` (pyiqa's), the ``Distortion*`` folders of the NTIRE22 archives; otherwise anywhere under the root.
Sub-folders are searched and a file name found twice is an error. Label files are read in sorted name order (the
official code used unsorted ``glob`` order). Labels are Elo scores (higher = better).
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from ..errors import DataError, MissingFileError
from .items import (
    DatasetSpec,
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

NUM_ITEMS, NUM_REFS, PER_REF = 23200, 200, 116
NAME = re.compile(r"(A\d{4})_(\d{2})_(\d{2})\.bmp", re.IGNORECASE)
_EXPECTED = '"<name>,<elo>" with name A<ref>_<group>_<idx>.bmp, e.g. "A0001_00_00.bmp,1520.0648"'
_LAYOUT = "Train_Label/, Train_Ref/ and the distorted images (Train_Dis/ or Distortion_1..4/) (PIPAL)"


def read_pipal(root: str | os.PathLike, strict: bool = True) -> list[PairItem]:
    """The PIPAL training pairs (23,200) with Elo labels; dist_type = the group code (the name's middle field)."""
    root = dataset_root(root, "PIPAL", _LAYOUT)
    label_dir = root / "Train_Label"
    label_files = sorted(label_dir.glob("*.txt")) if label_dir.is_dir() else []
    if not label_files:
        raise MissingFileError(f"PIPAL: no label files {label_dir}/*.txt; expected {_LAYOUT}")
    refs = FileIndex([root / "Train_Ref"])
    dis_index = FileIndex(distorted_folders(root), recursive=True)
    missing = MissingFiles("PIPAL")
    listed = ListedPairs("PIPAL")
    items: list[PairItem] = []
    for label_path in label_files:
        for lineno, line in label_lines(label_path):
            fields = [f.strip() for f in line.split(",")]
            match = NAME.fullmatch(fields[0]) if len(fields) == 2 else None
            if match is None:
                raise label_error(label_path, lineno, line, _EXPECTED)
            elo = parse_label(fields[1], label_path, lineno, line, _EXPECTED)
            ref_id, group = match.group(1).upper(), match.group(2)
            where = f"{label_path}:{lineno}"
            listed.add(f"{ref_id}.bmp", fields[0], where, line)
            ref = missing.find(refs, f"{ref_id}.bmp", where, "reference")
            dis = missing.find(dis_index, fields[0], where, "distorted image")
            if ref is not None and dis is not None:
                items.append(PairItem(
                    index=len(items), ref=ref, dis=dis, label=elo, label_lower_better=False,
                    dist_type=group, ref_id=ref_id,
                ))
    listed.require_some(f"{label_dir}/*.txt")
    missing.raise_if_any()
    check_counts(items, "PIPAL", NUM_ITEMS, NUM_REFS, root, strict)
    if strict:
        uneven = {ref: n for ref, n in Counter(item.ref_id for item in items).items() if n != PER_REF}
        if uneven:
            raise DataError(f"PIPAL: every reference has {PER_REF} distorted images, but these do not: {uneven}")
    return items


def distorted_folders(root: Path) -> list[Path]:
    """Where the distorted images are searched (see the module docstring for the order)."""
    for name in ("Train_Dis", "Dist_Imgs"):
        if (root / name).is_dir():
            return [root / name]
    parts = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("distortion"))
    return parts or [root]


SPEC = DatasetSpec(
    name="pipal", title="PIPAL (train)", label_name="Elo", lower_better=False,
    num_items=NUM_ITEMS, num_refs=NUM_REFS, read=read_pipal,
)
