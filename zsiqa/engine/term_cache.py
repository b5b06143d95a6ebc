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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from .. import __version__
from ..backbones import Backbone
from ..data import PairItem
from ..data.datamodule import FRDataModule
from ..data.term_data import TermTable
from ..errors import CorruptFileError, DataError
from ..files import atomic_save, load_tensors, move_aside
from ..metric import FRMetric
from .build import build_trainer, predict_trainer_node
from .scoring import ScoringModule
from .writers import PairProgress, TermPartsWriter, merge_term_parts, read_term_parts

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

CACHE_FORMAT = 2  # 2: a checksum of the tensors is stored and checked
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
    node; default: one CPU process) over its ``devices`` processes; each saves every batch to
    ``parts_dir`` (a folder every process sees; a temporary one for a single process), so a rerun after an
    interruption computes only the pairs missing there; process 0 merges them, calls ``save(table)`` (e.g. to cache
    it), then removes the parts, before any process returns.
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
    # Before predict (before the processes meet): every process sees the same finished batches.
    done = read_term_parts(parts, heal=trainer.is_global_zero)
    data.skip_pairs({i for part in done for i in part["index"].tolist()})
    if done and trainer.is_global_zero:
        print(f"terms: {sum(len(p['index']) for p in done)} of {len(data.items)} pairs already computed in {parts}")
    module = ScoringModule({metric.distance.name: metric}, output="terms", channels=channels, align=align)
    if data.batches:
        trainer.predict(module, datamodule=data, return_predictions=False)
    trainer.strategy.barrier()
    table = None
    if trainer.is_global_zero:
        index, terms = merge_term_parts(read_term_parts(parts, heal=True), data.items, parts)
        table = TermTable(index, terms[0], terms[1:] if channels else None)
        if save is not None:
            save(table)
        shutil.rmtree(parts)
    trainer.strategy.barrier()  # nobody looks for the saved table before it exists
    return table


def cache_file(cache_dir: str | os.PathLike, key: dict) -> Path:
    """``<cache_dir>/<data>_<backbone>_<distance>_<hash of key>.pt``."""
    text = json.dumps(key, sort_keys=True, default=str)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{key['data']['name']}_{key['metric']['backbone']}_{key['metric']['distance']}")
    return Path(cache_dir) / f"{name}_{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"


def table_digest(table: TermTable) -> str:
    """sha256 of a table's tensors: stored beside them, checked on every load (a flipped byte is never used)."""
    digest = hashlib.sha256()
    for t in [table.index, table.layer, *(table.channel or [])]:
        digest.update(t.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def read_cached(path: Path, key: dict) -> TermTable | None:
    """The table in ``path`` if it holds ``key`` and its checksum holds; None if absent or of another key. An
    unreadable or altered file is named in one line and moved aside (the table is computed again)."""
    if not path.is_file():
        return None
    try:
        stored = load_tensors(path, "term cache")
        table = TermTable(stored["index"], stored["layer"], stored["channel"])
        if table_digest(table) != stored["sha256"]:
            raise CorruptFileError(f"{path}: term cache altered (its checksum does not match its tensors)")
    except (CorruptFileError, KeyError, TypeError) as e:
        reason = e if isinstance(e, CorruptFileError) else f"{path}: not a term cache (no {e})"
        print(f"{reason}: moved to {move_aside(path).name}; computing it again")
        return None
    same = json.dumps(stored["key"], sort_keys=True, default=str) == json.dumps(key, sort_keys=True, default=str)
    return table if same else None


@contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold ``<cache file>.lock`` (process 0 of a run): a second run sharing the cache waits here, then reads the
    table the first one wrote instead of computing it again."""
    if fcntl is None:  # Windows: no flock; two runs at once may both compute (each writes the same table atomically)
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another run computing {path.name} (lock {f.name})")
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def cached_terms(cache_dir: str | os.PathLike, key: dict,
                 compute: Callable[[Callable[[TermTable], object]], TermTable | None]) -> tuple[TermTable | None, Path, bool]:
    """The table stored under ``key`` in ``cache_dir``, else ``compute(save)`` it (``compute_terms(..., save=save)``:
    process 0 stores it before the processes part).

    Returns ``(table, file, computed)``; ``table`` is None on processes other than 0 when computed. The file name
    holds a hash of the key and the file holds the key itself and a checksum of its tensors, so a changed backbone,
    preset, window, distance, dataset, transform or code never reads a stale table, nor a damaged file a bad one.
    Process 0 holds the file's lock while it reads or computes it: two runs sharing a cache compute a table once.
    DDP processes other than 0 follow their process 0 into the computation (they never take the lock).
    """
    path = cache_file(cache_dir, key)
    if rank_zero_only.rank != 0:
        table = read_cached(path, key)
        return (table, path, False) if table is not None else (compute(lambda table: None), path, True)
    with cache_lock(path):
        table = read_cached(path, key)
        if table is not None:
            return table, path, False

        def save(table: TermTable) -> None:
            record = {"key": key, "index": table.index, "layer": table.layer, "channel": table.channel,
                      "sha256": table_digest(table)}
            atomic_save(path, record)

        return compute(save), path, True
