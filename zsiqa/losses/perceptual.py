"""Losses built on frozen backbones: DeepSSIM-Lite for training, and any zero-shot metric as a perceptual loss."""
from __future__ import annotations

import torch
from torch import nn

from ..backbones import create_backbone
from ..distances import get_distance, list_distances
from ..distances.deepssim import gram_ssim, image_features
from ..errors import InputError
from ..metric import Features, FRMetric, align_pair


class DeepSSIMLoss(nn.Module):
    """DeepSSIM-Lite: ``1 - S`` on each tap's Gram normalised by ``C * H * W``, one global window, batch mean.

    With the default ``vgg16`` backbone (relu5_1) this is the official DeepSSIM-Lite loss; any registered backbone
    works, its taps averaged. The backbone is frozen; gradients flow to the input images. Lower = better.
    The backbone runs on the whole input, so feed sizes the backbone accepts (e.g. 224x224 for ViTs).
    """

    def __init__(self, backbone: str = "vgg16", pretrained: bool = True, weights: str | None = None) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained=pretrained, weights=weights)
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, dis: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """``dis`` (being optimised) and ``ref``: RGB in [0, 1], ``[B, 3, H, W]`` (sizes may differ) -> scalar loss."""
        f_dis = self.backbone.taps((dis - self.mean) / self.std)
        f_ref = self.backbone.taps((ref - self.mean) / self.std)
        layers = []
        for r, d in zip(f_ref, f_dis):
            r, d = image_features(r, 1), image_features(d, 1)
            # block = C: one window over the whole C x C matrix.
            layers.append(1 - gram_ssim(r, d, block=r.shape[1], normalize=True))
        return torch.stack(layers, 1).mean()



class PerceptualLoss(nn.Module):
    """A zero-shot metric as a differentiable loss: ``loss(dis, ref)``, gradients flowing into ``dis`` (and ``ref`` if it
    requires them) through the windows and the frozen, eval-mode backbone.

    The value is the metric's score, made lower = better: distances as ``metric(ref, dis)`` gives them, similarities
    (deepssim) as ``1 - score``. It is computed by ``FRMetric.window_features`` (same normalisation, windows, chunks of
    ``max_windows_per_batch``, model dtype, fp32 distances and size alignment), only without ``torch.no_grad``.
    ``dtype``: the backbone's compute dtype (default: the metric's; float64 for gradient checks). ``reduction``:
    ``"mean"`` (a scalar) or ``"none"`` (``[N]``). Inputs are RGB ``[N, 3, H, W]`` in [0, 1] (not range-checked: an
    image being optimised may step slightly outside); ``ref`` may be one image for N distorted ones.
    The distribution heads' ``log(d + 1) ** 0.25`` has an infinite slope at d = 0: identical inputs give inf/NaN
    gradients there, so start from an image that differs from the reference.
    """

    def __init__(self, metric: FRMetric, reduction: str = "mean", dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not metric.distance.differentiable:  # swd: fresh random directions from the global RNG on every call
            usable = [name for name in list_distances() if get_distance(name).differentiable]
            raise InputError(f"distance {metric.distance.name!r} cannot be used as a loss; differentiable heads: "
                             f"{', '.join(usable)}")
        if type(metric).score_from is not FRMetric.score_from:
            raise InputError(f"{type(metric).__name__} scores with learned weights; only zero-shot metrics "
                             "(create_metric without trained=) can be used as a loss")
        if reduction not in ("mean", "none"):
            raise InputError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        self.metric = metric
        metric.backbone.freeze()
        self.reduction = reduction
        self.dtype = dtype

    def forward(self, dis: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        m = self.metric
        for name, t in (("dis", dis), ("ref", ref)):
            if t.ndim != 4 or t.shape[1] != 3 or not t.is_floating_point():
                raise InputError(f"{name} must be a float [N, 3, H, W] RGB tensor, got {t.dtype} {tuple(t.shape)}")
        if ref.shape[0] not in (1, dis.shape[0]):
            raise InputError(f"got {ref.shape[0]} references for {dis.shape[0]} distorted images; give 1 or as many")
        if m.distance.kind != "image":
            dis = align_pair(ref, dis, m.align, f"distance {m.distance.name!r}")
        r, d = m.window_features(ref, self.dtype), m.window_features(dis, self.dtype)
        if r.num_images == 1 and d.num_images > 1:  # one reference for many distorted images: tile its windows
            r = Features([t.repeat(d.num_images, *[1] * (t.ndim - 1)) for t in r.taps], d.num_images, r.num_windows, r.size)
        if m.distance.kind == "image":
            score = m.distance.fn(r.taps, d.taps, r.num_windows, d.num_windows)
        else:
            score = m.distance.fn(r.taps, d.taps).view(d.num_images, d.num_windows).mean(1)
        loss = score if m.lower_better else 1 - score
        return loss.mean() if self.reduction == "mean" else loss
