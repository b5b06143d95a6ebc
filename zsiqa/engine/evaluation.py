"""Zero-shot evaluation on Lightning.

The data module (``zsiqa.data.FRDataModule``) orders the work by reference and shards whole batches across processes;
this module computes each reference's features once and reuses them for all its distorted images, runs all windows of
a batch of distorted images through the backbone together, and appends every scored row to its process's CSV part
(process 0 merges the parts by index at the end).
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from pathlib import Path

import lightning as L
import torch

from ..baselines import Baseline
from ..data.datamodule import reference_groups
from ..metric import Features, FRMetric, align_pair, score_pairs
from ..reporting.results import ScoreWriter


class EvaluationModule(L.LightningModule):
    """Scores every pair with several distance heads on one backbone (shared features) plus full-image baselines."""

    def __init__(
        self,
        metrics: dict[str, FRMetric],
        baselines: list[Baseline],
        run_dir: Path,
        transform_label: str = "none",
        ref_cache: int = 4,
        align: str = "error",
    ) -> None:
        super().__init__()
        if not metrics and not baselines:
            raise ValueError("nothing to evaluate: give at least one distance or baseline")
        self.metrics = torch.nn.ModuleDict(metrics)
        self.baselines = baselines
        self.transform_label = transform_label
        self.run_dir = Path(run_dir)
        self.ref_cache_size = ref_cache
        self.align = align
        self._cache: OrderedDict = OrderedDict()
        self.ref_feature_computations = 0
        self.writer: ScoreWriter | None = None
        self.feature_groups: dict[tuple, list[str]] = {}
        # With N processes a small (or nearly finished) run can leave a process without batches: that is fine here.
        self.allow_zero_length_dataloader_with_multiple_devices = True
        dtypes = {}
        for m in metrics.values():
            dtypes.setdefault(id(m.backbone), set()).add(m.model_dtype())  # the backbone is cast in place
        if any(len(v) > 1 for v in dtypes.values()):
            raise ValueError(
                "metrics sharing one backbone ask for different precisions (e.g. a head trained with another "
                "run.precision or preset); set run.precision to the head's, or evaluate the head in its own run"
            )

    @property
    def score_columns(self) -> list[str]:
        return list(self.metrics) + [b.name for b in self.baselines]

    def row(self, index: int) -> dict:
        it = self.trainer.datamodule.by_index[index]
        return {"index": it.index, "ref": str(it.ref), "dis": str(it.dis), "label": repr(float(it.label)),
                "dist_type": it.dist_type, "level": it.level, "ref_id": it.ref_id, "transform": self.transform_label}

    def on_test_start(self) -> None:
        self.writer = ScoreWriter(self.run_dir, self.global_rank, self.score_columns)
        self.feature_groups = self._feature_groups()  # on the final device: the precision depends on it

    def on_test_end(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _feature_groups(self) -> dict[tuple, list[str]]:
        """Metrics that can share features: same feature kind (taps/embed), same size alignment, and the same
        feature settings (preprocessing, precision, windows; e.g. a head trained with another preset does not share)."""
        groups: dict[tuple, list[str]] = defaultdict(list)
        for name, m in self.metrics.items():
            kind = "embed" if m.distance.kind == "embed" else "taps"
            settings = tuple(sorted((k, str(v)) for k, v in m.config().items() if k not in ("distance", "head")))
            groups[(kind, m.distance.kind != "image", settings)].append(name)
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

    def score_group(self, ref_id: str, ref: torch.Tensor, dis: torch.Tensor) -> dict[str, torch.Tensor]:
        """All scores for distorted images ``dis`` [n,3,H,W] of one reference ``ref`` [1,3,H,W]."""
        scores: dict[str, torch.Tensor] = {}
        for group, names in self.feature_groups.items():
            first = self.metrics[names[0]]
            d = align_pair(ref, dis, self.align, f"distance {names[0]!r}") if group[1] else dis
            f_ref = self._ref_features((group, ref_id, tuple(ref.shape)), first, ref)
            scores.update(score_pairs({name: self.metrics[name] for name in names}, f_ref, d))
        for b in self.baselines:
            d = align_pair(ref, dis, self.align, f"baseline {b.name!r}")
            scores[b.name] = b.fn(ref.expand(len(d), -1, -1, -1), d).float()
        return scores

    def test_step(self, batch: list[dict], batch_idx: int) -> None:
        rows = []
        for ref_id, ref, dis, samples in reference_groups(batch):
            scores = self.score_group(ref_id, ref.to(self.device), dis.to(self.device))
            for j, s in enumerate(samples):
                row = self.row(int(s["index"]))
                row.update({name: repr(float(v[j])) for name, v in scores.items()})
                rows.append(row)
        self.writer.write(rows)


class PairProgress(L.Callback):
    """A progress bar in pairs (not batches), with pairs/s, on process 0."""

    def __init__(self) -> None:
        self.bar = None

    def on_test_start(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            from tqdm.auto import tqdm

            total = sum(len(b) for b in trainer.datamodule.shard(0, trainer.world_size).batches)
            desc = "scoring" if trainer.world_size == 1 else f"scoring (process 0 of {trainer.world_size})"
            self.bar = tqdm(total=total, unit="pair", desc=desc, dynamic_ncols=True)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.bar is not None:
            self.bar.update(len(batch))

    def on_test_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()
