"""CSIQ (``CSIQ/``).

Images: ``src_imgs/<ref>.png`` (30 references) and the 866 distorted ``<ref>.<TYPE>.<level>.png`` (types AWGN, BLUR,
contrast, fnoise, JPEG, jpeg2000; the case is ignored), either in ``dst_imgs/<type>/`` as distributed, flat in
``dst_imgs/``, or flat in ``dst_imgs_all/`` (used only when ``dst_imgs/`` does not exist).

The official labels ship as ``csiq.DMOS.xlsx``, which is not read; one of these text files is, in this order
(or the file given as ``label_file``):
  * ``csiq_label.txt``: one pair per line, ``"<dist_name> <dmos>"`` separated by whitespace, e.g.
    ``1600.AWGN.1.png 0.061989`` (the ``.png`` may be left out: ``1600.AWGN.1 0.062``);
  * ``meta_info_CSIQDataset.csv`` (pyiqa): a header with the columns ``ref_name,dist_name,dmos`` (others are
    ignored), e.g. ``1600.png,1600.AWGN.1.png,0.061989``.
A file named ``*.csv`` is read as the CSV format, any other as the whitespace format. Labels are DMOS in [0, 1]:
lower = better.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterator

from ..errors import MissingFileError
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

NUM_ITEMS, NUM_REFS = 866, 30
LABEL_FILES = ("csiq_label.txt", "meta_info_CSIQDataset.csv")
CSV_COLUMNS = ("ref_name", "dist_name", "dmos")
_TXT_EXPECTED = '"<ref>.<TYPE>.<level>.png <dmos>", e.g. "1600.AWGN.1.png 0.061989"'
_CSV_EXPECTED = 'a row "ref_name,dist_name,dmos" such as "1600.png,1600.AWGN.1.png,0.061989"'
_LAYOUT = "src_imgs/, dst_imgs/ and a label file csiq_label.txt or meta_info_CSIQDataset.csv (CSIQ)"


def read_csiq(
    root: str | os.PathLike, label_file: str | os.PathLike | None = None, strict: bool = True
) -> list[PairItem]:
    """The 866 CSIQ pairs in label-file order; dist_type = lower-case type ("awgn", "jpeg2000", ...)."""
    root = dataset_root(root, "CSIQ", _LAYOUT)
    label_path = _label_path(root, label_file)
    refs = FileIndex([root / "src_imgs"])
    dst = root / "dst_imgs" if (root / "dst_imgs").is_dir() else root / "dst_imgs_all"
    dis_index = FileIndex([dst], recursive=True)
    is_csv = label_path.suffix.lower() == ".csv"
    rows = _csv_rows(label_path) if is_csv else _txt_rows(label_path)
    expected = _CSV_EXPECTED if is_csv else _TXT_EXPECTED
    missing = MissingFiles("CSIQ")
    listed = ListedPairs("CSIQ")
    items: list[PairItem] = []
    for lineno, line, dist_name, score_text, ref_name in rows:
        parsed = _parse_name(dist_name)
        if parsed is None or (ref_name is not None and Path(ref_name).stem != parsed[0]):
            raise label_error(label_path, lineno, line, expected)
        ref_id, dist_type, level = parsed
        score = parse_label(score_text, label_path, lineno, line, expected)
        where = f"{label_path}:{lineno}"
        listed.add(f"{ref_id}.png", f"{ref_id}.{dist_type}.{level}.png", where, line)
        ref = missing.find(refs, f"{ref_id}.png", where, "reference")
        dis = missing.find(dis_index, f"{ref_id}.{dist_type}.{level}.png", where, "distorted image")
        if ref is not None and dis is not None:
            items.append(PairItem(
                index=len(items), ref=ref, dis=dis, label=score, label_lower_better=True,
                dist_type=dist_type.lower(), ref_id=ref_id, level=level,
            ))
    listed.require_some(label_path)
    missing.raise_if_any()
    check_counts(items, "CSIQ", NUM_ITEMS, NUM_REFS, root, strict)
    return items


def _label_path(root: Path, label_file: str | os.PathLike | None) -> Path:
    if label_file is not None:
        return require_file(root / Path(label_file).expanduser(), "CSIQ", "label file")
    for name in LABEL_FILES:
        if (root / name).is_file():
            return root / name
    raise MissingFileError(
        f"CSIQ: no label file in {root}; expected one of {', '.join(LABEL_FILES)} "
        f"(csiq_label.txt lines {_TXT_EXPECTED}; the CSV with the columns {','.join(CSV_COLUMNS)}). "
        "The official csiq.DMOS.xlsx is not read: export it to one of these."
    )


Row = tuple[int, str, str, str, str | None]  # lineno, line, dist_name, score, ref_name (CSV only)


def _txt_rows(path: Path) -> Iterator[Row]:
    for lineno, line in label_lines(path):
        fields = line.split()
        if len(fields) != 2:
            raise label_error(path, lineno, line, _TXT_EXPECTED)
        yield lineno, line, fields[0], fields[1], None


def _csv_rows(path: Path) -> Iterator[Row]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.DictReader(f)
        header = rows.fieldnames or []
        if not set(CSV_COLUMNS) <= set(header):
            raise label_error(path, 1, ",".join(header), f"a header with the columns {','.join(CSV_COLUMNS)}")
        for row in rows:
            line = ",".join(v for v in row.values() if isinstance(v, str))
            dist_name = Path((row["dist_name"] or "").strip()).name
            yield rows.line_num, line, dist_name, row["dmos"] or "", (row["ref_name"] or "").strip()


def _parse_name(name: str) -> tuple[str, str, str] | None:
    """``<ref>.<TYPE>.<level>[.png]`` -> (ref, TYPE, level), or None when the name does not have that form."""
    stem = name[:-4] if name.lower().endswith(".png") else name
    parts = stem.rsplit(".", 2)
    if len(parts) != 3 or not all(parts) or not parts[2].isdigit():
        return None
    return parts[0], parts[1], parts[2]


SPEC = DatasetSpec(
    name="csiq", title="CSIQ", label_name="DMOS", lower_better=True,
    num_items=NUM_ITEMS, num_refs=NUM_REFS, read=read_csiq,
)
