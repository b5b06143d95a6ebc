"""Prediction writers: where ``Trainer.predict``'s per-batch results go, one part per process, merged on process 0.

``ScoreRowsWriter`` appends every batch's rows to ``<run>/parts/rank<r>.csv`` (flushed: an interrupted run keeps them
and a rerun skips their pairs); ``zsiqa.reporting.results.merge_parts`` writes ``scores.csv`` by index.
``TermPartsWriter`` keeps a process's terms and writes them as one part file at the end; ``merge_term_parts`` puts
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
from ..files import atomic_save, load_tensors
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
    """``{"index", "terms"}`` predictions of this process, saved to ``<parts_dir>/rank<r>.pt`` when predict ends."""

    def __init__(self, parts_dir: Path) -> None:
        super().__init__(write_interval="batch")
        self.parts_dir = Path(parts_dir)
        self.index: list[int] = []
        self.terms: list[list[torch.Tensor]] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0) -> None:
        self.index += prediction["index"]
        self.terms.append(prediction["terms"])

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        part = {"index": torch.tensor(self.index, dtype=torch.long), "terms": [torch.cat(t) for t in zip(*self.terms)]}
        atomic_save(self.parts_dir / f"rank{trainer.global_rank}.pt", part)


def merge_term_parts(parts_dir: Path, items: Sequence[PairItem]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Every process's terms in item order: ``(index [N], [layer [N, L], channel [N, C_l]...])``; each pair must
    appear exactly once (a process without batches writes no part)."""
    position = {it.index: i for i, it in enumerate(items)}
    rows: list[int] = []
    columns: list[list[torch.Tensor]] = []
    for path in sorted(Path(parts_dir).glob("rank*.pt")):
        part = load_tensors(path, "term part")
        rows += [position[i] for i in part["index"].tolist()]
        columns.append(part["terms"])
    if sorted(rows) != list(range(len(items))):
        raise RuntimeError(f"{parts_dir}: the processes' term parts cover {len(set(rows))} of {len(items)} pairs")
    order = torch.tensor(rows, dtype=torch.long).argsort()
    terms = [torch.cat(c)[order] for c in zip(*columns)]
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
