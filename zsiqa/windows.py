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


def crop_windows(img: torch.Tensor, window: int, stride: int = 200) -> tuple[torch.Tensor, int]:
    """All windows of every image as one batch.

    Returns ``([N * K, C, window, window], K)``, ordered image-major, then row start, then column start
    (the official loop order ``for x in rows: for y in cols``).
    """
    if img.ndim != 4:
        raise ValueError(f"expected images shaped [N, C, H, W], got {tuple(img.shape)}")
    img = pad_to_window(img, window)
    n, c, h, w = img.shape
    rows, cols = window_starts(h, window, stride), window_starts(w, window, stride)
    crops = torch.stack([img[:, :, x : x + window, y : y + window] for x in rows for y in cols], dim=1)
    return crops.reshape(n * len(rows) * len(cols), c, window, window), len(rows) * len(cols)
