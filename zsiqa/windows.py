"""Sliding windows exactly as the official ZS-IQA code places them (224 px, stride 200, flush last window)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def window_starts(length: int, window: int = 224, stride: int = 200) -> list[int]:
    """Start offsets along one axis: ``range(0, L - window, stride)`` plus a last window flush with the edge.

    288 -> [0, 64]; 384 -> [0, 160]; 512 -> [0, 200, 288]; 768 -> [0, 200, 400, 544]; 224 -> [0].
    Lengths below the window give [0]: the image is padded first (see ``pad_to_window``), never mis-cropped.
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window ({window}) and stride ({stride}) must be positive")
    if length <= window:
        return [0]
    return list(range(0, length - window, stride)) + [length - window]


def pad_to_window(img: torch.Tensor, window: int) -> torch.Tensor:
    """Zero-pad ``[N, C, H, W]`` at the bottom/right up to ``window`` in each axis that is shorter.

    The official code computes a negative start for such images and silently takes a short crop; zsiqa pads
    instead (both reference and distorted get the same padding, so the padded area matches exactly).
    """
    h, w = img.shape[-2:]
    ph, pw = max(0, window - h), max(0, window - w)
    if ph == 0 and pw == 0:
        return img
    return F.pad(img, (0, pw, 0, ph))


def window_grid(height: int, width: int, window: int, stride: int = 200) -> list[tuple[int, int]]:
    """``(row, col)`` starts of every window of an image (after ``pad_to_window``), row-major: the official loop order."""
    rows = window_starts(max(height, window), window, stride)
    return [(x, y) for x in rows for y in window_starts(max(width, window), window, stride)]


def crop_windows(img: torch.Tensor, window: int, stride: int = 200, select: slice = slice(None)) -> tuple[torch.Tensor, int]:
    """All windows of every image as one batch, or the windows ``select`` of each (a slice of ``window_grid``).

    Returns ``([N * K', C, window, window], K)``, ordered image-major, then row start, then column start
    (the official loop order ``for x in rows: for y in cols``); ``K`` counts all windows of an image, ``K'`` the selected.
    """
    if img.ndim != 4:
        raise ValueError(f"expected images shaped [N, C, H, W], got {tuple(img.shape)}")
    img = pad_to_window(img, window)
    n, c, h, w = img.shape
    grid = window_grid(h, w, window, stride)
    chosen = grid[select]
    crops = torch.stack([img[:, :, x : x + window, y : y + window] for x, y in chosen], dim=1)
    return crops.reshape(n * len(chosen), c, window, window), len(grid)


def spread_cells(cells: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A ``[h, w]`` grid of cell values spread evenly over the pixels each cell covers in a ``height x width``
    region (pixel row y belongs to cell row ``y * h // height``): ``[height, width]``, whose sum is the cells' sum."""
    h, w = cells.shape
    if height < h or width < w:
        raise ValueError(f"a {height}x{width} region cannot hold a {h}x{w} grid of cells")
    rows = torch.arange(height, device=cells.device) * h // height
    cols = torch.arange(width, device=cells.device) * w // width
    per_row = torch.bincount(rows, minlength=h).to(cells.dtype)
    per_col = torch.bincount(cols, minlength=w).to(cells.dtype)
    return (cells / per_row[:, None] / per_col[None, :])[rows][:, cols]
