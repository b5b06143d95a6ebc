"""Datasets: readers for the official layouts of LIVE, TID2013, PIPAL, KADID-10k, CSIQ and a bundled demo set.

``read_dataset(name, root, **opts) -> list[PairItem]`` is the one entry point; ``DATASETS`` describes each dataset
(label, direction, size of the full official set). ``PairDataset`` loads the images; ``FRDataModule`` (datamodule.py) serves them to Lightning.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import MissingFileError
from ..registry import Registry
from . import csiq, demo, kadid, live, pipal, tid2013
from .csiq import read_csiq
from .dataset import PairDataset
from .demo import build_demo, read_demo
from .items import DatasetSpec, PairItem, reference_paths
from .kadid import read_kadid
from .live import read_live
from .pipal import read_pipal
from .tid2013 import read_tid2013

DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _spec in (live.SPEC, tid2013.SPEC, pipal.SPEC, kadid.SPEC, csiq.SPEC, demo.SPEC):
    DATASETS.register(_spec.name, _spec)


def read_dataset(name: str, root: str | os.PathLike | None = None, **opts) -> list[PairItem]:
    """Read dataset ``name`` (a key of ``DATASETS``) from ``root``; ``opts`` go to its reader (e.g. ``strict``).

    ``root`` may be None only for "demo", which is then built in its default cache folder.
    """
    return DATASETS.get(name).read(root, **opts)


def data_root(data: Mapping) -> Path | None:
    """``data.root`` (each ``configs/data/<name>.yaml`` defaults it to ``$ZSIQA_DATA/<folder>``); None builds the demo
    set in its cache folder."""
    if not data.get("root"):
        if data["name"] != "demo":
            raise MissingFileError(f"data={data['name']}: no root; pass data.root=/path/to/the/dataset")
        return None
    root = Path(data["root"]).expanduser()
    if not root.is_dir():
        raise MissingFileError(f"data={data['name']}: no dataset folder {root}; pass data.root=/path/to/{root.name} or "
                               "set ZSIQA_DATA to the folder that holds your datasets (default ./data)")
    return root


__all__ = [
    "data_root",
    "DATASETS", "DatasetSpec", "PairDataset", "PairItem", "build_demo",
    "read_csiq", "read_dataset", "read_demo", "read_kadid", "read_live", "read_pipal", "read_tid2013",
    "reference_paths",
]
