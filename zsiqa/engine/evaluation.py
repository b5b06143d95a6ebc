"""Zero-shot evaluation on Lightning.

Work is ordered by reference image so that each reference's features are computed once and reused for all its
distorted images; all windows of a batch of distorted images run through the backbone together. With N processes
the ordered work is split into contiguous runs of whole batches, so each process computes exactly the batches a
single process would (identical scores) and no sample is repeated or missing; each process appends its rows to its
own CSV part, and process 0 merges them by index at the end.
"""
from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from ..baselines import Baseline
from ..data import PairDataset, PairItem
from ..metric import Features, FRMetric
from ..reporting.results import ScoreWriter


def plan_batches(items: list[PairItem], done: set[int], batch_size: int) -> list[list[int]]:
    """Positions (into ``items``) of the pairs still to score, grouped by reference, cut into batches."""
    todo = sorted((i for i, it in enumerate(items) if it.index not in done), key=lambda i: (items[i].ref_id, items[i].index))
    return [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]


class ShardBatchSampler(Sampler[list[int]]):
    """Contiguous whole batches for one process: ranks together cover every batch exactly once."""

    def __init__(self, batches: list[list[int]], rank: int, world_size: int) -> None:
        per = math.ceil(len(batches) / world_size) if batches else 0
        self.batches = batches[rank * per : (rank + 1) * per]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def collate_pairs(samples: list[dict]) -> list[dict]:
    """Keep samples as a list: images in one batch may differ in size (LIVE)."""
    return samples


class EvaluationModule(L.LightningModule):
    """Scores every pair with several distance heads on one backbone (shared features) plus full-image baselines."""

    def __init__(
        self,
        metrics: dict[str, FRMetric],
        baselines: list[Baseline],
        dataset: PairDataset,
        batches: list[list[int]],
        run_dir: Path,
        transform_label: str = "none",
        num_workers: int = 2,
        ref_cache: int = 4,
        align: str = "error",
    ) -> None:
        super().__init__()
        if not metrics and not baselines:
            raise ValueError("nothing to evaluate: give at least one distance or baseline")
        self.metrics = torch.nn.ModuleDict(metrics)
        self.baselines = baselines
        self.dataset = dataset
        self.items = {it.index: it for it in dataset.items}
        self.transform_label = transform_label
        self.batches = batches
        self.run_dir = Path(run_dir)
        self.num_workers = num_workers
        self.ref_cache_size = ref_cache
        self.align = align
        self._cache: OrderedDict = OrderedDict()
        self.ref_feature_computations = 0
        self.pairs_done = 0
        self.writer: ScoreWriter | None = None

    @property
    def score_columns(self) -> list[str]:
        return list(self.metrics) + [b.name for b in self.baselines]

    def shard(self) -> ShardBatchSampler:
        return ShardBatchSampler(self.batches, self.global_rank, self.trainer.world_size)

    def row(self, index: int) -> dict:
        it = self.items[index]
        return {"index": it.index, "ref": str(it.ref), "dis": str(it.dis), "label": repr(float(it.label)),
                "dist_type": it.dist_type, "level": it.level, "ref_id": it.ref_id, "transform": self.transform_label}

    def test_dataloader(self) -> DataLoader:
        sampler = self.shard()
        return DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=collate_pairs,
            persistent_workers=False,
        )

    def on_test_start(self) -> None:
        self.writer = ScoreWriter(self.run_dir, self.global_rank, self.score_columns)

    def on_test_end(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _feature_groups(self) -> dict[tuple[str, bool], list[str]]:
        """Metrics that can share features: same feature kind (taps/embed) and same size alignment."""
        groups: dict[tuple[str, bool], list[str]] = defaultdict(list)
        for name, m in self.metrics.items():
            kind = "embed" if m.distance.kind == "embed" else "taps"
            groups[(kind, m.distance.kind != "image")].append(name)
        return groups

    def _ref_features(self, key: tuple, metric: FRMetric, ref: torch.Tensor) -> Features:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        feats = metric.features(ref)
        self.ref_feature_computations += 1
        self._cache[key] = feats
        if len(self._cache) > self.ref_cache_size:
            self._cache.popitem(last=False)
        return feats

    def _aligned(self, ref: torch.Tensor, dis: torch.Tensor, what: str) -> torch.Tensor:
        if ref.shape[-2:] == dis.shape[-2:]:
            return dis
        if self.align != "resize":
            raise ValueError(
                f"reference {tuple(ref.shape[-2:])} and distorted {tuple(dis.shape[-2:])} differ in size and {what} "
                "compares aligned images; set align=resize (distorted resized to the reference) or use a size-free "
                "head such as deepssim"
            )
        return F.interpolate(dis, size=ref.shape[-2:], mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)

    def score_group(self, ref_id: str, ref: torch.Tensor, dis: torch.Tensor) -> dict[str, torch.Tensor]:
        """All scores for distorted images ``dis`` [n,3,H,W] of one reference ``ref`` [1,3,H,W]."""
        scores: dict[str, torch.Tensor] = {}
        for (kind, aligned), names in self._feature_groups().items():
            first = self.metrics[names[0]]
            d = self._aligned(ref, dis, f"distance {names[0]!r}") if aligned else dis
            f_ref = self._ref_features((kind, ref_id, tuple(ref.shape)), first, ref)
            f_dis = first.features(d)
            for name in names:
                scores[name] = self.metrics[name].score_features(f_ref, f_dis)
        for b in self.baselines:
            d = self._aligned(ref, dis, f"baseline {b.name!r}")
            scores[b.name] = b.fn(ref.expand(len(d), -1, -1, -1), d).float()
        return scores

    def test_step(self, batch: list[dict], batch_idx: int) -> None:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for s in batch:
            groups[(s["ref_id"], tuple(s["ref"].shape), tuple(s["dis"].shape))].append(s)
        rows = []
        for (ref_id, _, _), samples in groups.items():
            ref = samples[0]["ref"][None].to(self.device)
            dis = torch.stack([s["dis"] for s in samples]).to(self.device)
            scores = self.score_group(ref_id, ref, dis)
            for j, s in enumerate(samples):
                row = self.row(int(s["index"]))
                row.update({name: repr(float(v[j])) for name, v in scores.items()})
                rows.append(row)
        self.writer.write(rows)
        self.pairs_done += len(batch)


class PairProgress(L.Callback):
    """A progress bar in pairs (not batches), with pairs/s, on process 0."""

    def __init__(self) -> None:
        self.bar = None

    def on_test_start(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            from tqdm.auto import tqdm

            total = sum(len(b) for b in pl_module.shard().batches)
            desc = "scoring" if trainer.world_size == 1 else f"scoring (process 0 of {trainer.world_size})"
            self.bar = tqdm(total=total, unit="pair", desc=desc, dynamic_ncols=True)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.bar is not None:
            self.bar.update(len(batch))

    def on_test_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
