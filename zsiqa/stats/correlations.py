"""Correlation between metric predictions and subjective labels (SRCC, KRCC, PLCC raw and after a logistic fit).

Sign convention: the prediction is negated when exactly one of prediction and label is lower-is-better, so a good metric
always gets positive correlations (the ZS-IQA evaluation's PIPAL and PSNR flips, derived from declared directions).
Correlations are never ``abs()``-ed: a metric pointing the wrong way shows up negative.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]

MAXFEV = 10_000  # function evaluations allowed to the logistic fit; it converges in well under 200 on IQA data


def _as_vector(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    v = np.asarray(x, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}")
    return v


def _check_finite(v: np.ndarray, name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise ValueError(
            f"{name} has {bad.size} non-finite value(s) (NaN/inf) at indices [{shown}]; "
            "fix or remove those items explicitly, they are not dropped silently"
        )


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``: rises from b2 to b1 when b1 > b2."""
    with np.errstate(over="ignore", divide="ignore"):
        z = (np.asarray(x, dtype=np.float64) - b3) / max(abs(b4), np.finfo(np.float64).tiny)
    return (b1 - b2) * expit(z) + b2


def _logistic4_jacobian(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """d logistic4 / d(b1, b2, b3, b4), [n, 4]; analytic because finite differences stall on a parameter near 0."""
    width = max(abs(b4), np.finfo(np.float64).tiny)
    with np.errstate(over="ignore", divide="ignore"):
        z = (x - b3) / width
    s = expit(z)
    slope = (b1 - b2) * s * (1 - s)
    return np.stack([s, 1 - s, -slope / width, -slope * z / width * np.sign(b4)], axis=1)


def fit_logistic(pred: ArrayLike, label: ArrayLike) -> np.ndarray:
    """Least-squares fit of ``logistic4`` mapping ``pred`` onto ``label``; returns ``[b1, b2, b3, b4]`` with ``b4 > 0``.

    Starts from the VQEG guess ``[max(y), min(y), mean(x), std(x)/4]``. The fit runs on standardised x and y (an affine
    change of variables, so the optimum is the same) for conditioning, then maps the parameters back.
    Raises ``RuntimeError`` when the optimiser does not converge within ``MAXFEV`` evaluations.
    """
    x, y = _as_vector(pred, "pred"), _as_vector(label, "label")
    if x.shape != y.shape:
        raise ValueError(f"pred and label must have the same length, got {x.size} and {y.size}")
    _check_finite(x, "pred")
    _check_finite(y, "label")
    if x.size < 4:
        raise ValueError(f"a 4-parameter logistic needs at least 4 items, got {x.size}")
    mx, sx, my, sy = x.mean(), x.std(), y.mean(), y.std()
    if sx == 0 or sy == 0:
        raise ValueError("cannot fit a logistic: pred or label is constant")
    xs, ys = (x - mx) / sx, (y - my) / sy
    p0 = [ys.max(), ys.min(), xs.mean(), xs.std() / 4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)  # covariance not estimable: irrelevant, only the optimum is used
        params, _ = curve_fit(logistic4, xs, ys, p0=p0, jac=_logistic4_jacobian, maxfev=MAXFEV)
    b1, b2, b3, b4 = params
    return np.array([my + sy * b1, my + sy * b2, mx + sx * b3, sx * abs(b4)])


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.spearmanr(x, y).statistic)


def _logistic_fit(x: np.ndarray, y: np.ndarray) -> dict:
    """``plcc_fit``, ``rmse_fit`` and ``fit_ok`` of the 4-parameter logistic of ``x`` fitted to ``y``."""
    try:
        params = fit_logistic(x, y)
    except (RuntimeError, ValueError):  # no convergence, or too few items for 4 parameters: reported as fit_ok=False
        params = None
    if params is None or not np.all(np.isfinite(params)):
        return {"plcc_fit": float("nan"), "rmse_fit": float("nan"), "fit_ok": False}
    fitted = logistic4(x, *params)
    if not np.ptp(fitted) > 0:  # a logistic collapsed to a constant has no defined Pearson correlation
        return {"plcc_fit": float("nan"), "rmse_fit": float("nan"), "fit_ok": False}
    direction = 1.0 if params[0] >= params[1] else -1.0
    return {"plcc_fit": direction * float(stats.pearsonr(fitted, y).statistic),
            "rmse_fit": float(np.sqrt(np.mean((fitted - y) ** 2))), "fit_ok": True}


def correlations(
    pred: ArrayLike,
    label: ArrayLike,
    pred_lower_better: bool,
    label_lower_better: bool,
    types: Sequence[str] | None = None,
) -> dict:
    """SRCC, KRCC (tau-b), raw PLCC and logistic-fit PLCC/RMSE of ``pred`` against ``label``.

    Returns ``srcc, krcc, plcc, plcc_fit, rmse_fit, fit_ok, n`` and, when ``types`` (one distortion type per item) is given,
    ``srcc_by_type`` (type -> SRCC; NaN for a type with fewer than 3 items or a constant prediction or label).
    ``plcc_fit`` is Pearson between the fitted logistic of the (sign-adjusted) prediction and the label, negated when the
    best fit is a decreasing logistic, so a metric pointing the wrong way stays negative. ``rmse_fit`` is in label units.
    When the fit does not converge, ``fit_ok`` is False and ``plcc_fit``/``rmse_fit`` are NaN.
    """
    x, y = _as_vector(pred, "pred"), _as_vector(label, "label")
    if x.shape != y.shape:
        raise ValueError(f"pred and label must have the same length, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"correlations need at least 3 items, got {x.size}")
    _check_finite(x, "pred")
    _check_finite(y, "label")
    if np.all(x == x[0]) or np.all(y == y[0]):
        raise ValueError("pred or label is constant: correlations are undefined")
    if pred_lower_better != label_lower_better:
        x = -x

    out = {
        "srcc": _spearman(x, y),
        "krcc": float(stats.kendalltau(x, y).statistic),
        "plcc": float(stats.pearsonr(x, y).statistic),
        "n": int(x.size),
    }
    out.update(_logistic_fit(x, y))
    if types is not None:
        if len(types) != x.size:
            raise ValueError(f"types must have one entry per item: got {len(types)} for {x.size} items")
        names = np.asarray([str(t) for t in types])
        by_type = {}
        for t in sorted(set(names.tolist())):
            xt, yt = x[names == t], y[names == t]
            degenerate = xt.size < 3 or np.all(xt == xt[0]) or np.all(yt == yt[0])
            by_type[t] = float("nan") if degenerate else _spearman(xt, yt)
        out["srcc_by_type"] = by_type
    return out
