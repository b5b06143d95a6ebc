"""Datasets: the official layouts of LIVE, TID2013, PIPAL, KADID-10k, CSIQ and a bundled demo set.

``read_dataset(name, root, **opts) -> list[PairItem]`` is the one entry point; ``DATASETS`` holds each dataset's
``DatasetSpec`` (``catalog``: label files, folders, counts, label direction), read by the one reader (``reader``).
``PairDataset`` loads the images; ``FRDataModule`` (``datamodule``) serves them to Lightning, ``TermDataModule``
(``term_data``) the cached terms that learned weights are fitted on.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import MissingFileError
from ..registry import Registry
from .catalog import SPECS
from .dataset import PairDataset
from .demo import build_demo
from .items import PairItem, reference_paths
from .reader import DatasetSpec, LabelFile, Row, read

DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _spec in SPECS:
    DATASETS.register(_spec)


def read_dataset(name: str, root: str | os.PathLike | None = None, **opts) -> list[PairItem]:
    """Read dataset ``name`` (a key of ``DATASETS``) from ``root``; ``opts``: ``strict``, ``label_file``, and LIVE's
    ``label``. ``root`` may be None only for "demo", which is then built in its default cache folder."""
    return read(DATASETS.get(name), root, **opts)


def data_root(data) -> Path | None:
    """``data.root`` of a ``zsiqa.config.DataConfig`` (each ``configs/data/<name>.yaml`` defaults it to
    ``$ZSIQA_DATA/<folder>``); None builds the demo set in its cache folder."""
    if not data.root:
        if data.name != "demo":
            raise MissingFileError(f"data={data.name}: no root; pass data.root=/path/to/the/dataset")
        return None
    root = Path(data.root).expanduser()
    if not root.is_dir():
        raise MissingFileError(f"data={data.name}: no dataset folder {root}; pass data.root=/path/to/{root.name} or "
                               "set ZSIQA_DATA to the folder that holds your datasets (default ./data)")
    return root


__all__ = ["DATASETS", "DatasetSpec", "LabelFile", "PairDataset", "PairItem", "Row", "build_demo", "data_root",
           "read_dataset", "reference_paths"]
