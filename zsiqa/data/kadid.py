"""KADID-10k (``kadid10k/``) as distributed.

Layout: ``dmos.csv`` (header ``dist_img,ref_img,dmos,var``; e.g. ``I01_01_01.png,I01.png,4.57,0.496``) and
``images/`` holding the 81 references ``Ixx.png`` and the 10,125 distorted ``I{ref}_{type}_{level}.png``
(25 types x 5 levels). Despite its name the ``dmos`` column is a MOS on a 1-5 scale: higher = better.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from .items import (
    DatasetSpec,
    FileIndex,
    ListedPairs,
    MissingFiles,
    PairItem,
    check_counts,
    dataset_root,
    label_error,
    parse_label,
    require_file,
)

NUM_ITEMS, NUM_REFS = 10125, 81
NAME = re.compile(r"(I\d{2})_(\d{2})_(\d{2})\.png", re.IGNORECASE)
COLUMNS = ("dist_img", "ref_img", "dmos")
_EXPECTED = 'a row "dist_img,ref_img,dmos,var" such as "I01_01_01.png,I01.png,4.57,0.496"'
_LAYOUT = "dmos.csv and images/ (KADID-10k)"


def read_kadid(root: str | os.PathLike, strict: bool = True) -> list[PairItem]:
    """The 10,125 KADID-10k pairs in ``dmos.csv`` order; dist_type = type code "01".."25", level "1".."5"."""
    root = dataset_root(root, "KADID-10k", _LAYOUT)
    label_path = require_file(root / "dmos.csv", "KADID-10k", "label file")
    images = FileIndex([root / "images"])
    missing = MissingFiles("KADID-10k")
    listed = ListedPairs("KADID-10k")
    items: list[PairItem] = []
    with open(label_path, newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        header = rows.fieldnames or []
        if not set(COLUMNS) <= set(header):
            raise label_error(label_path, 1, ",".join(header), f"a header with the columns {', '.join(COLUMNS)}")
        for row in rows:
            lineno = rows.line_num
            line = ",".join(v for v in row.values() if isinstance(v, str))
            dist_name, ref_name = (row["dist_img"] or "").strip(), (row["ref_img"] or "").strip()
            match = NAME.fullmatch(dist_name)
            if match is None or Path(ref_name).stem.upper() != match.group(1).upper():
                raise label_error(label_path, lineno, line, _EXPECTED)
            score = parse_label(row["dmos"] or "", label_path, lineno, line, _EXPECTED)
            where = f"{label_path}:{lineno}"
            listed.add(ref_name, dist_name, where, line)
            ref = missing.find(images, ref_name, where, "reference")
            dis = missing.find(images, dist_name, where, "distorted image")
            if ref is not None and dis is not None:
                items.append(PairItem(
                    index=len(items), ref=ref, dis=dis, label=score, label_lower_better=False,
                    dist_type=match.group(2), ref_id=match.group(1).upper(), level=str(int(match.group(3))),
                ))
    listed.require_some(label_path)
    missing.raise_if_any()
    check_counts(items, "KADID-10k", NUM_ITEMS, NUM_REFS, root, strict)
    return items


SPEC = DatasetSpec(
    name="kadid10k", title="KADID-10k", label_name="MOS (column 'dmos')", lower_better=False,
    num_items=NUM_ITEMS, num_refs=NUM_REFS, read=read_kadid,
)
