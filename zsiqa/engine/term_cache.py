"""Distance terms of every pair, computed once by the method module's ``predict`` and cached on disk.

The backbone is frozen, so each pair's per-layer (and per-channel) terms never change. They are computed by the same
engine as evaluation (``ScoringModule(output="terms")`` under ``Trainer.predict``, sharded across processes, each
reference's features once) and stored under a key of everything that determines them (backbone weights, preset,
windows, distance, dataset items, transform, and the source code that computes them); training then runs on that
small table and never calls the backbone.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .. import __version__
from ..backbones import Backbone
from ..data import PairItem
from ..data.datamodule import FRDataModule
from ..data.term_data import TermTable
from ..errors import DataError
from ..files import atomic_save
from ..metric import FRMetric
from .build import build_trainer, predict_trainer_node
from .scoring import ScoringModule
from .writers import PairProgress, TermPartsWriter, merge_term_parts

CACHE_FORMAT = 1
# Modules whose code computes the terms (besides the backbone's own module): a change to any of them changes the
# cache key, so no table computed by older code is read.
TERMS_CODE = ("zsiqa.windows", "zsiqa.metric", "zsiqa.images", "zsiqa.transforms", "zsiqa.distances.basic")


def items_digest(items: Sequence[PairItem]) -> str:
    """Hash of the pair list and of every image file's size and modification time: it changes when the data do."""
    digest = hashlib.sha256()
    stats: dict[Path, str] = {}
    for it in items:
        for path in (it.ref, it.dis):
            if path not in stats:
                st = os.stat(path)
                stats[path] = f"{st.st_size}:{st.st_mtime_ns}"
        digest.update(f"{it.index}\t{it.ref_id}\t{it.ref}\t{stats[it.ref]}\t{it.dis}\t{stats[it.dis]}\n".encode())
    return digest.hexdigest()


def terms_code_digest(backbone: Backbone) -> str:
    """Short hash of zsiqa's version and of the source of the modules that compute terms (``TERMS_CODE`` and the
    module that defines ``backbone``'s class): edited tap, window or distance code never reuses cached terms."""
    digest = hashlib.sha256(__version__.encode())
    cls = type(backbone)
    for module in [importlib.import_module(name) for name in TERMS_CODE] + [sys.modules[cls.__module__]]:
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError) as e:
            raise ValueError(f"cannot read the source of module {module.__name__!r}, which defines {cls.__name__} "
                             f"({e}); the term cache is keyed on it: define the backbone in a .py file") from e
        digest.update(f"{module.__name__}\n{source}\n".encode())
    return digest.hexdigest()[:16]


def term_cache_key(metric: FRMetric, fingerprint: str, channels: bool, data: FRDataModule, align: str) -> dict:
    """Everything that determines the terms: backbone weights, preset, normalisation, precision, windows, distance,
    the dataset's items and files, the pair transform, and the code that computes them (``terms_code_digest``)."""
    data.setup("predict")
    return {
        "format": CACHE_FORMAT, "code": terms_code_digest(metric.backbone), "metric": metric.config(),
        "fingerprint": fingerprint, "channels": channels,
        "data": {"name": data.name, "root": None if data.root is None else str(data.root),
                 "items": items_digest(data.items), "num_items": len(data.items)},
        "transform": repr(data.pair_transform), "align": str(align),  # a PairTransform's repr is its name, amount, preset
        "exif": data.exif,
    }


def compute_terms(metric: FRMetric, data: FRDataModule, channels: bool = False, align: str = "error",
                  trainer: dict | None = None, parts_dir: str | os.PathLike | None = None,
                  save: Callable[[TermTable], object] | None = None, progress: bool = True) -> TermTable | None:
    """Window-averaged terms of every pair of ``data``, in item order, on process 0 (None on the others).

    ``Trainer.predict`` of ``ScoringModule(output="terms")`` with ``trainer`` (a ``configs/trainer/predict.yaml``
    node; default: one CPU process) over its ``devices`` processes; each writes its shard to
    ``parts_dir`` (a folder every process sees; a temporary one for a single process), process 0 merges them and
    calls ``save(table)`` (e.g. to cache it) before any process returns.
    align: "error" or "resize" (a distorted image of another size is resized to its reference), as ``align_pair``.
    """
    data.setup("predict")
    if not data.items:
        where = "" if data.root is None else f" at {data.root}"
        raise DataError(f"{data.name}: no pairs to compute terms for: the dataset{where} lists none")
    trainer = predict_trainer_node() if trainer is None else trainer
    if parts_dir is None:
        if trainer["devices"] > 1:
            raise ValueError("compute_terms on several processes needs a parts_dir that all of them see")
        with tempfile.TemporaryDirectory() as tmp:
            return compute_terms(metric, data, channels, align, trainer, tmp, save, progress)
    parts = Path(parts_dir)
    writer = TermPartsWriter(parts)
    trainer = build_trainer(trainer, [writer, *([PairProgress("terms")] if progress else [])])
    if trainer.is_global_zero:
        shutil.rmtree(parts, ignore_errors=True)  # parts of an interrupted run
    trainer.strategy.barrier()
    module = ScoringModule({metric.distance.name: metric}, output="terms", channels=channels, align=align)
    trainer.predict(module, datamodule=data, return_predictions=False)
    trainer.strategy.barrier()
    table = None
    if trainer.is_global_zero:
        index, terms = merge_term_parts(parts, data.items)
        shutil.rmtree(parts)
        table = TermTable(index, terms[0], terms[1:] if channels else None)
        if save is not None:
            save(table)
    trainer.strategy.barrier()  # nobody looks for the saved table before it exists
    return table


def cache_file(cache_dir: str | os.PathLike, key: dict) -> Path:
    """``<cache_dir>/<data>_<backbone>_<distance>_<hash of key>.pt``."""
    text = json.dumps(key, sort_keys=True, default=str)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{key['data']['name']}_{key['metric']['backbone']}_{key['metric']['distance']}")
    return Path(cache_dir) / f"{name}_{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"


def cached_terms(cache_dir: str | os.PathLike, key: dict,
                 compute: Callable[[Callable[[TermTable], object]], TermTable | None]) -> tuple[TermTable | None, Path, bool]:
    """The table stored under ``key`` in ``cache_dir``, else ``compute(save)`` it (``compute_terms(..., save=save)``:
    process 0 stores it before the processes part).

    Returns ``(table, file, computed)``; ``table`` is None on processes other than 0 when computed. The file name
    holds a hash of the key and the file holds the key itself, so a changed backbone, preset, window, distance,
    dataset, transform or code never reads a stale table.
    """
    path = cache_file(cache_dir, key)
    if path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if json.dumps(stored["key"], sort_keys=True, default=str) == json.dumps(key, sort_keys=True, default=str):
            return TermTable(stored["index"], stored["layer"], stored["channel"]), path, False

    def save(table: TermTable) -> None:
        record = {"key": key, "index": table.index, "layer": table.layer, "channel": table.channel}
        atomic_save(path, record)

    return compute(save), path, True
