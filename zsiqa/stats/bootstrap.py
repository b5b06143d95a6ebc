"""Confidence intervals and paired tests for correlations by a bootstrap over reference images.

Pairs that share a reference image are not independent: they share its content and, in datasets scored per reference
(PIPAL's Elo per reference, TID2013's per-reference sessions), its label scale. Resampling pairs i.i.d. treats 116
PIPAL pairs of one reference as 116 independent observations and gives intervals about half as wide as they should
be. ``ReferenceBootstrap`` resamples *references* with replacement (all pairs of a drawn reference come along): a
resample is a vector of per-reference counts (multinomial, seeded), and each statistic is computed on the resampled
data with repeated items as if the repeats were separate rows (weighted ranks with mid-ranks for ties, weighted
moments), for all resamples at once. Every method draws the same resamples from the seed, so statistics of two
metrics on the same pairs are paired.

Intervals are percentile intervals (the 2.5 % and 97.5 % quantiles of the resampled statistic for level 0.95).
Paired p-values are two-sided, from the bootstrap distribution of the difference centred on the observed
difference: ``p = (1 + #{|d_b - d| >= |d|}) / (B + 1)``; identical rankings give d = 0 and p = 1.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..errors import InputError
from .correlations import ArrayLike, _as_vector, correlations, fit_logistic, logistic4

CHUNK = 128  # resamples per batch: bounds memory at CHUNK x n float64 arrays; fixed, so results do not depend on it
MAX_KRCC_CLUSTERS = 2048  # KRCC resamples keep a clusters x clusters concordance matrix (32 MiB at this bound)


def oriented(pred: ArrayLike, pred_lower_better: bool, label_lower_better: bool) -> np.ndarray:
    """``pred`` as float64, negated when exactly one of prediction and label is lower-is-better (never ``abs()``)."""
    x = _as_vector(pred, "pred")
    return -x if pred_lower_better != label_lower_better else x


class ReferenceBootstrap:
    """Seeded resamples of the clusters (reference images) of ``n`` pairs; statistics of all resamples, vectorised.

    ``cluster_ids``: one reference id per pair. ``cluster=False`` treats every pair as its own cluster (the i.i.d.
    bootstrap, for comparison). The methods take sign-adjusted predictions (``oriented``) and labels and return one
    value per resample, ``[n_resamples]``; NaN marks a resample where the statistic is undefined (a constant side).
    """

    def __init__(self, cluster_ids: Sequence, n_resamples: int = 1000, seed: int = 0, cluster: bool = True) -> None:
        if n_resamples < 1:
            raise InputError(f"n_resamples must be >= 1, got {n_resamples}")
        ids = np.asarray([str(c) for c in cluster_ids])
        if ids.ndim != 1 or ids.size < 3:
            raise InputError(f"a bootstrap needs at least 3 pairs, got {ids.size}")
        if cluster:
            _, self.cluster_index = np.unique(ids, return_inverse=True)
        else:
            self.cluster_index = np.arange(ids.size)
        self.n_clusters = int(self.cluster_index.max()) + 1
        if self.n_clusters < 2:
            raise InputError("all pairs share one reference: resampling references needs at least 2 of them")
        self.n = ids.size
        self.n_resamples = n_resamples
        self.seed = seed

    def counts(self) -> Iterator[np.ndarray]:
        """Per-cluster draw counts, ``[b, n_clusters]`` chunks of at most ``CHUNK`` resamples, the same on every call."""
        rng = np.random.default_rng(self.seed)
        p = np.full(self.n_clusters, 1.0 / self.n_clusters)
        for start in range(0, self.n_resamples, CHUNK):
            b = min(CHUNK, self.n_resamples - start)
            yield rng.multinomial(self.n_clusters, p, size=b).astype(np.float64)

    def weights(self) -> Iterator[np.ndarray]:
        """Per-pair repeat counts, ``[b, n]`` chunks: a pair appears as often as its reference was drawn."""
        for c in self.counts():
            yield c[:, self.cluster_index]

    def _check(self, x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        x, y = _as_vector(x, "pred"), _as_vector(y, "label")
        if x.size != self.n or y.size != self.n:
            raise InputError(f"pred ({x.size}) and label ({y.size}) must have one value per pair ({self.n})")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InputError("pred and label must be finite: drop failed pairs before bootstrapping")
        return x, y

    def srcc(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Spearman's rho of each resample (mid-ranks of the resample with its repeats, then Pearson)."""
        return self.srcc_many([x], y)[0]

    def srcc_many(self, xs: Sequence[ArrayLike], y: ArrayLike) -> np.ndarray:
        """``[k, B]``: Spearman's rho of each of ``k`` predictions on the same resamples (label ranks computed once)."""
        checked = [self._check(x, y) for x in xs]
        plans, rank_y = [_RankPlan(x) for x, _ in checked], _RankPlan(checked[0][1])
        out = []
        for w in self.weights():
            ry = rank_y.ranks(w)
            out.append(np.stack([_weighted_pearson(plan.ranks(w), ry, w) for plan in plans]))
        return np.concatenate(out, axis=1)

    def plcc(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Pearson's r of each resample."""
        x, y = self._check(x, y)
        return np.concatenate([_weighted_pearson(x, y, w) for w in self.weights()])

    def plcc_fit(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Pearson's r between the logistic-mapped prediction and the label, with the logistic fitted once on all pairs.

        Refitting 4 parameters per resample costs a nonlinear least-squares fit each (seconds per 100 resamples on
        PIPAL); the fixed full-data mapping makes this as fast as ``plcc`` and ignores only the fit's own sampling
        error, small next to the between-reference variation. Signed like ``correlations``' ``plcc_fit``.
        """
        x, y = self._check(x, y)
        params = fit_logistic(x, y)
        direction = 1.0 if params[0] >= params[1] else -1.0
        return direction * self.plcc(logistic4(x, *params), y)

    def krcc(self, x: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Kendall's tau-b of each resample (repeats of one pair are tied with each other in both variables).

        ``C - D`` of a resample is ``c' M c / 2`` with ``c`` its cluster counts and ``M[g, h]`` the summed
        ``sign(dx) sign(dy)`` between clusters g and h, computed once (``n^2`` sign products, batched per cluster).
        Needs at most ``MAX_KRCC_CLUSTERS`` clusters.
        """
        x, y = self._check(x, y)
        if self.n_clusters > MAX_KRCC_CLUSTERS:
            raise InputError(
                f"KRCC resamples need a {self.n_clusters}x{self.n_clusters} concordance matrix; "
                f"at most {MAX_KRCC_CLUSTERS} clusters are supported"
            )
        m = _concordance_matrix(x, y, self.cluster_index, self.n_clusters)
        tie_x, tie_y = _RankPlan(x), _RankPlan(y)
        out = []
        for c in self.counts():
            w = c[:, self.cluster_index]
            total = w.sum(1)
            n0 = total * (total - 1) / 2
            n1, n2 = tie_x.tied_pairs(w), tie_y.tied_pairs(w)
            s = np.einsum("bg,gh,bh->b", c, m, c) / 2
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(s / np.sqrt((n0 - n1) * (n0 - n2)))
        return np.concatenate(out)


class _RankPlan:
    """Sort order and tie groups of one variable, for mid-ranks and tie counts under any repeat weights."""

    def __init__(self, v: np.ndarray) -> None:
        self.order = np.argsort(v, kind="stable")
        sorted_v = v[self.order]
        new_group = np.ones(v.size, dtype=bool)
        new_group[1:] = sorted_v[1:] != sorted_v[:-1]
        self.starts = np.flatnonzero(new_group)
        self.group = np.cumsum(new_group) - 1  # tie group of each sorted item

    def _group_totals(self, w: np.ndarray) -> np.ndarray:
        return np.add.reduceat(w[:, self.order], self.starts, axis=1)

    def ranks(self, w: np.ndarray) -> np.ndarray:
        """``[b, n]`` mid-rank of each item in each weighted resample (1-based, ties and repeats share their mean rank)."""
        totals = self._group_totals(w)
        mid = np.cumsum(totals, axis=1) - totals + (totals + 1) / 2
        out = np.empty_like(w)
        out[:, self.order] = mid[:, self.group]
        return out

    def tied_pairs(self, w: np.ndarray) -> np.ndarray:
        """``[b]`` number of tied pairs (same value, repeats included) in each weighted resample."""
        totals = self._group_totals(w)
        return (totals * (totals - 1) / 2).sum(1)


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson's r of ``x`` and ``y`` (``[n]`` or ``[b, n]``) with repeat counts ``w`` ``[b, n]``; NaN when constant."""
    total = w.sum(1, keepdims=True)
    dx = x - (w * x).sum(1, keepdims=True) / total
    dy = y - (w * y).sum(1, keepdims=True) / total
    sxy, sxx, syy = (w * dx * dy).sum(1), (w * dx * dx).sum(1), (w * dy * dy).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    return np.where((sxx > 0) & (syy > 0), r, np.nan)


def _concordance_matrix(x: np.ndarray, y: np.ndarray, cluster_index: np.ndarray, n_clusters: int) -> np.ndarray:
    """``M[g, h] = sum over i in g, j in h of sign(x_i - x_j) * sign(y_i - y_j)``, float64 ``[G, G]``."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    col_cluster = torch.from_numpy(cluster_index)
    m = torch.zeros(n_clusters, n_clusters, dtype=torch.float64)
    order = np.argsort(cluster_index, kind="stable")
    bounds = np.flatnonzero(np.diff(cluster_index[order])) + 1
    for rows in np.split(order, bounds):
        r = torch.from_numpy(rows)
        # Signs in float64 differences (no false ties), products summed in float32: exact below 2**24 per entry.
        s = (torch.sign(xt[r, None] - xt[None]) * torch.sign(yt[r, None] - yt[None])).float().sum(0)
        m[cluster_index[rows[0]]].index_add_(0, col_cluster, s.double())
    return m.numpy()


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> list[float]:
    """``[lo, hi]``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the finite resampled values."""
    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return [float("nan"), float("nan")]
    lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def interval_with_estimate(samples: np.ndarray, estimate: float, level: float = 0.95) -> list[float]:
    """The percentile interval of ``samples``, extended to ``estimate`` when it lies outside: an interval always holds
    its point estimate. Resampling references with replacement repeats pairs and leaves fewer distinct references,
    which biases a correlation (most visibly per distortion type with few references), so the whole bootstrap
    distribution can sit on one side of the estimate; BCa and the basic bootstrap do not prevent that either (both
    hold the estimate only when it lies between the same two quantiles). Extending the interval is conservative."""
    lo, hi = percentile_interval(samples, level)
    if math.isnan(lo) or not math.isfinite(estimate):
        return [lo, hi]
    return [min(lo, float(estimate)), max(hi, float(estimate))]


def paired_p_value(delta: float, delta_samples: np.ndarray) -> float:
    """Two-sided p of ``delta != 0`` from its bootstrap distribution centred on ``delta``; 1.0 when ``delta == 0``."""
    finite = delta_samples[np.isfinite(delta_samples)]
    if delta == 0 or finite.size == 0:
        return 1.0
    extreme = np.count_nonzero(np.abs(finite - delta) >= abs(delta))
    return float((1 + extreme) / (1 + finite.size))


def correlation_intervals(
    pred: ArrayLike,
    label: ArrayLike,
    ref_ids: Sequence,
    pred_lower_better: bool,
    label_lower_better: bool,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Reference-clustered percentile intervals ``srcc_ci, krcc_ci, plcc_ci, plcc_fit_ci`` (each ``[lo, hi]``, extended
    to the point estimate where it lies outside: ``interval_with_estimate``).

    Signs follow ``correlations``. ``plcc_fit_ci`` is ``[nan, nan]`` when the logistic fit on all pairs fails (as
    ``correlations`` reports ``plcc_fit`` NaN then).
    """
    boot = ReferenceBootstrap(ref_ids, n_resamples, seed)
    x, y = oriented(pred, pred_lower_better, label_lower_better), _as_vector(label, "label")
    point = correlations(x, y, False, False)
    out = {f"{name}_ci": interval_with_estimate(getattr(boot, name)(x, y), point[name], level)
           for name in ("srcc", "krcc", "plcc")}
    try:
        out["plcc_fit_ci"] = interval_with_estimate(boot.plcc_fit(x, y), point["plcc_fit"], level)
    except (RuntimeError, ValueError):  # no logistic fit on all pairs: no fitted PLCC, hence no interval
        out["plcc_fit_ci"] = [float("nan"), float("nan")]
    return out


TYPE_KEYS = ("srcc", "krcc", "plcc")  # per distortion type (no logistic fit on a few dozen pairs)


def type_correlations(
    pred: ArrayLike,
    label: ArrayLike,
    ref_ids: Sequence,
    types: Sequence[str],
    pred_lower_better: bool,
    label_lower_better: bool,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict]:
    """Per distortion type: ``srcc, krcc, plcc, n`` and their reference-clustered intervals ``<key>_ci`` (extended to
    hold the estimate). A type whose correlations are undefined (fewer than 3 pairs, a constant side) has None values
    and ``error``; one whose intervals are (one reference, or ``n_resamples=0``) has ``<key>_ci`` None and
    ``ci_error``."""
    x, y = oriented(pred, pred_lower_better, label_lower_better), _as_vector(label, "label")
    names, ids = np.asarray([str(t) for t in types]), np.asarray([str(r) for r in ref_ids])
    out: dict[str, dict] = {}
    for t in sorted(set(names.tolist())):
        keep = names == t
        xt, yt = x[keep], y[keep]
        entry: dict = {"n": int(keep.sum())}
        try:
            point = correlations(xt, yt, False, False)
        except ValueError as e:  # fewer than 3 pairs, or a constant prediction or label
            out[t] = entry | dict.fromkeys(TYPE_KEYS) | {f"{k}_ci": None for k in TYPE_KEYS} | {"error": str(e)}
            continue
        entry |= {k: point[k] for k in TYPE_KEYS}
        try:
            if n_resamples < 1:
                raise ValueError("no resamples (n_resamples=0)")
            boot = ReferenceBootstrap(ids[keep], n_resamples, seed)
            entry |= {f"{k}_ci": interval_with_estimate(getattr(boot, k)(xt, yt), point[k], level) for k in TYPE_KEYS}
        except ValueError as e:  # InputError included: one reference of this type
            entry |= {f"{k}_ci": None for k in TYPE_KEYS} | {"ci_error": str(e)}
        out[t] = entry
    return out
