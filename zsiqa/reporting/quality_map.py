"""A quality map as a figure: reference, distorted image and the combined map, then one small map per layer."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..files import atomic_savefig
from ..metric import QualityMap


def map_figure(qmap: QualityMap, ref: torch.Tensor, dis: torch.Tensor, title: str, path: Path) -> Path:
    """``ref`` / ``dis``: ``[3, H, W]`` in [0, 1] as scored; the maps share one colour scale per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers = qmap.layers.shape[0]
    cols = max(3, min(6, n_layers))
    rows = 1 + math.ceil(n_layers / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    h, w = qmap.combined.shape
    for ax, img, name in ((axes[0, 0], ref, "reference"), (axes[0, 1], dis, "distorted")):
        padded = torch.zeros(3, h, w)
        padded[:, : img.shape[1], : img.shape[2]] = img[:, :h, :w].float().cpu()
        ax.imshow(padded.permute(1, 2, 0).numpy())
        ax.set_title(name, fontsize=8)
    shown = axes[0, 2].imshow(qmap.combined.numpy(), cmap="magma")
    axes[0, 2].set_title(f"combined (sum {qmap.score:.4g})", fontsize=8)
    fig.colorbar(shown, ax=axes[0, 2], fraction=0.046)
    top = float(qmap.layers.max())
    for layer, ax in enumerate(axes[1:].flat[:n_layers]):
        ax.imshow(qmap.layers[layer].numpy(), cmap="magma", vmin=0, vmax=top)
        ax.set_title(f"layer {layer} ({float(qmap.layers[layer].sum()) / qmap.score:.0%})", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return atomic_savefig(path, fig)
