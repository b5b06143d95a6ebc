"""Correlations per metric column of a run, written as summary.json, a Markdown table and a scatter plot."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..files import atomic_savefig, atomic_write_json
from ..stats import correlation_intervals, correlations, fit_logistic, logistic4
from ..stats.bootstrap import type_correlations
from .markdown import fmt, markdown_table, with_interval

TABLE_KEYS = ("plcc", "srcc", "krcc", "plcc_fit", "rmse_fit")
CI_KEYS = ("plcc", "srcc", "krcc", "plcc_fit")  # each gets ``<key>_ci`` = [lo, hi]


def summarize(
    rows: list[dict], metrics: dict[str, bool], label_lower_better: bool,
    n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
) -> dict:
    """``metrics``: column -> lower_better. Pairs without a finite score (a non-finite score, or an image that could not
    be read under data.on_bad_image=skip: empty score, reason in the row's ``error``) are counted as failed and listed
    with their reason, never dropped silently.

    ``by_type``: the same per distortion type (SRCC, KRCC, PLCC and their intervals; ``type_correlations``).
    Besides the correlations, each metric gets ``<key>_ci`` for ``CI_KEYS``: percentile intervals at ``level`` from
    ``n_resamples`` reference-image bootstrap resamples (``zsiqa.stats.bootstrap``; 0 resamples: no intervals), and
    ``ci_method`` saying so. Intervals that cannot be computed (e.g. one reference) are None, with the reason in
    ``ci_error``.
    """
    label = np.array([float(r["label"]) for r in rows])
    types = [r["dist_type"] for r in rows]
    ref_ids = np.array([r["ref_id"] for r in rows])
    no_ci = {f"{k}_ci": None for k in CI_KEYS}
    method = (f"reference-clustered percentile bootstrap, {n_resamples} resamples, seed {seed}, "
              f"{round(100 * level)} % intervals (extended to hold the estimate)")
    out = {}
    for name, lower_better in metrics.items():
        pred = np.array([_score(r[name]) for r in rows])
        ok = np.isfinite(pred)
        failed = [int(rows[i]["index"]) for i in np.flatnonzero(~ok)]
        reasons = {str(int(rows[i]["index"])): rows[i].get("error") or f"non-finite score {rows[i][name]}"
                   for i in np.flatnonzero(~ok)[:100]}
        try:
            corr = correlations(pred[ok], label[ok], pred_lower_better=lower_better,
                                label_lower_better=label_lower_better)
        except ValueError as e:  # e.g. a constant prediction: reported in the table, not hidden
            corr = {k: float("nan") for k in TABLE_KEYS} | {"error": str(e)}
        if n_resamples > 0:
            corr["ci_method"] = method
            try:
                corr |= correlation_intervals(pred[ok], label[ok], ref_ids[ok], lower_better, label_lower_better,
                                              n_resamples, seed, level)
            except ValueError as e:  # e.g. all pairs of one reference: no between-reference variation to resample
                corr |= no_ci | {"ci_error": str(e)}
        corr["by_type"] = type_correlations(pred[ok], label[ok], ref_ids[ok], [t for t, k in zip(types, ok) if k],
                                            lower_better, label_lower_better, n_resamples, seed, level)
        out[name] = {**corr, "n_scored": int(ok.sum()), "n_failed": len(failed), "failed_indices": failed[:100],
                     "failed_reasons": reasons, "lower_better": lower_better}
    return out


def _score(text: str) -> float:
    """A score cell of scores.csv: empty for a pair that failed to load."""
    return float(text) if text else float("nan")


def summary_table(summary: dict, title: str) -> str:
    """The correlations of every metric column under a ``### title``; bracketed: the reference-bootstrap interval
    (see ``ci_method`` in summary.json)."""
    header = ["metric", *(k.upper() for k in TABLE_KEYS), "n", "failed"]
    rows = [[name, *(with_interval(s, k) for k in TABLE_KEYS), s["n_scored"], s["n_failed"]] for name, s in summary.items()]
    shown = [s for s in summary.values() if "ci_method" in s and "ci_error" not in s]
    note = f"\n[lo, hi]: {', '.join(sorted({s['ci_method'] for s in shown}))}.\n" if shown else ""
    for reason in sorted({s["ci_error"] for s in summary.values() if "ci_error" in s}):
        names = ", ".join(n for n, s in summary.items() if s.get("ci_error") == reason)
        note += f"\nNo intervals for {names}: {reason}.\n"
    return f"### {title}\n\n" + markdown_table(header, rows) + note + _type_tables(summary)


def _type_tables(summary: dict) -> str:
    """SRCC, PLCC and KRCC per distortion type (rows) and metric (columns), with their intervals; the reasons for
    undefined values and missing intervals below."""
    types = list(dict.fromkeys(t for s in summary.values() for t in s.get("by_type", {})))
    if not types:
        return ""
    out = ""
    for key in ("srcc", "plcc", "krcc"):
        rows = [[t, *(with_interval(s["by_type"][t], key) if t in s.get("by_type", {}) else "–" for s in summary.values())]
                for t in types]
        out += f"\n#### {key.upper()} by distortion type\n\n" + markdown_table(["type", *summary], rows)
    why: dict[str, dict[str, None]] = {}  # reason -> the types it concerns, in order
    for entry in (s.get("by_type", {}) for s in summary.values()):
        for t, e in entry.items():
            if e.get("error") or e.get("ci_error"):
                what = "No value" if e.get("error") else "No interval"
                why.setdefault(f"{what} for {{}}: {e.get('error') or e['ci_error']}", {})[t] = None
    return out + "".join(f"\n{reason.format(', '.join(ts))}.\n" for reason, ts in why.items())


def scatter_plot(rows: list[dict], summary: dict, label_name: str, path: Path) -> Path:
    """One panel per metric: score vs label, coloured by distortion type (one legend for all panels), with the fitted
    4-parameter logistic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    cols = min(3, len(names))
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows + 0.6), squeeze=False, layout="constrained")
    label = np.array([float(r["label"]) for r in rows])
    types = np.array([str(r["dist_type"]) for r in rows])
    kinds = list(dict.fromkeys(types.tolist()))
    colours = plt.get_cmap("tab10" if len(kinds) <= 10 else "tab20")
    for ax, name in zip(axes.flat, names):
        pred = np.array([_score(r[name]) for r in rows])
        ok = np.isfinite(pred)
        for k, kind in enumerate(kinds):
            mine = ok & (types == kind)
            ax.scatter(pred[mine], label[mine], s=6, alpha=0.7, color=colours(k % colours.N), label=kind)
        try:
            params = fit_logistic(pred[ok], label[ok])
        except (RuntimeError, ValueError):  # no curve for a fit that fails; the table says fit_ok / NaN already
            params = None
        if params is not None:
            xs = np.linspace(pred[ok].min(), pred[ok].max(), 200)
            ax.plot(xs, logistic4(xs, *params), color="black", lw=1.2)
        s = summary[name]
        ax.set_title(f"{name}: SRCC {fmt(s['srcc'])}, PLCC {fmt(s['plcc'])}", fontsize=9)
        ax.set_xlabel(f"score ({'lower' if s['lower_better'] else 'higher'} = better)")
        ax.set_ylabel(label_name)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if len(kinds) > 1:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(kinds), 8), fontsize=8, markerscale=2,
                   title="distortion type", title_fontsize=8)
    return atomic_savefig(path, fig)


def write_summary(run_dir: Path, summary: dict, config: dict, extra: dict) -> None:
    atomic_write_json(Path(run_dir) / "summary.json", {"config": config, **extra, "metrics": summary}, indent=2)


def hardest_pairs(rows: list[dict], metric: str, lower_better: bool, label_lower_better: bool, n: int = 6) -> list[dict]:
    """The ``n`` pairs whose rank by ``metric`` is farthest from their rank by label (both as 1 = best quality,
    mid-ranks for ties), worst first: where the metric disagrees most with the observers."""
    from scipy.stats import rankdata

    scored = [r for r in rows if np.isfinite(_score(r[metric]))]
    if len(scored) < 2:
        return []
    pred = np.array([_score(r[metric]) for r in scored])
    label = np.array([float(r["label"]) for r in scored])
    pred_rank = rankdata(pred if lower_better else -pred)  # 1 = the best predicted quality
    label_rank = rankdata(label if label_lower_better else -label)
    gap = np.abs(pred_rank - label_rank)
    order = np.argsort(-gap, kind="stable")[:n]
    return [{**scored[i], "pred_rank": float(pred_rank[i]), "label_rank": float(label_rank[i])} for i in order]


def hardest_pairs_plot(pairs: list[dict], metric: str, n_pairs: int, label_name: str, path: Path,
                       maps: list | None = None) -> Path:
    """Reference and distorted image side by side for each of ``pairs`` (``hardest_pairs``), with both ranks, and
    the pair's quality map (``FRMetric.map``: where the metric sees the difference) when ``maps`` are given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    cols = 3 if maps else 2
    fig, axes = plt.subplots(len(pairs), cols, figsize=(3.2 * cols, 2.9 * len(pairs)), squeeze=False,
                             layout="constrained")
    for i, (row, p) in enumerate(zip(axes, pairs)):
        ax_ref, ax_dis = row[:2]
        for ax, key in ((ax_ref, "ref"), (ax_dis, "dis")):
            with Image.open(p[key]) as img:
                img.thumbnail((512, 512))
                ax.imshow(img.convert("RGB"))
            ax.set_xticks([])
            ax.set_yticks([])
        ax_ref.set_title(f"reference {Path(p['ref']).name}", fontsize=8)
        ax_dis.set_title(f"{Path(p['dis']).name} ({p['dist_type']})\n{label_name} rank {p['label_rank']:g}, "
                         f"{metric} rank {p['pred_rank']:g} of {n_pairs}", fontsize=8)
        if maps:
            qmap = maps[i]
            row[2].imshow(qmap.combined.numpy(), cmap="magma")
            row[2].set_xticks([])
            row[2].set_yticks([])
            row[2].set_title(f"{metric} map (sum {qmap.score:.4g})", fontsize=8)
    fig.suptitle(f"{metric}: the pairs it ranks farthest from their {label_name} (1 = best quality)", fontsize=9)
    return atomic_savefig(path, fig)
