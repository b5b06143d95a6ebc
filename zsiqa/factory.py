"""``create_metric``: a metric from names (timm's ``create_model`` for FR-IQA), or from a learned-weights file."""
from __future__ import annotations

import os

import torch

from .backbones import create_backbone
from .baselines import BaselineMetric, get_baseline
from .choices import Preset
from .distances import get_distance
from .errors import ConfigError
from .learned_weights import create_trained_metric
from .losses import PerceptualLoss
from .metric import FRMetric
from .presets import resolve_distance


def create_metric(
    backbone: str | None = None,
    distance: str | None = None,
    pretrained: bool = True,
    weights: str | None = None,
    device: str | torch.device | None = None,
    preset: str | None = None,
    trained: str | os.PathLike | None = None,
    as_loss: bool = False,
    baseline: str | None = None,
    **options,
) -> FRMetric | PerceptualLoss | BaselineMetric:
    """Build a metric: ``create_metric("dino_vitb16", "wsd")(ref, dis)``.

    distance: default "l2". pretrained / weights: see ``zsiqa.backbones.create_backbone``. preset: "paper" (default;
    bit-faithful to the official code) or "fixed" (its bugs fixed). options: normalize, precision, stride,
    max_windows_per_batch, align, exif ("auto" | "apply" | "ignore": EXIF orientation of image files; auto = ignore
    under preset paper, as the official code, apply under fixed). trained: learned weights from train.py
    (``trained.pt``, or a checkpoint of its run): its stored config decides backbone, distance, preset, normalize and stride; any of them given explicitly must agree
    with it. as_loss: return ``zsiqa.losses.PerceptualLoss`` around the metric (differentiable, ``loss(dis, ref)``).
    baseline: a full-image baseline instead (``psnr``, ``ssim``, ``ms_ssim``, or any of pyiqa's FR metrics with the
    ``baselines`` extra: ``create_metric(baseline="lpips")(ref, dis)``); options: align, exif.
    """
    if baseline is not None:
        if backbone is not None or distance is not None or trained is not None or as_loss:
            raise ConfigError("create_metric(baseline=...) takes no backbone, distance, trained or as_loss")
        metric = BaselineMetric(get_baseline(baseline), **options)
    elif trained is not None:
        metric = create_trained_metric(trained, backbone, distance, preset, pretrained=pretrained, weights=weights, **options)
    else:
        if backbone is None:
            raise ConfigError("create_metric needs a backbone name (see zsiqa.list_backbones()) or trained=<train.py trained.pt>")
        preset = Preset.paper if preset is None else preset
        distance = resolve_distance("l2" if distance is None else distance, preset)
        metric = FRMetric(create_backbone(backbone, pretrained=pretrained, weights=weights), get_distance(distance),
                          preset=preset, **options)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    metric = metric.to(device).eval()
    return PerceptualLoss(metric) if as_loss else metric
