"""``FRDataModule``: any dataset reader as a LightningDataModule for evaluation.

Pairs still to score are ordered by reference (so each reference's features are computed once and reused) and cut into
batches; with N processes the batches are split into contiguous shards of whole batches, so every process computes
exactly the batches a single process would, and no pair is repeated or missing (unlike DistributedSampler padding).
"""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Callable, Iterable, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from . import DATASETS, DatasetSpec, PairDataset, PairItem, read_dataset, reference_paths


def plan_batches(items: list[PairItem], skip: set[int], batch_size: int) -> list[list[int]]:
    """Positions (into ``items``) of the pairs not in ``skip`` (item indices), grouped by reference, cut into batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    todo = sorted((i for i, it in enumerate(items) if it.index not in skip), key=lambda i: (items[i].ref_id, items[i].index))
    return [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]


class ShardBatchSampler(Sampler[list[int]]):
    """Contiguous whole batches for one process: the processes together cover every batch exactly once."""

    def __init__(self, batches: list[list[int]], rank: int, world_size: int) -> None:
        n = len(batches)
        self.batches = batches[rank * n // world_size : (rank + 1) * n // world_size]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def collate_pairs(samples: list[dict]) -> list[dict]:
    """Keep samples as a list: images in one batch may differ in size (LIVE)."""
    return samples


def reference_groups(batch: list[dict]) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, list[dict]]]:
    """The samples of a batch grouped by reference (and image sizes): ``(ref_id, ref [1,3,H,W], dis [n,3,h,w],
    samples)`` in first-appearance order, so one reference's features serve all its distorted images."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in batch:
        groups[(s["ref_id"], tuple(s["ref"].shape), tuple(s["dis"].shape))].append(s)
    for (ref_id, _, _), samples in groups.items():
        yield ref_id, samples[0]["ref"][None], torch.stack([s["dis"] for s in samples]), samples


class FRDataModule(L.LightningDataModule):
    """A labelled FR-IQA dataset (``zsiqa.data.DATASETS``) for ``Trainer.test``.

    name / root / reader options: as ``read_dataset``. limit: the first N pairs only. pair_transform: a robustness
    transform ``(ref, dis) -> (ref, dis)`` on PIL images. skip: item indices already scored (resume).
    """

    def __init__(
        self,
        name: str,
        root: str | os.PathLike | None = None,
        limit: int | None = None,
        pair_transform: Callable | None = None,
        batch_size: int = 16,
        num_workers: int = 2,
        skip: Iterable[int] = (),
        **reader_options,
    ) -> None:
        super().__init__()
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
        if limit is not None and int(limit) < 1:
            raise ValueError(f"data.limit must be a positive number of pairs (or null for all), got {limit}")
        self.name, self.root, self.limit = name, root, limit
        self.pair_transform = pair_transform
        self.batch_size, self.num_workers = batch_size, num_workers
        self.skip = set(skip)
        self.reader_options = reader_options
        self.items: list[PairItem] | None = None
        self.by_index: dict[int, PairItem] = {}
        self.batches: list[list[int]] = []

    @property
    def spec(self) -> DatasetSpec:
        return DATASETS[self.name]

    def setup(self, stage: str | None = None) -> None:
        if self.items is not None:
            return
        items = read_dataset(self.name, self.root, **self.reader_options)
        self.items = items if self.limit is None else items[: int(self.limit)]
        reference_paths(self.items)  # one ref_id must mean one file: reference features are cached by ref_id
        self.by_index = {it.index: it for it in self.items}
        self.batches = plan_batches(self.items, self.skip, self.batch_size)

    def shard(self, rank: int, world_size: int) -> ShardBatchSampler:
        return ShardBatchSampler(self.batches, rank, world_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(
            PairDataset(self.items, pair_transform=self.pair_transform),
            batch_sampler=self.shard(self.trainer.global_rank, self.trainer.world_size),
            num_workers=self.num_workers, collate_fn=collate_pairs,
        )
