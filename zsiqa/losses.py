"""Training losses built on frozen backbones."""
from __future__ import annotations

import torch
from torch import nn

from .backbones import create_backbone
from .distances.deepssim import gram_ssim, image_features


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
