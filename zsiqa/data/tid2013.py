"""TID2013 (``tid2013/``) as distributed.

Layout: ``mos_with_names.txt`` (3000 lines ``"<MOS> <name>"``, e.g. ``5.51429 I01_01_1.bmp``),
``reference_images/`` (``I01.BMP`` ... ``I24.BMP`` and ``i25.bmp``) and ``distorted_images/``
(``i{ref}_{type}_{level}.bmp``: 25 references x 24 types x 5 levels). The official names mix cases
(``I01_01_1.bmp``, ``i01_01_2.bmp``, ``I01_11_1.BMP``), so every file is resolved case-insensitively. Labels are the
raw MOS (0-9, higher = better); the paper's ``100 - MOS`` is only a sign flip, applied at evaluation time from the
declared direction. ``mos.txt`` and ``mos_std.txt`` are not needed.
"""
from __future__ import annotations

import os
import re

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
    require_file,
)

NUM_ITEMS, NUM_REFS = 3000, 25
NAME = re.compile(r"i(\d{2})_(\d{2})_(\d)\.bmp", re.IGNORECASE)
_EXPECTED = '"<MOS> <name>" with name i<ref>_<type>_<level>.bmp, e.g. "5.51429 I01_01_1.bmp"'
_LAYOUT = "mos_with_names.txt, reference_images/ and distorted_images/ (TID2013)"


def read_tid2013(root: str | os.PathLike, strict: bool = True) -> list[PairItem]:
    """The 3000 TID2013 pairs in ``mos_with_names.txt`` order; dist_type = type code "01".."24", level "1".."5"."""
    root = dataset_root(root, "TID2013", _LAYOUT)
    label_path = require_file(root / "mos_with_names.txt", "TID2013", "label file")
    refs = FileIndex([root / "reference_images"])
    dis_index = FileIndex([root / "distorted_images"])
    missing = MissingFiles("TID2013")
    listed = ListedPairs("TID2013")
    items: list[PairItem] = []
    for lineno, line in label_lines(label_path):
        fields = line.split()
        match = NAME.fullmatch(fields[1]) if len(fields) == 2 else None
        if match is None:
            raise label_error(label_path, lineno, line, _EXPECTED)
        mos = parse_label(fields[0], label_path, lineno, line, _EXPECTED)
        ref_no, type_no, level = match.groups()
        where = f"{label_path}:{lineno}"
        listed.add(f"I{ref_no}.BMP", fields[1], where, line)
        # dataset quirk: the references are Ixx.BMP except i25.bmp; the lookup ignores case.
        ref = missing.find(refs, f"I{ref_no}.BMP", where, "reference")
        dis = missing.find(dis_index, fields[1], where, "distorted image")
        if ref is not None and dis is not None:
            items.append(PairItem(
                index=len(items), ref=ref, dis=dis, label=mos, label_lower_better=False,
                dist_type=type_no, ref_id=f"I{ref_no}", level=level,
            ))
    listed.require_some(label_path)
    missing.raise_if_any()
    check_counts(items, "TID2013", NUM_ITEMS, NUM_REFS, root, strict)
    return items


SPEC = DatasetSpec(
    name="tid2013", title="TID2013", label_name="MOS", lower_better=False,
    num_items=NUM_ITEMS, num_refs=NUM_REFS, read=read_tid2013,
)
