"""A zsiqa metric as a torchmetrics ``Metric``, for anyone's validation loop (``update`` per batch, ``compute`` per epoch).

Per-pair scores (with labels and dataset indices) accumulate in ``cat`` states; torchmetrics gathers them across
processes, and repeated indices (DistributedSampler pads the last round with repeats) are dropped before the mean and
the correlations, as ``IndexedScores`` does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torchmetrics import Metric

from ..errors import InputError
from .correlations import correlations
from .indexed_scores import cat_state, unique_rows

if TYPE_CHECKING:
    from ..metric import FRMetric


class FRScore(Metric):
    """Mean score of an ``FRMetric`` over all pairs seen, and optionally SRCC/KRCC/PLCC against labels.

    ``update(ref, dis, label=None, index=None)`` scores a batch (no gradients). ``index``: the pairs' dataset indices,
    on every update or on none; with them, repeated indices are dropped at ``compute()`` (DistributedSampler's padding).
    Required on more than one process; on one, rows without indices are all kept. ``label_lower_better`` (needed when
    labels are passed) sets the sign of the correlations together with the metric's own ``lower_better``; never
    ``abs()``. ``compute()`` returns ``{"score": mean}`` plus ``srcc``, ``krcc``, ``plcc`` when labels were passed
    (float64 scalars; ``self.log_dict(...)`` takes it as is).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None  # depends on the wrapped metric: see ``lower_better``

    def __init__(self, metric: FRMetric, label_lower_better: bool | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("index", "score", "label"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.set_dtype(torch.float64)  # an empty rank is filled with the metric dtype: it must match the states
        self.metric = metric
        self.label_lower_better = label_lower_better

    @property
    def lower_better(self) -> bool:
        return self.metric.lower_better

    def update(self, ref, dis, label: torch.Tensor | None = None, index: torch.Tensor | None = None) -> None:
        """Score ``ref`` vs ``dis`` (anything ``FRMetric`` takes); ``label`` and ``index`` ``[B]`` per pair."""
        if label is not None and self.label_lower_better is None:
            raise InputError("labels passed to update() need FRScore(label_lower_better=True/False) for their sign")
        if index is None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise InputError("on more than one process pass index= (dataset indices of the batch): "
                             "DistributedSampler repeats samples, and only indices tell the repeats apart")
        with torch.no_grad():
            score = self.metric(ref, dis).detach().to(torch.float64)
        b, device = score.numel(), score.device
        for name, t in (("label", label), ("index", index)):
            if t is not None and torch.as_tensor(t).shape != (b,):
                raise InputError(f"{name} must have shape ({b},), one per pair, got {tuple(torch.as_tensor(t).shape)}")
        nan = torch.full((b,), float("nan"), dtype=torch.float64, device=device)
        self.score.append(score)
        self.label.append(nan if label is None else torch.as_tensor(label, device=device).to(torch.float64))
        self.index.append(nan if index is None else torch.as_tensor(index, device=device).to(torch.float64))

    def compute(self) -> dict[str, torch.Tensor]:
        index, score, label = (cat_state(s) for s in (self.index, self.score, self.label))
        if score.numel() == 0:
            raise InputError("FRScore.compute() before any update(): no pairs scored")
        missing = index.isnan()
        if bool(missing.any()) and not bool(missing.all()):
            raise InputError("index= was passed on some updates only: pass it on every update or on none")
        if not bool(missing.any()):
            keep = unique_rows(index.to(torch.int64), label)
            score, label = score[keep], label[keep]
        out = {"score": score.mean()}
        if self.label_lower_better is not None:
            if bool(label.isnan().any()):
                raise InputError("correlations need a label for every pair: pass label= on every update()")
            corr = correlations(score, label, self.lower_better, self.label_lower_better)
            out |= {k: torch.tensor(corr[k], dtype=torch.float64) for k in ("srcc", "krcc", "plcc")}
        return out
