"""``FRDataModule``: any dataset reader as a LightningDataModule for evaluation.

Pairs still to score are ordered by reference (so each reference's features are computed once and reused) and cut into
batches; with N processes the batches are split into contiguous shards of whole batches, so every process computes
exactly the batches a single process would, and no pair is repeated or missing (unlike DistributedSampler padding).

A pair whose image cannot be read stops the run with the file named (``on_bad_image="error"``, the default) or, with
``on_bad_image="skip"``, is handed to the engine as failed so it records the pair and the reason (``split_failed``).
"""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Callable, Iterable, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from ..errors import ConfigError, InputError
from . import DATASETS, DatasetSpec, PairDataset, PairItem, read_dataset, reference_paths


def plan_batches(items: list[PairItem], skip: set[int], batch_size: int) -> list[list[int]]:
    """Positions (into ``items``) of the pairs not in ``skip`` (item indices), grouped by reference, cut into batches."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
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


ON_BAD_IMAGE = ("error", "skip")


def split_failed(batch: list[dict], on_bad_image: str = "error") -> tuple[list[dict], list[dict]]:
    """(samples whose images loaded, samples whose images failed). With ``on_bad_image="error"`` the first failure is
    raised here, in the main process, with its own message (the file named)."""
    if on_bad_image not in ON_BAD_IMAGE:
        raise ConfigError(f"on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}, got {on_bad_image!r}")
    failed = [s for s in batch if s["error"]]
    if failed and on_bad_image == "error":
        raise InputError(f"{failed[0]['error']} (data.on_bad_image=skip records such pairs as failed and goes on)")
    return [s for s in batch if not s["error"]], failed


def reference_groups(batch: list[dict]) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, list[dict]]]:
    """The samples of a batch grouped by reference (and image sizes): ``(ref_id, ref [1,3,H,W], dis [n,3,h,w],
    samples)`` in first-appearance order, so one reference's features serve all its distorted images. A sample whose
    image failed to load raises its error (pass ``split_failed``'s loaded samples to go on without them)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in batch:
        if s["error"]:
            raise InputError(s["error"])
        groups[(s["ref_id"], tuple(s["ref"].shape), tuple(s["dis"].shape))].append(s)
    for (ref_id, _, _), samples in groups.items():
        yield ref_id, samples[0]["ref"][None], torch.stack([s["dis"] for s in samples]), samples


class FRDataModule(L.LightningDataModule):
    """A labelled FR-IQA dataset (``zsiqa.data.DATASETS``) for ``Trainer.test``.

    name / root / reader options: as ``read_dataset``. limit: the first N pairs only. pair_transform: a robustness
    transform ``(ref, dis) -> (ref, dis)`` on PIL images. skip: item indices already scored (resume).
    exif: EXIF orientation of the image files, "apply" or "ignore" (resolve the config's "auto" against the preset
    with ``zsiqa.io.resolve_exif`` first). on_bad_image: "error" (a corrupt or missing image stops the run, file
    named) or "skip" (the evaluation engine records the pair as failed, with the reason).
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
        exif: str = "apply",
        on_bad_image: str = "error",
        **reader_options,
    ) -> None:
        super().__init__()
        if name not in DATASETS:
            raise ConfigError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
        if limit is not None and int(limit) < 1:
            raise ConfigError(f"data.limit must be a positive number of pairs (or null for all), got {limit}")
        self.name, self.root, self.limit = name, root, limit
        self.pair_transform = pair_transform
        self.batch_size, self.num_workers = batch_size, num_workers
        self.skip = set(skip)
        if exif not in ("apply", "ignore"):
            raise ConfigError(f"exif must be 'apply' or 'ignore' here, got {exif!r} (resolve 'auto' against the preset "
                              "with zsiqa.io.resolve_exif)")
        self.exif = exif
        if on_bad_image not in ON_BAD_IMAGE:
            raise ConfigError(f"data.on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}, got {on_bad_image!r}")
        self.on_bad_image = on_bad_image
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
            PairDataset(self.items, pair_transform=self.pair_transform, exif=self.exif),
            batch_sampler=self.shard(self.trainer.global_rank, self.trainer.world_size),
            num_workers=self.num_workers, collate_fn=collate_pairs,
        )
