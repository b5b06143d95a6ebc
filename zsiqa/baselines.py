"""Full-image baselines scored by the same engine as the deep metrics: zsiqa's own classics (torchmetrics: ``psnr``,
``ssim``, ``ms_ssim``) and, with the ``baselines`` extra, every FR metric of the field's library pyiqa under its own
name (``zsiqa.pyiqa_baselines``)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from . import pyiqa_baselines
from .choices import Align, Preset
from .errors import ConfigError, InputError, did_you_mean
from .images import ImageLike, resolve_exif, to_batch
from .metric import align_pair
from .registry import Registry


@dataclass(frozen=True)
class Baseline:
    """name: its column; fn: (ref, dis) [N,3,H,W] in [0,1] -> [N]; module: the weights it runs (moved to the run's
    device with it), None for plain functions; source: the implementation, for reports."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    lower_better: bool
    doc: str
    module: torch.nn.Module | None = None
    source: str = "zsiqa (torchmetrics)"


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


def baseline_names() -> list[str]:
    """Every name ``baselines=[...]`` takes: zsiqa's own, then pyiqa's FR metrics (known even without the extra)."""
    return list(BASELINES) + pyiqa_baselines.available()


def check_baseline(name: str) -> None:
    """Raise the one-line error for a name that is no baseline (with a suggestion), or pyiqa's without the extra;
    builds nothing (config validation)."""
    if name in BASELINES:
        return
    if pyiqa_baselines.pyiqa_name(name) is None:
        names = baseline_names()
        raise ConfigError(f"baselines: unknown baseline {name!r}{did_you_mean(name, names)}; available: "
                          f"{', '.join(names)}")
    pyiqa_baselines.require(name)


def get_baseline(name: str) -> Baseline:
    """Baseline ``name``: zsiqa's own, or pyiqa's metric built now (its weights resolved: see ``zsiqa.pyiqa_baselines``)."""
    check_baseline(name)
    if name in BASELINES:
        return BASELINES.get(name)
    model = pyiqa_baselines.build(name)
    metric = pyiqa_baselines.pyiqa_name(name)
    return Baseline(name, partial(pyiqa_baselines.score, model), bool(model.lower_better),
                    f"pyiqa {metric!r} (full image)", model, f"pyiqa {pyiqa_baselines.version()} {metric!r}")


class BaselineMetric(torch.nn.Module):
    """A baseline as a metric object (what ``create_metric(baseline=NAME)`` returns): ``metric(ref, dis)`` -> [N]
    scores for files, PIL images or [N,3,H,W] tensors in [0, 1] (``ref`` may be one image for N distorted ones)."""

    def __init__(self, baseline: Baseline, align: str = "error", exif: str = "auto") -> None:
        super().__init__()
        self.baseline = baseline
        self.module = baseline.module
        self.name, self.lower_better = baseline.name, baseline.lower_better
        # exif auto: as evaluate.py under its default preset (paper: ignored, as the official code)
        self.align, self.exif = Align.of(align, "align").value, resolve_exif(exif, Preset.paper).value
        self.register_buffer("_device", torch.empty(0), persistent=False)

    def forward(self, ref: ImageLike | list[ImageLike], dis: ImageLike | list[ImageLike]) -> torch.Tensor:
        r, d = to_batch(ref, "ref", self.exif), to_batch(dis, "dis", self.exif)
        if r.shape[0] not in (1, d.shape[0]):
            raise InputError(f"got {r.shape[0]} references for {d.shape[0]} distorted images; give 1 or the same number")
        d = align_pair(r, d, self.align, f"baseline {self.name!r}")
        device = self._device.device
        return self.baseline.fn(r.to(device).expand(len(d), -1, -1, -1), d.to(device))
