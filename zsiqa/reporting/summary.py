"""Correlations per metric column of a run, written as summary.json, a Markdown table and a scatter plot."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..files import atomic_savefig, atomic_write_text
from ..stats import correlation_intervals, correlations, fit_logistic, logistic4
from .markdown import markdown_table

TABLE_KEYS = ("plcc", "srcc", "krcc", "plcc_fit", "rmse_fit")
CI_KEYS = ("plcc", "srcc", "krcc", "plcc_fit")  # each gets ``<key>_ci`` = [lo, hi]


def summarize(
    rows: list[dict], metrics: dict[str, bool], label_lower_better: bool,
    n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
) -> dict:
    """``metrics``: column -> lower_better. Pairs without a finite score (a non-finite score, or an image that could not
    be read under data.on_bad_image=skip: empty score, reason in the row's ``error``) are counted as failed and listed
    with their reason, never dropped silently.

    Besides the correlations, each metric gets ``<key>_ci`` for ``CI_KEYS``: percentile intervals at ``level`` from
    ``n_resamples`` reference-image bootstrap resamples (``zsiqa.stats.bootstrap``; 0 resamples: no intervals), and
    ``ci_method`` saying so. Intervals that cannot be computed (e.g. one reference) are NaN with ``ci_error``.
    """
    label = np.array([float(r["label"]) for r in rows])
    types = [r["dist_type"] for r in rows]
    ref_ids = np.array([r["ref_id"] for r in rows])
    nan_ci = {f"{k}_ci": [float("nan"), float("nan")] for k in CI_KEYS}
    method = (f"reference-clustered percentile bootstrap, {n_resamples} resamples, seed {seed}, "
              f"{round(100 * level)} % intervals")
    out = {}
    for name, lower_better in metrics.items():
        pred = np.array([_score(r[name]) for r in rows])
        ok = np.isfinite(pred)
        failed = [int(rows[i]["index"]) for i in np.flatnonzero(~ok)]
        reasons = {str(int(rows[i]["index"])): rows[i].get("error") or f"non-finite score {rows[i][name]}"
                   for i in np.flatnonzero(~ok)[:100]}
        try:
            corr = correlations(
                pred[ok], label[ok], pred_lower_better=lower_better, label_lower_better=label_lower_better,
                types=[t for t, k in zip(types, ok) if k],
            )
        except ValueError as e:  # e.g. a constant prediction: reported in the table, not hidden
            corr = {k: float("nan") for k in TABLE_KEYS} | {"error": str(e)}
        if n_resamples > 0:
            corr["ci_method"] = method
            try:
                corr |= correlation_intervals(pred[ok], label[ok], ref_ids[ok], lower_better, label_lower_better,
                                              n_resamples, seed, level)
            except ValueError as e:  # e.g. all pairs of one reference: no between-reference variation to resample
                corr |= nan_ci | {"ci_error": str(e)}
        out[name] = {**corr, "n_scored": int(ok.sum()), "n_failed": len(failed), "failed_indices": failed[:100],
                     "failed_reasons": reasons, "lower_better": lower_better}
    return out


def _score(text: str) -> float:
    """A score cell of scores.csv: empty for a pair that failed to load."""
    return float(text) if text else float("nan")


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _cell(s: dict, key: str) -> str:
    """The value, with its interval as ``value [lo, hi]`` when the summary has one."""
    ci = s.get(f"{key}_ci")
    if ci is None or any(math.isnan(v) for v in ci) or math.isnan(s.get(key, float("nan"))):
        return _fmt(s.get(key))
    return f"{_fmt(s[key])} [{ci[0]:.3f}, {ci[1]:.3f}]"


def summary_table(summary: dict, title: str) -> str:
    """The correlations of every metric column under a ``### title``; bracketed: the reference-bootstrap interval
    (see ``ci_method`` in summary.json)."""
    header = ["metric", *(k.upper() for k in TABLE_KEYS), "n", "failed"]
    rows = [[name, *(_cell(s, k) for k in TABLE_KEYS), s["n_scored"], s["n_failed"]] for name, s in summary.items()]
    methods = {s["ci_method"] for s in summary.values() if "ci_method" in s}
    note = f"\n[lo, hi]: {', '.join(sorted(methods))}.\n" if methods else ""
    return f"### {title}\n\n" + markdown_table(header, rows) + note


def scatter_plot(rows: list[dict], summary: dict, label_name: str, path: Path) -> Path:
    """One panel per metric: score vs label with the fitted 4-parameter logistic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    cols = min(3, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    label = np.array([float(r["label"]) for r in rows])
    for ax, name in zip(axes.flat, names):
        pred = np.array([_score(r[name]) for r in rows])
        ok = np.isfinite(pred)
        ax.scatter(pred[ok], label[ok], s=6, alpha=0.6)
        try:
            params = fit_logistic(pred[ok], label[ok])
        except (RuntimeError, ValueError):  # no curve for a fit that fails; the table says fit_ok / NaN already
            params = None
        if params is not None:
            xs = np.linspace(pred[ok].min(), pred[ok].max(), 200)
            ax.plot(xs, logistic4(xs, *params), color="C3", lw=1.5)
        s = summary[name]
        ax.set_title(f"{name}: SRCC {_fmt(s['srcc'])}, PLCC {_fmt(s['plcc'])}", fontsize=9)
        ax.set_xlabel(f"score ({'lower' if s['lower_better'] else 'higher'} = better)")
        ax.set_ylabel(label_name)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return atomic_savefig(path, fig)


def write_summary(run_dir: Path, summary: dict, config: dict, extra: dict) -> None:
    payload = {"config": config, **extra, "metrics": summary}
    atomic_write_text(Path(run_dir) / "summary.json", json.dumps(payload, indent=2, default=str))
