"""A zsiqa metric as a torchmetrics ``Metric``, for anyone's validation loop (``update`` per batch, ``compute`` per epoch).

Per-pair scores (with labels and dataset indices) accumulate in ``cat`` states; torchmetrics gathers them across
processes, and repeated indices (DistributedSampler pads the last round with repeats) are dropped before the mean and
the correlations, as ``IndexedScores`` does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from ..errors import InputError
from .correlations import correlations
from .indexed_scores import IndexedScores

if TYPE_CHECKING:
    from ..metric import FRMetric


class FRScore(IndexedScores):
    """Mean score of an ``FRMetric`` over all pairs seen, and optionally SRCC/KRCC/PLCC against labels.

    ``update(ref, dis, label=None, index=None)`` scores a batch (no gradients). ``index``: the pairs' dataset indices;
    required on more than one process (without them DistributedSampler's repeats cannot be removed), else rows are
    numbered in arrival order. ``label_lower_better`` (given when labels are passed) sets the sign of the correlations
    together with the metric's own ``lower_better``; never ``abs()``.
    ``compute()`` returns ``{"score": mean}`` plus ``srcc``, ``krcc``, ``plcc`` when labels were passed (float64
    scalars; ``self.log_dict(...)`` takes it as is).
    """

    higher_is_better = None  # depends on the wrapped metric: see ``lower_better``

    def __init__(self, metric: FRMetric, label_lower_better: bool | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric = metric
        self.label_lower_better = label_lower_better
        self._seen = 0

    @property
    def lower_better(self) -> bool:
        return self.metric.lower_better

    def update(self, ref, dis, label: torch.Tensor | None = None, index: torch.Tensor | None = None) -> None:
        """Score ``ref`` vs ``dis`` (anything ``FRMetric`` takes); ``label`` and ``index`` ``[B]`` per pair."""
        if label is not None and self.label_lower_better is None:
            raise InputError("labels passed to update() need FRScore(label_lower_better=True/False) for their sign")
        with torch.no_grad():
            score = self.metric(ref, dis).detach().to(torch.float64)
        b, device = score.numel(), score.device
        if index is None:
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                raise InputError("on more than one process pass index= (dataset indices of the batch): "
                                 "DistributedSampler repeats samples, and only indices tell the repeats apart")
            index = torch.arange(self._seen, self._seen + b)
        self._seen += b
        label = torch.full((b,), float("nan")) if label is None else label
        super().update(torch.as_tensor(index, device=device), score, torch.as_tensor(label, device=device))

    def compute(self) -> dict[str, torch.Tensor]:
        rows = super().compute()
        if rows["score"].size == 0:
            raise InputError("FRScore.compute() before any update(): no pairs scored")
        out = {"score": torch.tensor(float(rows["score"].mean()), dtype=torch.float64)}
        if self.label_lower_better is not None:
            if torch.isnan(torch.from_numpy(rows["label"])).any():
                raise InputError("correlations need a label for every pair: pass label= on every update()")
            corr = correlations(rows["score"], rows["label"], self.lower_better, self.label_lower_better)
            out |= {k: torch.tensor(corr[k], dtype=torch.float64) for k in ("srcc", "krcc", "plcc")}
        return out

    def reset(self) -> None:
        super().reset()
        self._seen = 0
