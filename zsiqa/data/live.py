"""LIVE IQA Release 2 (``databaserelease2/``) as distributed.

Layout: ``refimgs/<name>.bmp`` (29 references); ``jp2k/ jpeg/ wn/ gblur/ fastfading/`` holding ``img{k}.bmp``;
``dmos.mat`` (``dmos``, ``orgs``), ``dmos_realigned.mat`` (``dmos_new``, ``orgs``) and ``refnames_all.mat``
(``refnames_all``, a 1x982 cell of reference file names). The 982 label entries follow the folder order
jp2k(227) jpeg(233) wn(174) gblur(174) fastfading(174), entry k of a folder being ``img{k}.bmp``. Entries with
``orgs == 1`` are the reference itself shown as a stimulus and are dropped, leaving 779 distorted images.
Labels are DMOS (lower = better); the realigned DMOS (Sheikh et al. 2006, the one ZS-IQA's results use) is the
default, ``label="dmos"`` gives the original DMOS that pyiqa uses.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.io

from ..errors import ConfigError, DataError
from .items import require_file
from .reader import Row

FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
NUM_ENTRIES = sum(n for _, n in FOLDERS)  # 982
LABELS = {"dmos_realigned": ("dmos_realigned.mat", "dmos_new"), "dmos": ("dmos.mat", "dmos")}
LIVE_OPTIONS = ("label",)  # reader options: which DMOS


def live_rows(root: Path, label: str = "dmos_realigned") -> Iterator[tuple[str, str, Row]]:
    """The rows of the 779 distorted LIVE images with their DMOS (``label``: "dmos_realigned" or "dmos"), in the
    .mat files' order, reference copies (``orgs == 1``) left out."""
    if label not in LABELS:
        raise ConfigError(f"LIVE: unknown label {label!r}; choose one of {sorted(LABELS)}")
    mat_name, key = LABELS[label]
    label_path = root / mat_name
    mat = _load_mat(label_path)
    labels = _vector(mat, key, label_path)
    orgs = _vector(mat, "orgs", label_path)
    refnames = _ref_names(root / "refnames_all.mat")
    if not np.isin(orgs, (0, 1)).all():
        raise DataError(f"LIVE: {label_path}: 'orgs' must hold only 0 and 1 (1 = reference copy)")
    entries = [(name, k) for name, n in FOLDERS for k in range(1, n + 1)]
    for i, (folder, k) in enumerate(entries):
        if orgs[i] == 1:
            continue
        where = f"{label_path} entry {i + 1}"
        if not np.isfinite(labels[i]):
            raise DataError(f"LIVE: {where} ({folder}/img{k}.bmp): '{key}' is not a finite number")
        dis = f"{folder}/img{k}.bmp"
        yield where, f"{dis} {refnames[i]} {labels[i]}", Row(refnames[i], dis, float(labels[i]), folder,
                                                              Path(refnames[i]).stem)


def _load_mat(path: Path) -> dict:
    require_file(path, "LIVE", "label file")
    try:
        return scipy.io.loadmat(path)
    except (ValueError, NotImplementedError, OSError) as err:
        raise DataError(f"LIVE: cannot read {path} as a MATLAB .mat file ({err})") from err


def _vector(mat: dict, key: str, path: Path) -> np.ndarray:
    """The 982 values of ``key`` from a loaded LIVE .mat file, as a flat float array."""
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"LIVE: {path} has no variable {key!r} (found {found})")
    values = np.asarray(mat[key], dtype=np.float64).ravel()
    _check_length(path, key, len(values))
    return values


def _ref_names(path: Path) -> list[str]:
    """Reference file names from ``refnames_all`` (a MATLAB cell array, or a char matrix)."""
    mat = _load_mat(path)
    if "refnames_all" not in mat:
        raise DataError(f"LIVE: {path} has no variable 'refnames_all'")
    raw = mat["refnames_all"]
    if raw.dtype == object:
        names = [str(np.asarray(cell).ravel()[0]) if np.asarray(cell).size else "" for cell in raw.ravel()]
    else:
        names = [str(name) for name in raw.ravel()]
    names = [name.strip() for name in names]
    _check_length(path, "refnames_all", len(names))
    return names


def _check_length(path: Path, key: str, n: int) -> None:
    if n != NUM_ENTRIES:
        raise DataError(
            f"LIVE: {path}: {key!r} has {n} entries, expected {NUM_ENTRIES} "
            "(the Release 2 order jp2k 227, jpeg 233, wn 174, gblur 174, fastfading 174)"
        )
