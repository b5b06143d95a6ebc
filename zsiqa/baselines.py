"""Classic full-image baselines (torchmetrics), scored by the same engine as the deep metrics."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from .errors import InputError
from .registry import Registry


@dataclass(frozen=True)
class Baseline:
    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ref, dis) [N,3,H,W] in [0,1] -> [N]
    lower_better: bool
    doc: str


def _psnr(ref: torch.Tensor, dis: torch.Tensor) -> torch.Tensor:
    return peak_signal_noise_ratio(dis, ref, data_range=1.0, reduction="none", dim=(1, 2, 3))


def _ssim(ref: torch.Tensor, dis: torch.Tensor) -> torch.Tensor:
    return structural_similarity_index_measure(dis, ref, data_range=1.0, reduction="none")


def _ms_ssim(ref: torch.Tensor, dis: torch.Tensor) -> torch.Tensor:
    if min(ref.shape[-2:]) <= 160:
        raise InputError(f"ms_ssim needs images larger than 160 px on each side (5 scales, 11-px window), got {tuple(ref.shape[-2:])}")
    return multiscale_structural_similarity_index_measure(dis, ref, data_range=1.0, reduction="none")


BASELINES: Registry[Baseline] = Registry("baseline")
for _baseline in (
    Baseline("psnr", _psnr, False, "PSNR on RGB in [0, 1] (full image)"),
    Baseline("ssim", _ssim, False, "SSIM on RGB, 11-px Gaussian window, no downsampling (full image)"),
    Baseline("ms_ssim", _ms_ssim, False, "MS-SSIM on RGB, 5 scales (full image; sides > 160 px)"),
):
    BASELINES.register(_baseline)


def get_baseline(name: str) -> Baseline:
    return BASELINES.get(name)
