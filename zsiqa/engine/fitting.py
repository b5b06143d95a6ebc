"""Fitting learned weights as a LightningModule: ``Trainer.fit`` on cached terms (``zsiqa.data.term_data``).

The backbone is frozen, so the terms never change and this module holds the weights only (its checkpoints are
kilobytes). Every checkpoint also carries the trained record (``zsiqa.learned_weights.trained_record``), so any
checkpoint can be evaluated.
"""
from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..files import atomic_save, load_tensors
from ..learned_weights import CHECKPOINT_KEY, Terms, TermWeights, trained_record
from ..losses import get_loss
from ..stats import IndexedScores, correlations


class SafeCheckpointIO(TorchCheckpointIO):
    """The fit Trainer's checkpoint files (``configs/trainer/fit.yaml`` ``plugins``): written atomically (a kill
    mid-write leaves the previous ``last.ckpt``, never half of one) and read back as tensors only (Lightning's resume
    included: a planted ``last.ckpt`` runs no code), a bad file being one line that names it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        atomic_save(path, checkpoint)

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return load_tensors(path, "checkpoint")


class WeightsFit(L.LightningModule):
    """weights: what to learn. loss: a MOS objective (``zsiqa.losses.MOS_LOSSES``); lr, weight_decay: Adam's.
    score_lower_better / label_lower_better: both sides are turned into "higher = better" before the loss.
    zero_shot: the zero-shot validation correlations, logged beside the trained ones. trained_config: what rebuilds
    the metric (stored in every checkpoint)."""

    def __init__(self, weights: TermWeights, loss: str, lr: float, weight_decay: float, score_lower_better: bool,
                 label_lower_better: bool, zero_shot: dict, trained_config: dict) -> None:
        super().__init__()
        self.weights = weights
        self.loss_fn = get_loss(loss)
        self.lr, self.weight_decay = lr, weight_decay
        self.score_lower_better, self.label_lower_better = score_lower_better, label_lower_better
        self.zero_shot, self.trained_config = zero_shot, trained_config
        self.val_metrics: dict = {}
        self.val_scores = IndexedScores(sync_on_compute=False)  # fit runs on one process (see engine.training)
        self._epoch_losses: list[torch.Tensor] = []

    def _terms(self, batch: list[torch.Tensor]) -> Terms:
        return list(batch[2:]) if self.weights.channels is not None else batch[2]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.weights.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        scores, labels = self.weights(self._terms(batch)), batch[1]
        quality = -scores if self.score_lower_better else scores
        loss = self.loss_fn(quality, -labels if self.label_lower_better else labels)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        self._epoch_losses.append(loss.detach())
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.val_scores.update(batch[0], self.weights(self._terms(batch)), batch[1])

    def on_validation_epoch_end(self) -> None:
        rows = self.val_scores.compute()  # gathered across processes, each pair exactly once
        self.val_scores.reset()
        corr = correlations(rows["score"], rows["label"], self.score_lower_better, self.label_lower_better)
        self.val_metrics = {"srcc": corr["srcc"], "plcc": corr["plcc"]}
        self.log_dict({"val/srcc": corr["srcc"], "val/plcc": corr["plcc"], "val/srcc_zero_shot": self.zero_shot["srcc"],
                       "val/plcc_zero_shot": self.zero_shot["plcc"]})
        self.log_dict({f"weights/layer_{i}": w for i, w in enumerate(self.weights.effective_layer_weights().tolist())})

    def on_train_epoch_end(self) -> None:
        loss = torch.stack(self._epoch_losses).mean().item() if self._epoch_losses else float("nan")
        self._epoch_losses = []
        v = self.val_metrics
        self.print(f"epoch {self.current_epoch:3d}  loss {loss:.4f}  val SRCC {v.get('srcc', float('nan')):.4f}  "
                   f"PLCC {v.get('plcc', float('nan')):.4f}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = trained_record(self.trained_config, self.weights)
