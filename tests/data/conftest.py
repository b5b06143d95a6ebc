"""Builders that lay out each dataset as officially distributed (real file names, label formats and case quirks),
with tiny images. Every builder takes the target folder and returns it; the ``layouts`` fixture hands the builders
and their label formulas to tests (importing a conftest by name is ambiguous when several test folders have one).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
from PIL import Image


def encoded(fmt: str, value: int = 128, size: int = 2) -> bytes:
    """A size x size RGB image of one grey value, encoded once and written many times (fast full-size sets)."""
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buf, format=fmt)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- LIVE Release 2
LIVE_REFS = [
    "bikes", "building2", "buildings", "caps", "carnivaldolls", "cemetry", "churchandcapitol", "coinsinfountain",
    "dancers", "flowersonih35", "house", "lighthouse", "lighthouse2", "manfishing", "monarch", "ocean",
    "paintedhouse", "parrots", "plane", "rapids", "sailing1", "sailing2", "sailing3", "sailing4", "statue",
    "stream", "studentsculpture", "womanhat", "woman",
]
LIVE_FOLDERS = [("jp2k", 227, 58), ("jpeg", 233, 58), ("wn", 174, 29), ("gblur", 174, 29), ("fastfading", 174, 29)]


def build_live(root: Path, keep: int | None = None) -> Path:
    """Full LIVE R2 (982 entries, 203 reference copies -> 779). ``keep``: only the first ``keep`` entries of each
    folder are distorted images, the rest are marked as reference copies (a small but valid subset)."""
    rng = np.random.default_rng(0)
    bmp = encoded("BMP")
    orgs, refnames = [], []
    for folder, n, n_orgs in LIVE_FOLDERS:
        copies = np.zeros(n)
        copies[rng.choice(n, n_orgs, replace=False)] = 1
        if keep is not None:
            copies[:] = 1
            copies[:keep] = 0
        orgs.extend(copies)
        refnames.extend(f"{LIVE_REFS[(k + len(folder)) % 29]}.bmp" for k in range(n))
        for k in range(1, n + 1):
            write(root / folder / f"img{k}.bmp", bmp)
    orgs = np.array(orgs)
    dmos = np.where(orgs == 1, 0.0, np.round(rng.uniform(17.9, 84.5, len(orgs)), 4))
    dmos_new = np.where(orgs == 1, 0.0, np.round(1.3 * dmos - 25.0, 4))
    scipy.io.savemat(root / "dmos.mat", {"dmos": dmos[None], "orgs": orgs[None]})
    scipy.io.savemat(root / "dmos_realigned.mat",
                     {"dmos_new": dmos_new[None], "dmos_std": np.ones((1, len(orgs))), "orgs": orgs[None]})
    cells = np.empty((1, len(refnames)), dtype=object)
    cells[0, :] = refnames
    scipy.io.savemat(root / "refnames_all.mat", {"refnames_all": cells})
    for name in LIVE_REFS:
        write(root / "refimgs" / f"{name}.bmp", bmp)
    return root


# ---------------------------------------------------------------- TID2013
def tid_name(ref: int, dtype: int, level: int) -> str:
    """The official file name, with its case quirks."""
    if level == 1 and dtype == 1:
        return f"I{ref:02d}_01_1.bmp"
    if level == 1 and dtype in (11, 13):
        return f"I{ref:02d}_{dtype:02d}_1.BMP"
    return f"i{ref:02d}_{dtype:02d}_{level}.bmp"


def tid_mos(ref: int, dtype: int, level: int) -> float:
    return round(7.0 - 1.1 * level + 0.01 * dtype + 0.001 * ref, 5)


def build_tid2013(root: Path, refs=range(1, 26), types=range(1, 25), levels=range(1, 6),
                  lower_case_labels: bool = False) -> Path:
    """TID2013 with the official names; ``lower_case_labels`` writes the label names all lower-case."""
    bmp = encoded("BMP")
    lines, stds = [], []
    for r in refs:
        write(root / "reference_images" / ("i25.bmp" if r == 25 else f"I{r:02d}.BMP"), bmp)
        for t in types:
            for lv in levels:
                name = tid_name(r, t, lv)
                write(root / "distorted_images" / name, bmp)
                lines.append(f"{tid_mos(r, t, lv):.5f} {name.lower() if lower_case_labels else name}\n")
                stds.append("0.13013\n")
    (root / "mos_with_names.txt").write_text("".join(lines))
    (root / "mos_std.txt").write_text("".join(stds))
    return root


# ---------------------------------------------------------------- PIPAL
PIPAL_GROUPS = (12, 16, 10, 24, 13, 14, 27)  # per reference, groups 00..06: 116 images
PIPAL_IDS = [i for i in range(1, 249) if i % 6 != 0][:200]  # non-contiguous, like A0001 ... A0248


def pipal_elo(ref: int, group: int, idx: int) -> float:
    return round(1500.0 + 3.0 * ref - 20.0 * group + 0.5 * idx, 4)


def build_pipal(root: Path, n_refs: int = 200, layout: str = "Train_Dis") -> Path:
    """PIPAL train. ``layout``: "Train_Dis" (merged), "Distortion" (Distortion_1..4) or "nested" (an arbitrary
    sub-folder tree, found by the recursive search)."""
    bmp = encoded("BMP")
    ids = PIPAL_IDS[:n_refs]
    for pos, ref in enumerate(reversed(ids)):  # label files created in reverse: the reader must sort them
        ref_id = f"A{ref:04d}"
        write(root / "Train_Ref" / f"{ref_id}.bmp", bmp)
        folder = {"Train_Dis": root / "Train_Dis",
                  "Distortion": root / f"Distortion_{pos % 4 + 1}",
                  "nested": root / "unpacked" / f"part{pos % 3}"}[layout]
        lines = []
        for group, count in enumerate(PIPAL_GROUPS):
            for idx in range(count):
                name = f"{ref_id}_{group:02d}_{idx:02d}.bmp"
                write(folder / name, bmp)
                lines.append(f"{name},{pipal_elo(ref, group, idx)}\n")
        write(root / "Train_Label" / f"{ref_id}.txt", "".join(lines).encode())
    return root


# ---------------------------------------------------------------- KADID-10k
def kadid_mos(ref: int, dtype: int, level: int) -> float:
    return round(4.9 - 0.7 * level + 0.01 * dtype + 0.0001 * ref, 4)


def build_kadid(root: Path, n_refs: int = 81) -> Path:
    png = encoded("PNG")
    rows = []
    for r in range(1, n_refs + 1):
        write(root / "images" / f"I{r:02d}.png", png)
        for t in range(1, 26):
            for lv in range(1, 6):
                name = f"I{r:02d}_{t:02d}_{lv:02d}.png"
                write(root / "images" / name, png)
                rows.append([name, f"I{r:02d}.png", kadid_mos(r, t, lv), 0.496])
    with open(root / "dmos.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dist_img", "ref_img", "dmos", "var"])
        writer.writerows(rows)
    return root


# ---------------------------------------------------------------- CSIQ
CSIQ_REFS = [
    "1600", "aerial_city", "boston", "bridge", "butter_flower", "cactus", "child_swimming", "couple", "elk",
    "family", "fisher", "foxy", "geckos", "lady_liberty", "lake", "log_seaside", "monument", "native_american",
    "redwood", "roping", "rushmore", "shroom", "snow_leaves", "sunset_sparrow", "sunsetcolor", "swarm", "trolley",
    "turtle", "veggies", "woman",
]
CSIQ_TYPES = [("awgn", "AWGN"), ("jpeg", "JPEG"), ("jpeg2000", "jpeg2000"), ("fnoise", "fnoise"), ("blur", "BLUR"),
              ("contrast", "contrast")]


def csiq_pairs(refs=CSIQ_REFS) -> list[tuple[str, str, str, int, float]]:
    """(ref, folder, file name, level, dmos) of the 866 official pairs: contrast has 4 levels for 26 refs, 3 for 4."""
    pairs = []
    for i, ref in enumerate(refs):
        for t, (folder, tag) in enumerate(CSIQ_TYPES):
            levels = (4 if i < 26 else 3) if folder == "contrast" else 5
            for lv in range(1, levels + 1):
                pairs.append((ref, folder, f"{ref}.{tag}.{lv}.png", lv, round(0.02 * lv + 0.003 * t + 0.0001 * i, 6)))
    return pairs


def build_csiq(root: Path, label: str = "txt", images: str = "nested", refs=CSIQ_REFS) -> Path:
    """CSIQ. ``label``: "txt" (csiq_label.txt), "txt_noext" (names without .png) or "csv" (pyiqa meta CSV);
    ``images``: "nested" (dst_imgs/<type>/), "flat" (dst_imgs/) or "all" (dst_imgs_all/)."""
    png = encoded("PNG")
    pairs = csiq_pairs(refs)
    for ref in refs:
        write(root / "src_imgs" / f"{ref}.png", png)
    for _ref, folder, name, _, _ in pairs:
        sub = {"nested": Path("dst_imgs") / folder, "flat": Path("dst_imgs"), "all": Path("dst_imgs_all")}[images]
        write(root / sub / name, png)
    if label == "csv":
        with open(root / "meta_info_CSIQDataset.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["ref_name", "dist_name", "dmos"])
            writer.writerows([f"{ref}.png", name, dmos] for ref, _, name, _, dmos in pairs)
    else:
        strip = label == "txt_noext"
        lines = [f"{name[:-4] if strip else name} {dmos}\n" for _, _, name, _, dmos in pairs]
        (root / "csiq_label.txt").write_text("".join(lines))
    return root


def assert_official_set(items, name: str) -> None:
    """What the one reader guarantees for a whole official set: its spec's counts, pairs in label order, the label
    direction the dataset declares."""
    from zsiqa.data import DATASETS

    spec = DATASETS.get(name)
    assert len(items) == spec.num_items and len({i.ref_id for i in items}) == spec.num_refs
    assert [i.index for i in items] == list(range(spec.num_items))
    assert all(i.label_lower_better == spec.lower_better for i in items)


@pytest.fixture(scope="session")
def layouts():
    """The builders, label formulas and checks of this module, for tests to build datasets and check against."""
    return SimpleNamespace(**{k: v for k, v in globals().items() if not k.startswith("_")})


@pytest.fixture(scope="session")
def official_root(tmp_path_factory):
    """A full official set in its layout, built once per session: ``official_root("tid2013")``."""
    builders = {"live": (build_live, "databaserelease2"), "tid2013": (build_tid2013, "tid2013"),
                "pipal": (build_pipal, "PIPAL"), "kadid10k": (build_kadid, "kadid10k")}
    built: dict[str, Path] = {}

    def root(name: str) -> Path:
        if name not in built:
            build, folder = builders[name]
            built[name] = build(tmp_path_factory.mktemp(folder))
        return built[name]

    return root
