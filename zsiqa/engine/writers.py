"""Prediction writers: where ``Trainer.predict``'s per-batch results go, one part per process, merged on process 0.

``ScoreRowsWriter`` appends every batch's rows to ``<run>/parts/rank<r>.csv`` (flushed: an interrupted run keeps them
and a rerun skips their pairs); ``zsiqa.reporting.results.merge_parts`` writes ``scores.csv`` by index.
``TermPartsWriter`` saves every batch's terms as a part file (a rerun resumes per batch); ``merge_term_parts`` puts
them in item order. ``PairProgress`` is a progress bar in pairs.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from ..data import PairItem
from ..data.datamodule import batch_pairs
from ..errors import CorruptFileError
from ..files import atomic_save, load_tensors, move_aside
from ..reporting.results import ERROR_COLUMN, ScoreWriter


def item_row(item: PairItem, transform_label: str) -> dict:
    """The descriptive columns of a pair's row in ``scores.csv``."""
    return {"index": item.index, "ref": str(item.ref), "dis": str(item.dis), "label": repr(float(item.label)),
            "dist_type": item.dist_type, "level": item.level, "ref_id": item.ref_id, "transform": transform_label}


class ScoreRowsWriter(BasePredictionWriter):
    """Rows of ``{"index", "scores"}`` predictions, appended to this process's CSV part after every batch."""

    def __init__(self, run_dir: Path, transform_label: str) -> None:
        super().__init__(write_interval="batch")
        self.run_dir, self.transform_label = Path(run_dir), transform_label
        self.part: ScoreWriter | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.part = ScoreWriter(self.run_dir, trainer.global_rank, pl_module.score_columns)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        by_index = trainer.datamodule.by_index
        rows = [{**item_row(by_index[index], self.transform_label), ERROR_COLUMN: reason}
                for index, reason in prediction["failed"].items()]
        for j, index in enumerate(prediction["index"]):
            row = item_row(by_index[index], self.transform_label)
            row.update({name: repr(values[j]) for name, values in prediction["scores"].items()})
            rows.append(row)
        self.part.write(rows)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.part is not None:
            self.part.close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.on_predict_end(trainer, pl_module)  # release the part file (and its lock) for a rerun in this process


class TermPartsWriter(BasePredictionWriter):
    """``{"index", "terms"}`` predictions saved after every batch as ``<parts_dir>/batch<first index>.pt`` (atomic
    writes): an interrupted computation keeps every finished batch, and a rerun computes only the other pairs."""

    def __init__(self, parts_dir: Path) -> None:
        super().__init__(write_interval="batch")
        self.parts_dir = Path(parts_dir)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        index = torch.tensor(prediction["index"], dtype=torch.long)
        atomic_save(self.parts_dir / f"batch{int(index.min()):08d}.pt", {"index": index, "terms": prediction["terms"]})


def read_term_parts(parts_dir: Path, heal: bool) -> list[dict]:
    """The readable batch parts in ``parts_dir``. An unreadable one (truncated, garbage) is left out, its pairs
    computed again; with ``heal`` (process 0) it is named in one line and moved aside."""
    parts = []
    for path in sorted(Path(parts_dir).glob("batch*.pt")):
        try:
            part = load_tensors(path, "term part")
            if not isinstance(part, dict) or not {"index", "terms"} <= set(part):
                raise CorruptFileError(f"{path}: not a term part (no index and terms)")
        except CorruptFileError as e:
            if heal and path.exists():
                print(f"{e}: moved to {move_aside(path).name}; its pairs are computed again")
            continue
        parts.append(part)
    return parts


def merge_term_parts(parts: list[dict], items: Sequence[PairItem], parts_dir: Path) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The batch parts' terms in item order: ``(index [N], [layer [N, L], channel [N, C_l]...])``; each pair must
    appear exactly once."""
    position = {it.index: i for i, it in enumerate(items)}
    rows = [position[i] for part in parts for i in part["index"].tolist()]
    if sorted(rows) != list(range(len(items))):
        raise RuntimeError(f"{parts_dir}: the term parts cover {len(set(rows))} of {len(items)} pairs")
    order = torch.tensor(rows, dtype=torch.long).argsort()
    terms = [torch.cat(c)[order] for c in zip(*(part["terms"] for part in parts))]
    return torch.tensor([it.index for it in items], dtype=torch.long), terms


class PairProgress(L.Callback):
    """A progress bar in pairs (not batches), with pairs/s, on process 0."""

    def __init__(self, desc: str = "scoring") -> None:
        self.desc = desc
        self.bar = None

    def on_predict_start(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            from tqdm.auto import tqdm

            total = sum(len(b) for b in trainer.datamodule.shard(0, trainer.world_size).batches)
            desc = self.desc if trainer.world_size == 1 else f"{self.desc} (process 0 of {trainer.world_size})"
            self.bar = tqdm(total=total, unit="pair", desc=desc, dynamic_ncols=True)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.bar is not None:
            self.bar.update(batch_pairs(batch))

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.on_predict_end(trainer, pl_module)  # the error message then starts on a line of its own
