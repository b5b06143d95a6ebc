"""torchvision VGG16 up to relu5_1: the DeepSSIM backbone, with its saliency-mask hook on conv1_1."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import MissingFileError
from . import register_backbone
from .base import Backbone
from .weights import UrlWeights, download, register_weights

RELU5_1 = 26
"""``features[:26]`` ends with conv5_1 + ReLU: the one layer DeepSSIM compares."""

WEIGHTS_FILE = "vgg16-397923af.pth"
register_weights("vgg16", UrlWeights(f"https://download.pytorch.org/models/{WEIGHTS_FILE}"))  # torchvision IMAGENET1K_V1


class VGG16(Backbone):
    """VGG16 ``features[:26]`` on the whole image; one tap: the relu5_1 maps ``[B, 512, H/16, W/16]``.

    ``taps(x, mask)`` takes an optional binary mask per image (the saliency calibration of DeepSSIM): it multiplies
    all 64 conv1_1 output maps before the network continues.
    """

    layout = "maps"
    window = None
    requires_normalization = True

    def __init__(self, name: str, features: nn.Sequential) -> None:
        super().__init__(name)
        self.features = features

    def taps(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``x``: ``[B, 3, H, W]`` ImageNet-normalised; ``mask``: ``[B, H, W]`` or ``[B, 1, H, W]``, values 0 or 1."""
        h = self.features[0](x)
        if mask is not None:
            h = h * _check_mask(mask, x).to(h)
        return [self.features[1:](h)]


def _check_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    b, _, height, width = x.shape
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    if mask.ndim != 4 or tuple(mask.shape) != (b, 1, height, width):
        raise ValueError(
            f"mask must be [B, H, W] = [{b}, {height}, {width}] (or [B, 1, H, W]), the size of its own image batch; "
            f"got {list(mask.shape)}. Compute each saliency map at its image's resolution (masks are never resized)."
        )
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(
            "mask must be binary (0 or 1); binarise a saliency map with zsiqa.distances.deepssim.saliency_mask()"
        )
    return mask


def _weights_state(pretrained: bool, weights: str | None) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The requested state dict (``None``: random init) and its source, resolved before building to fail fast."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise MissingFileError(f"vgg16 weights file {path} not found (expected torchvision's {WEIGHTS_FILE})")
    elif pretrained:
        path = Path(download("vgg16"))  # torch hub cache, or the one clear WeightsUnavailableError
    else:
        return None, "random init"
    return torch.load(path, map_location="cpu", weights_only=True), str(path)


def _load_features(features: nn.Sequential, state: dict[str, torch.Tensor], source: str) -> None:
    """Load the ``features.0-25`` tensors of a torchvision VGG16 state dict; the rest (classifier) is ignored."""
    kept = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1].isdigit() and int(parts[1]) < RELU5_1:
            kept[".".join(parts[1:])] = value
    missing = sorted(set(features.state_dict()) - set(kept))
    if missing:
        names = ", ".join("features." + k for k in missing)
        raise RuntimeError(f"{source} is not a torchvision VGG16 state dict: no {names}")
    features.load_state_dict(kept)


@register_backbone(
    "vgg16", "torchvision VGG16 (ImageNet, vgg16-397923af.pth), whole image, relu5_1 maps: the DeepSSIM backbone"
)
def build_vgg16(name: str, pretrained: bool = True, weights: str | None = None) -> VGG16:
    from torchvision.models.vgg import cfgs, make_layers

    state, source = _weights_state(pretrained, weights)
    # Only the conv stack is built (the 120M-parameter classifier is never used), initialised as torchvision's VGG.
    features = make_layers(cfgs["D"])[:RELU5_1]
    if state is None:
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    else:
        _load_features(features, state, source)
    return VGG16(name, features)
