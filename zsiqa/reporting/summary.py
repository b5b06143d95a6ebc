"""Correlations per metric column of a run, written as summary.json, a Markdown table and a scatter plot."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..files import atomic_write_text
from ..stats import correlations, fit_logistic, logistic4
from .markdown import markdown_table

TABLE_KEYS = ("plcc", "srcc", "krcc", "plcc_fit", "rmse_fit")


def summarize(rows: list[dict], metrics: dict[str, bool], label_lower_better: bool) -> dict:
    """``metrics``: column -> lower_better. Non-finite scores are counted as failed and listed, never dropped silently."""
    label = np.array([float(r["label"]) for r in rows])
    types = [r["dist_type"] for r in rows]
    out = {}
    for name, lower_better in metrics.items():
        pred = np.array([float(r[name]) for r in rows])
        ok = np.isfinite(pred)
        failed = [int(rows[i]["index"]) for i in np.flatnonzero(~ok)]
        try:
            corr = correlations(
                pred[ok], label[ok], pred_lower_better=lower_better, label_lower_better=label_lower_better,
                types=[t for t, k in zip(types, ok) if k],
            )
        except ValueError as e:  # e.g. a constant prediction: reported in the table, not hidden
            corr = {k: float("nan") for k in TABLE_KEYS} | {"error": str(e)}
        out[name] = {**corr, "n_scored": int(ok.sum()), "n_failed": len(failed), "failed_indices": failed[:100],
                     "lower_better": lower_better}
    return out


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def summary_table(summary: dict, title: str) -> str:
    """The correlations of every metric column under a ``### title``."""
    header = ["metric", *(k.upper() for k in TABLE_KEYS), "n", "failed"]
    rows = [[name, *(_fmt(s.get(k)) for k in TABLE_KEYS), s["n_scored"], s["n_failed"]] for name, s in summary.items()]
    return f"### {title}\n\n" + markdown_table(header, rows)


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
        pred = np.array([float(r[name]) for r in rows])
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_summary(run_dir: Path, summary: dict, config: dict, extra: dict) -> None:
    payload = {"config": config, **extra, "metrics": summary}
    atomic_write_text(Path(run_dir) / "summary.json", json.dumps(payload, indent=2, default=str))
