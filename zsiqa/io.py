"""Image input: files, PIL images or tensors -> float RGB tensors in [0, 1]."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

ImageLike = Union[str, Path, Image.Image, torch.Tensor]


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB (BMP palettes, greyscale and RGBA all become RGB, as in the official code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    with Image.open(path) as im:
        return im.convert("RGB")


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL -> ``[3, H, W]`` float32 in [0, 1] (torchvision ``ToTensor`` semantics, no normalisation)."""
    arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def to_batch(x: ImageLike | Sequence[ImageLike], name: str = "image") -> torch.Tensor:
    """Accept a path, PIL image, ``[3,H,W]`` / ``[N,3,H,W]`` tensor, or a list of those (same size) -> ``[N,3,H,W]``."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{name}: empty list")
        parts = [to_batch(e, name) for e in x]
        sizes = {tuple(p.shape[-2:]) for p in parts}
        if len(sizes) > 1:
            raise ValueError(f"{name}: images in one batch must share a size, got {sorted(sizes)}")
        return torch.cat(parts)
    if isinstance(x, (str, Path)):
        return pil_to_tensor(load_image(x))[None]
    if isinstance(x, Image.Image):
        return pil_to_tensor(x)[None]
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a path, PIL image or tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected [N, 3, H, W] RGB, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a float tensor in [0, 1], got {x.dtype} (divide uint8 images by 255)")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name}: values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}] (undo any mean/std normalisation)")
    return x
