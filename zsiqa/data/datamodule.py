"""``FRDataModule``: any dataset reader as a LightningDataModule for the engine's ``Trainer.predict``.

Pairs still to score are ordered by reference (so each reference's features are computed once and reused) and cut into
batches, of ``batch_size`` distorted images or of as many as fit in ``batch_windows`` backbone windows; with N
processes the batches are split into contiguous shards of whole batches, so every process computes exactly the
batches a single process would, and no pair is repeated or missing (unlike DistributedSampler padding). The loader's
workers group each batch by reference (``collate_pairs``), so a reference crosses to the device once per batch, from
pinned memory when the device is a GPU.

A pair whose image cannot be read stops the run with the file named (``on_bad_image="error"``, the default) or, with
``on_bad_image="skip"``, is handed to the engine as failed so it records the pair and the reason: the loader never
raises inside a worker (``PairDataset`` puts the message in the sample), ``collate_pairs`` passes it on.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..choices import OnBadImage
from ..errors import ConfigError, InputError
from ..images import to_float
from . import DATASETS, DatasetSpec, PairDataset, PairItem, read_dataset, reference_paths

WindowCount = Callable[[PairItem], int]


def plan_batches(items: list[PairItem], skip: set[int], batch_size: int, batch_windows: int | None = None,
                 windows_of: WindowCount | None = None) -> list[list[int]]:
    """Positions (into ``items``) of the pairs not in ``skip`` (item indices), grouped by reference, cut into batches:
    ``batch_size`` pairs each, or (``batch_windows`` given) as many pairs as fit in that many windows of their distorted
    images (``windows_of(item)``; at least one pair per batch)."""
    todo = sorted((i for i, it in enumerate(items) if it.index not in skip), key=lambda i: (items[i].ref_id, items[i].index))
    if batch_windows is None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
    if batch_windows < 1 or windows_of is None:
        raise ValueError(f"batch_windows must be >= 1 with a window count per pair, got {batch_windows}")
    batches: list[list[int]] = []
    used = 0
    for i in todo:
        k = windows_of(items[i])
        if not batches or used + k > batch_windows:
            batches.append([])
            used = 0
        batches[-1].append(i)
        used += k
    return batches


class ShardBatchSampler(Sampler[list[int]]):
    """Contiguous whole batches for one process: the processes together cover every batch exactly once."""

    def __init__(self, batches: list[list[int]], rank: int, world_size: int) -> None:
        n = len(batches)
        self.batches = batches[rank * n // world_size : (rank + 1) * n // world_size]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def spread_limit(items: list[PairItem], n: int) -> list[PairItem]:
    """``n`` of ``items`` spread over the references (``data.limit``): each reference gets ``n // R`` or one more
    (references in the order they first appear), drawn among its own pairs with a fixed seed (a regular stride would
    alias with the datasets' periodic type x level layouts and pick one level only), then the dataset's order is kept.
    Nested: the pairs of ``data.limit=n`` are among those of any larger limit, so raising it reuses what was scored.
    The first ``n`` pairs would often be one reference only, and correlations and their reference-clustered
    intervals need several."""
    by_ref: dict[str, list[int]] = defaultdict(list)
    for position, it in enumerate(items):
        by_ref[it.ref_id].append(position)
    quota = dict.fromkeys(by_ref, 0)
    left = min(n, len(items))
    while left:  # round-robin: a reference with no pairs left gives its turn to the next
        for ref, positions in by_ref.items():
            if left and quota[ref] < len(positions):
                quota[ref] += 1
                left -= 1
    rng = np.random.default_rng(0)  # one fixed order per reference, whatever n: a larger limit keeps a smaller one's
    chosen = [positions[int(i)] for ref, positions in by_ref.items()
              for i in rng.permutation(len(positions))[:quota[ref]]]
    return [items[p] for p in sorted(chosen)]


def collate_pairs(samples: list[dict]) -> list[dict]:
    """A batch as its reference groups: ``{"ref_id", "ref" [1,3,H,W], "dis" [n,3,h,w], "index" [n ints]}`` per
    (reference, image sizes), in first-appearance order, so one reference's features serve all its distorted images
    (images in one batch may differ in size: LIVE). A pair whose image could not be read comes as its own group
    ``{"ref_id", "index": [i], "error": message}`` without images (see ``failed_groups``)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    failed = [{"ref_id": s["ref_id"], "index": [int(s["index"])], "error": s["error"]} for s in samples if s["error"]]
    for s in samples:
        if s["error"]:
            continue
        groups[(s["ref_id"], tuple(s["ref"].shape), tuple(s["dis"].shape))].append(s)
    return failed + [{"ref_id": ref_id, "ref": group[0]["ref"][None], "dis": _stack([s["dis"] for s in group]),
                      "index": [int(s["index"]) for s in group]} for (ref_id, _, _), group in groups.items()]


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """One batch of images; uint8 ones become float32 in [0, 1] when the group mixes them with 16-bit images."""
    if len({im.dtype for im in images}) > 1:
        images = [to_float(im) for im in images]
    return torch.stack(images)


def failed_groups(batch: list[dict], on_bad_image: str = "error", hint: str = "") -> tuple[list[dict], list[dict]]:
    """(groups whose images loaded, groups of pairs whose images failed). With ``on_bad_image="error"`` the first
    failure is raised here, in the main process, with its own message (the file named) and ``hint``."""
    on_bad_image = OnBadImage.of(on_bad_image, "on_bad_image")
    failed = [g for g in batch if "error" in g]
    if failed and on_bad_image is OnBadImage.error:
        raise InputError(failed[0]["error"] + hint)
    return [g for g in batch if "error" not in g], failed


def batch_pairs(batch: list[dict]) -> int:
    """Number of pairs in a collated batch."""
    return sum(len(group["index"]) for group in batch)


class FRDataModule(L.LightningDataModule):
    """A labelled FR-IQA dataset (``zsiqa.data.DATASETS``) for ``Trainer.predict``.

    name / root / reader options: as ``read_dataset``. limit: the first N pairs only. pair_transform: a robustness
    transform ``(ref, dis) -> (ref, dis)`` on PIL images. skip: item indices already scored (resume).
    exif: EXIF orientation of the image files, "apply" or "ignore" (resolve the config's "auto" against the preset
    with ``zsiqa.images.resolve_exif`` first). on_bad_image: "error" (a corrupt or missing image stops the run, file
    named) or "skip" (the evaluation engine records the pair as failed, with the reason).
    batch_windows / windows_of: batches by window count instead of ``batch_size`` (see ``plan_batches``).
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
        batch_windows: int | None = None,
        windows_of: WindowCount | None = None,
        exif: str = "apply",
        on_bad_image: str = "error",
        **reader_options,
    ) -> None:
        super().__init__()
        DATASETS.get(name)  # an unknown name fails here, naming the choices
        if limit is not None and int(limit) < 1:
            raise ConfigError(f"data.limit must be a positive number of pairs (or null for all), got {limit}")
        self.name, self.root, self.limit = name, root, limit
        self.pair_transform = pair_transform
        self.batch_size, self.num_workers = batch_size, num_workers
        self.batch_windows, self.windows_of = batch_windows, windows_of
        self.skip = set(skip)
        if exif not in ("apply", "ignore"):
            raise ConfigError(f"exif must be 'apply' or 'ignore' here, got {exif!r} (resolve 'auto' against the preset "
                              "with zsiqa.images.resolve_exif)")
        self.exif = exif
        self.on_bad_image = OnBadImage.of(on_bad_image, "data.on_bad_image")
        self.reader_options = reader_options
        self.items: list[PairItem] | None = None
        self.by_index: dict[int, PairItem] = {}
        self.batches: list[list[int]] = []

    @property
    def spec(self) -> DatasetSpec:
        return DATASETS.get(self.name)

    def setup(self, stage: str | None = None) -> None:
        if self.items is not None:
            return
        items = read_dataset(self.name, self.root, **self.reader_options)
        self.items = items if self.limit is None else spread_limit(items, int(self.limit))
        reference_paths(self.items)  # one ref_id must mean one file: reference features are cached by ref_id
        self.by_index = {it.index: it for it in self.items}
        self.batches = plan_batches(self.items, self.skip, self.batch_size, self.batch_windows, self.windows_of)

    def skip_pairs(self, done: set[int]) -> None:
        """Leave out the pairs ``done`` (item indices) from the batches: a resumed computation."""
        self.setup("predict")
        self.skip = set(done)
        self.batches = plan_batches(self.items, self.skip, self.batch_size, self.batch_windows, self.windows_of)

    def shard(self, rank: int, world_size: int) -> ShardBatchSampler:
        return ShardBatchSampler(self.batches, rank, world_size)

    def predict_dataloader(self) -> DataLoader:
        # Pinned host memory lets Lightning's batch transfer (non_blocking on CUDA) overlap with compute.
        return DataLoader(
            PairDataset(self.items, pair_transform=self.pair_transform, exif=self.exif),
            batch_sampler=self.shard(self.trainer.global_rank, self.trainer.world_size),
            num_workers=self.num_workers, collate_fn=collate_pairs,
            pin_memory=self.trainer.strategy.root_device.type == "cuda",
        )
