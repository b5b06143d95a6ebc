"""What a training run reports: per-pair scores (CSV), the learned layer weights (plot), the zero-shot vs trained
table of the test datasets (Markdown), and the same to W&B."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch

from ..data import PairItem
from ..files import atomic_savefig, atomic_write
from .markdown import markdown_table, with_interval


def write_score_rows(items: Sequence[PairItem], positions: torch.Tensor, labels: torch.Tensor, zero_shot: torch.Tensor,
                     trained: torch.Tensor, path: Path) -> Path:
    """``index, ref_id, dist_type, label, zero_shot, trained`` per pair."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "ref_id", "dist_type", "label", "zero_shot", "trained"])
            for p, y, z, t in zip(positions.tolist(), labels.tolist(), zero_shot.tolist(), trained.tolist()):
                w.writerow([items[p].index, items[p].ref_id, items[p].dist_type, repr(y), repr(z), repr(t)])

    return atomic_write(path, write)


def weights_plot(weights: list[float], share: list[float], title: str, path: Path) -> Path:
    """Bars of the learned layer weights (against the zero-shot 1) and of each layer's share of the trained score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 0.5 * len(weights) + 4), 3.2))
    layers = list(range(len(weights)))
    axes[0].bar(layers, weights)
    axes[0].axhline(1.0, color="C3", lw=1, ls="--", label="zero-shot (1)")
    axes[0].set_title("learned layer weight", fontsize=9)
    axes[0].legend(fontsize=8)
    axes[1].bar(layers, share, color="C2")
    axes[1].set_title("share of the trained score (training pairs)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("layer")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return atomic_savefig(path, fig)


def cross_dataset_table(test: dict) -> str:
    """One row per test dataset: n, zero-shot and trained SRCC / PLCC with their reference-bootstrap intervals (in-domain
    sets flagged); then SRCC per distortion type, zero-shot and trained, for each dataset."""
    rows, notes = [], []
    for name, r in test.items():
        note = " (in-domain: includes the training pairs)" if r["in_domain"] else ""
        z, t = r["zero_shot"], r["trained"]
        rows.append([f"{name}{note}", t["n"], *(with_interval(x, k) for x in (z, t) for k in ("srcc", "plcc"))])
        if t.get("ci_error"):
            notes.append(f"No intervals for {name}: {t['ci_error']}.")
    header = ["dataset", "n", "zero-shot SRCC", "zero-shot PLCC", "trained SRCC", "trained PLCC"]
    out = markdown_table(header, rows)
    if any(not r["trained"].get("ci_error") for r in test.values()):
        out += ("\n[lo, hi]: reference-clustered percentile bootstrap, 1000 resamples, seed 0, 95 % intervals "
                "(extended to hold the estimate).\n")
    out += "".join(f"\n{n}\n" for n in notes)
    for name, r in test.items():
        types = r["trained"].get("by_type", {})
        if len(types) < 2:
            continue
        type_rows = [[t, r["trained"]["by_type"][t]["n"], with_interval(r["zero_shot"]["by_type"][t], "srcc"),
                      with_interval(r["trained"]["by_type"][t], "srcc")] for t in types]
        out += f"\n#### {name}: SRCC by distortion type\n\n" + markdown_table(
            ["type", "n", "zero-shot SRCC", "trained SRCC"], type_rows)
    return out
