"""Distance terms of pairs (``TermTable``, what the term cache stores) and, for fitting learned weights, a
LightningDataModule of their rows: (position, label, terms...)."""
from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from ..learned_weights import Terms


@dataclass
class TermTable:
    """Distance terms of pairs; row i is pair ``index[i]``: ``layer`` ``[N, L]``, ``channel`` L x ``[N, C_l]`` or None."""

    index: torch.Tensor
    layer: torch.Tensor
    channel: list[torch.Tensor] | None = None

    def rows(self, positions: torch.Tensor) -> TermTable:
        channel = None if self.channel is None else [c[positions] for c in self.channel]
        return TermTable(self.index[positions], self.layer[positions], channel)

    def terms(self, channels: bool) -> Terms:
        """What a head takes: channel terms for per-channel heads, layer terms otherwise."""
        if channels and self.channel is None:
            raise ValueError("this term table has no channel terms; compute it with channels=True")
        return self.channel if channels else self.layer


class EpochShuffle(Sampler[int]):
    """A permutation drawn from ``seed + epoch``: reproducible, and a resumed run sees the same order
    (Lightning calls ``set_epoch`` at the start of every epoch)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist())

    def __len__(self) -> int:
        return self.n


class TermDataModule(L.LightningDataModule):
    """Training rows in ``EpochShuffle`` order (batches of ``batch_size``) and all validation rows in one batch.

    train / val: ``(table, labels)``; channels: per-channel terms instead of layer terms. The position column
    identifies each pair for the exact validation gather (``zsiqa.stats.IndexedScores``).
    """

    def __init__(self, train: tuple[TermTable, torch.Tensor], val: tuple[TermTable, torch.Tensor], channels: bool,
                 batch_size: int, seed: int) -> None:
        super().__init__()
        self.train, self.val, self.channels = train, val, channels
        self.batch_size, self.seed = batch_size, seed

    def _rows(self, table: TermTable, labels: torch.Tensor) -> TensorDataset:
        return TensorDataset(torch.arange(len(labels)), labels, *(table.channel if self.channels else [table.layer]))

    def train_dataloader(self) -> DataLoader:
        data = self._rows(*self.train)
        return DataLoader(data, batch_size=self.batch_size, sampler=EpochShuffle(len(data), self.seed))

    def val_dataloader(self) -> DataLoader:
        data = self._rows(*self.val)
        return DataLoader(data, batch_size=len(data))
