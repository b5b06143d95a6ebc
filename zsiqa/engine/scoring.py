"""Scoring as a LightningModule: a frozen backbone's distance heads (and full-image baselines) on batches of pairs.

``Trainer.predict`` runs it: each batch (grouped by reference, ``zsiqa.data.datamodule.collate_pairs``) becomes the
scores of every pair (``output="scores"``: every distance head, trained weights and baseline) or their
window-averaged terms (``output="terms"``: what learned weights weigh). Each reference's features are computed once
and reused for all its distorted images; all windows of a group of distorted images go through the backbone
together; the batch's results cross to the host in one copy. Prediction writers (``zsiqa.engine.writers``) store
them.
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict

import lightning as L
import torch

from ..baselines import Baseline
from ..choices import Align, OnBadImage
from ..data.datamodule import failed_groups
from ..errors import InputError, first_and_count
from ..images import to_float
from ..metric import Features, FRMetric, align_pair, score_pairs

OUTPUTS = ("scores", "terms")


class ScoringModule(L.LightningModule):
    """metrics: distance heads sharing one backbone (features computed once per ``FRMetric.feature_key``).
    baselines: full-image classics scored on the same batches. output: ``"scores"`` or ``"terms"`` (exactly one
    metric, with per-layer terms; ``channels`` adds per-channel ones). ref_cache: reference images whose features
    are kept. align: ``align_pair``'s policy. on_bad_image: ``error`` (an unreadable or incomparable pair stops the
    run, file named) or ``skip`` (scores only: the pair is returned as failed with its reason).
    """

    def __init__(self, metrics: dict[str, FRMetric], baselines: list[Baseline] = (), output: str = "scores",
                 channels: bool = False, ref_cache: int = 4, align: str = "error",
                 on_bad_image: str = "error") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if not metrics and not baselines:
            raise ValueError("nothing to evaluate: give at least one distance or baseline")
        if output == "terms" and (len(metrics) != 1 or baselines):
            raise ValueError("terms are computed for exactly one metric and no baselines")
        self.metrics = torch.nn.ModuleDict(metrics)
        self.baselines = list(baselines)
        # baselines with weights (pyiqa's) move with the module to the run's device
        self.baseline_modules = torch.nn.ModuleDict({b.name: b.module for b in baselines if b.module is not None})
        self.output, self.channels = output, channels
        self.ref_cache_size = ref_cache
        self.align = Align.of(align, "align").value
        self.on_bad_image = OnBadImage.of(on_bad_image, "on_bad_image")
        self._cache: OrderedDict = OrderedDict()
        self.ref_feature_computations = 0
        self.feature_groups: dict[tuple, list[str]] = {}
        # With N processes a small (or nearly finished) run can leave a process without batches: that is fine here.
        self.allow_zero_length_dataloader_with_multiple_devices = True
        dtypes: dict[int, set] = {}
        for m in metrics.values():
            dtypes.setdefault(id(m.backbone), set()).add(m.model_dtype())  # the backbone is cast in place
        if any(len(v) > 1 for v in dtypes.values()):
            raise ValueError(
                "metrics sharing one backbone ask for different precisions (e.g. weights trained with another "
                "run.precision or preset); set run.precision to the trained one's, or evaluate it in its own run"
            )

    @property
    def score_columns(self) -> list[str]:
        return list(self.metrics) + [b.name for b in self.baselines]

    def on_predict_start(self) -> None:
        groups: dict[tuple, list[str]] = defaultdict(list)  # on the final device: the precision depends on it
        for name, m in self.metrics.items():
            groups[m.feature_key()].append(name)
        self.feature_groups = dict(groups)

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
        """All scores for distorted images ``dis`` [n,3,H,W] of one reference ``ref`` [1,3,H,W] (float in [0, 1] or
        uint8 as the loader gives them: window heads make the distorted images float32 chunk by chunk)."""
        scores: dict[str, torch.Tensor] = {}
        ref = to_float(ref)
        for key, names in self.feature_groups.items():
            first = self.metrics[names[0]]
            windowed = key[1]
            d = align_pair(ref, dis, self.align, f"distance {names[0]!r}") if windowed else to_float(dis)
            f_ref = self._ref_features((key, ref_id, tuple(ref.shape)), first, ref)
            scores.update(score_pairs({name: self.metrics[name] for name in names}, f_ref, d))
        whole = to_float(dis) if self.baselines else dis  # made float32 once for every baseline
        for b in self.baselines:
            d = align_pair(ref, whole, self.align, f"baseline {b.name!r}")
            scores[b.name] = b.fn(ref.expand(len(d), -1, -1, -1), d).float()
        return scores

    def terms_group(self, ref_id: str, ref: torch.Tensor, dis: torch.Tensor) -> list[torch.Tensor]:
        """Window-averaged terms of ``dis`` [n,3,H,W] against ``ref`` [1,3,H,W]: ``[n, L]`` layer terms, then (with
        ``channels``) one ``[n, C_l]`` per layer."""
        ((key, (name,)),) = self.feature_groups.items()
        metric = self.metrics[name]
        ref = to_float(ref)
        d = align_pair(ref, dis, self.align, f"distance {name!r}")
        f_ref = self._ref_features((key, ref_id, tuple(ref.shape)), metric, ref)
        layer, channel = metric.terms(f_ref, d, channels=self.channels)  # streamed over d's windows
        return [layer, *channel] if self.channels else [layer]

    def predict_step(self, batch: list[dict], batch_idx: int) -> dict:
        """``{"index": [n ints], "scores": {column: [n floats]}, "failed": {index: reason}}`` or ``{"index", "terms":
        [CPU tensors [n, ...]]}``, in the batch's group order; one device-to-host copy per batch.

        A pair whose image could not be read, or whose distorted image the heads cannot compare with its reference,
        stops the run with the file named; with ``data.on_bad_image=skip`` (scores only) it is returned in ``failed``
        with the reason instead, and the writer records it."""
        if self.output == "terms":
            batch, _ = failed_groups(batch, OnBadImage.error)
            parts = [self.terms_group(g["ref_id"], g["ref"], g["dis"]) for g in batch]
            tables = [torch.cat(t) for t in zip(*parts)]
            flat = torch.cat(tables, 1).cpu()
            index = [i for group in batch for i in group["index"]]
            return {"index": index, "terms": list(flat.split([t.shape[1] for t in tables], 1))}
        return self._scores(batch)

    def _scores(self, batch: list[dict]) -> dict:
        skip = self.on_bad_image is OnBadImage.skip
        batch, unread = failed_groups(batch, self.on_bad_image,
                                      " (data.on_bad_image=skip records such pairs as failed and goes on)")
        failed = {i: g["error"] for g in unread for i in g["index"]}
        columns: dict[str, list[torch.Tensor]] = defaultdict(list)
        index: list[int] = []
        for g in batch:
            try:
                scores = self.score_group(g["ref_id"], g["ref"], g["dis"])
            except InputError as e:
                named = InputError(f"{self._distorted_files(g['index'])}: {e}")
                if not skip:
                    raise named from e
                failed.update({i: str(named) for i in g["index"]})
                continue
            index += g["index"]
            for name, v in scores.items():
                columns[name].append(v)
        names = self.score_columns
        # float32 -> float64 is exact, so the CSV holds the scores' own values
        values = torch.stack([torch.cat(columns[n]).double() for n in names]).cpu().tolist() if index else [[]] * len(names)
        return {"index": index, "scores": dict(zip(names, values)), "failed": failed}

    def _distorted_files(self, index: list[int]) -> str:
        """The distorted image files of pairs ``index`` (their indices when no data module is attached)."""
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if datamodule is None:
            return "pair " + first_and_count(index, "pair")
        return first_and_count(datamodule.by_index[i].dis for i in index)
