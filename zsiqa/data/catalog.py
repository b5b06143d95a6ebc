"""The datasets zsiqa reads, as data: one ``DatasetSpec`` each (label files and format, folders, counts), with the
few lines that parse one label row. ``zsiqa.data.reader.read`` reads any of them.

* TID2013 (``tid2013/``): ``mos_with_names.txt`` (``"<MOS> <name>"``, e.g. ``5.51429 I01_01_1.bmp``),
  ``reference_images/`` (``I01.BMP`` ... ``i25.bmp``), ``distorted_images/`` (``i{ref}_{type}_{level}.bmp``). The
  names mix cases, so files are found case-insensitively. Labels: raw MOS 0-9 (higher = better); the paper's
  ``100 - MOS`` is a sign flip applied at evaluation time from the declared direction.
* KADID-10k (``kadid10k/``): ``dmos.csv`` (``dist_img,ref_img,dmos,var``) and ``images/`` (references ``Ixx.png`` and
  ``I{ref}_{type}_{level}.png``). Despite its name the ``dmos`` column is a MOS on 1-5: higher = better.
* PIPAL (NTIRE 2021/2022 training set): ``Train_Label/*.txt`` (``"<name>,<elo>"``, read in sorted file order; the
  official code used unsorted ``glob``), ``Train_Ref/`` and the distorted ``A{ref}_{group}_{idx}.bmp`` in the first of
  ``Train_Dis/`` (ZS-IQA's merged folder), ``Dist_Imgs/`` (pyiqa's), ``Distortion_1..4/`` (the NTIRE22 archives), or
  anywhere under the root, sub-folders searched. Labels: Elo (higher = better); 116 distorted images per reference.
* CSIQ (``CSIQ/``): ``src_imgs/<ref>.png`` and ``<ref>.<TYPE>.<level>.png`` in ``dst_imgs/<type>/`` (or flat in
  ``dst_imgs/`` or ``dst_imgs_all/``); labels from ``csiq_label.txt`` (``"<dist_name> <dmos>"``, the ``.png`` may be
  left out) or pyiqa's ``meta_info_CSIQDataset.csv`` (``ref_name,dist_name,dmos``); the official ``csiq.DMOS.xlsx``
  is not read. Labels: DMOS in [0, 1], lower = better.
* LIVE Release 2 and the bundled demo set: ``zsiqa.data.live`` (labels in .mat files) and ``zsiqa.data.demo``.
"""
from __future__ import annotations

import re
from pathlib import Path

from .demo import DEMO_COLUMNS, DEMO_REFS, build_demo
from .demo import NUM_ITEMS as DEMO_ITEMS
from .live import LIVE_OPTIONS, live_rows
from .reader import DatasetSpec, Fields, LabelFile, Row

_TID_NAME = re.compile(r"i(\d{2})_(\d{2})_(\d)\.bmp", re.IGNORECASE)
_KADID_NAME = re.compile(r"(I\d{2})_(\d{2})_(\d{2})\.png", re.IGNORECASE)
_PIPAL_NAME = re.compile(r"(A\d{4})_(\d{2})_(\d{2})\.bmp", re.IGNORECASE)


def tid2013_row(fields: Fields) -> Row | None:
    match = _TID_NAME.fullmatch(fields[1]) if len(fields) == 2 else None
    if match is None:
        return None
    ref_no, type_no, level = match.groups()  # dataset quirk: references are Ixx.BMP except i25.bmp (case ignored)
    return Row(f"I{ref_no}.BMP", fields[1], fields[0], type_no, f"I{ref_no}", level)


def kadid_row(fields: Fields) -> Row | None:
    dist, ref = (fields["dist_img"] or "").strip(), (fields["ref_img"] or "").strip()
    match = _KADID_NAME.fullmatch(dist)
    if match is None or Path(ref).stem.upper() != match.group(1).upper():
        return None
    return Row(ref, dist, fields["dmos"] or "", match.group(2), match.group(1).upper(), str(int(match.group(3))))


def pipal_row(fields: Fields) -> Row | None:
    match = _PIPAL_NAME.fullmatch(fields[0]) if len(fields) == 2 else None
    if match is None:
        return None
    ref_id = match.group(1).upper()
    return Row(f"{ref_id}.bmp", fields[0], fields[1], match.group(2), ref_id)


def csiq_row(fields: Fields) -> Row | None:
    if isinstance(fields, dict):  # meta_info_CSIQDataset.csv
        dist, score, ref = Path((fields["dist_name"] or "").strip()).name, fields["dmos"] or "", fields["ref_name"]
    elif len(fields) == 2:  # csiq_label.txt
        (dist, score), ref = fields, None
    else:
        return None
    stem = dist[:-4] if dist.lower().endswith(".png") else dist
    parts = stem.rsplit(".", 2)
    if len(parts) != 3 or not all(parts) or not parts[2].isdigit():
        return None
    ref_id, dist_type, level = parts
    if ref is not None and Path(ref.strip()).stem != ref_id:
        return None
    return Row(f"{ref_id}.png", f"{ref_id}.{dist_type}.{level}.png", score, dist_type.lower(), ref_id, level)


def demo_row(fields: Fields) -> Row | None:
    if None in fields or any(fields[c] is None for c in DEMO_COLUMNS):
        return None
    return Row(fields["ref_name"], fields["dist_name"], fields["score"], fields["dist_type"],
               Path(fields["ref_name"]).stem, fields["level"])


SPECS = (
    DatasetSpec(
        "live", "LIVE", "DMOS (realigned)", True, 779, 29,
        "refimgs/, jp2k/ ... fastfading/, dmos.mat, dmos_realigned.mat and refnames_all.mat (LIVE Release 2)",
        refs=("refimgs",), source=live_rows, options=LIVE_OPTIONS),
    DatasetSpec(
        "tid2013", "TID2013", "MOS", False, 3000, 25,
        "mos_with_names.txt, reference_images/ and distorted_images/ (TID2013)",
        labels=(LabelFile("mos_with_names.txt", "words",
                          '"<MOS> <name>" with name i<ref>_<type>_<level>.bmp, e.g. "5.51429 I01_01_1.bmp"'),),
        parse=tid2013_row, refs=("reference_images",), distorted=("distorted_images",)),
    DatasetSpec(
        "pipal", "PIPAL", "Elo", False, 23200, 200,
        "Train_Label/, Train_Ref/ and the distorted images (Train_Dis/ or Distortion_1..4/) (PIPAL)",
        labels=(LabelFile("Train_Label/*.txt", "comma",
                          '"<name>,<elo>" with name A<ref>_<group>_<idx>.bmp, e.g. "A0001_00_00.bmp,1520.0648"'),),
        parse=pipal_row, refs=("Train_Ref",),
        distorted=("Train_Dis", "Dist_Imgs", "distortion*"),
        recursive=True, per_ref=116),
    DatasetSpec(
        "kadid10k", "KADID-10k", "MOS (column 'dmos')", False, 10125, 81, "dmos.csv and images/ (KADID-10k)",
        labels=(LabelFile("dmos.csv", "csv", 'a row "dist_img,ref_img,dmos,var" such as "I01_01_01.png,I01.png,4.57,0.496"',
                          ("dist_img", "ref_img", "dmos")),),
        parse=kadid_row, refs=("images",), distorted=("images",)),
    DatasetSpec(
        "csiq", "CSIQ", "DMOS", True, 866, 30,
        "src_imgs/, dst_imgs/ and a label file csiq_label.txt or meta_info_CSIQDataset.csv (CSIQ)",
        labels=(LabelFile("csiq_label.txt", "words", '"<ref>.<TYPE>.<level>.png <dmos>", e.g. "1600.AWGN.1.png 0.061989"'),
                LabelFile("meta_info_CSIQDataset.csv", "csv",
                          'a row "ref_name,dist_name,dmos" such as "1600.png,1600.AWGN.1.png,0.061989"',
                          ("ref_name", "dist_name", "dmos"))),
        parse=csiq_row, refs=("src_imgs",), distorted=("dst_imgs", "dst_imgs_all"), recursive=True,
        hint=" (csiq_label.txt lines \"<ref>.<TYPE>.<level>.png <dmos>\"; the CSV with the columns ref_name,dist_name,"
             "dmos). The official csiq.DMOS.xlsx is not read: export it to one of these."),
    DatasetSpec(
        "demo", "demo", "severity level", True, DEMO_ITEMS, DEMO_REFS,
        "meta.csv, ref/ and dis/ (zsiqa demo set)",
        labels=(LabelFile("meta.csv", "csv", "a row ref_name,dist_name,score,dist_type,level such as "
                          "ref/chelsea.png,dis/chelsea_blur_2.png,2,blur,2", DEMO_COLUMNS, exact=True),),
        parse=demo_row,
        hint="; build the set first with zsiqa.data.build_demo(ROOT)", default_root=build_demo),
)
