"""torchvision VGG16 (``torchvision.models.vgg16``) up to relu5_1: the DeepSSIM backbone, with its saliency-mask hook
on conv1_1."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG16_Weights, vgg16

from ..errors import ConfigError, MissingFileError
from ..files import load_tensors
from .base import Backbone
from .registry import register_backbone
from .weights import UrlWeights, download

RELU5_1 = 26
"""``features[:26]`` ends with conv5_1 + ReLU: the one layer DeepSSIM compares."""

WEIGHTS_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1


class VGG16(Backbone):
    """VGG16 ``features[:26]`` on the whole image; one tap: the relu5_1 maps ``[B, 512, H/16, W/16]``.

    ``taps(x, mask)`` takes an optional binary mask per image (the saliency calibration of DeepSSIM): it multiplies
    all 64 conv1_1 output maps before the network continues.
    """

    layout = "maps"
    window = None
    requires_normalization = True
    takes_mask = True

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


def _torchvision_features(weights: VGG16_Weights | None) -> nn.Sequential:
    """``torchvision.models.vgg16(weights=...).features`` (all 13 convs); without weights it is built on the meta
    device, then given uninitialised memory (no random numbers drawn: the caller initialises or loads it)."""
    if weights is not None:
        return vgg16(weights=weights).features
    with torch.device("meta"):
        features = vgg16(weights=None, init_weights=False).features
    return features.to_empty(device="cpu")


def _random_init(features: nn.Sequential) -> nn.Sequential:
    """torchvision's VGG initialisation (Kaiming normal, zero bias) of the convs up to relu5_1, after the default
    initialisation of all 13 convs that building them draws: the random numbers of every earlier zsiqa version."""
    for m in features:
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
    features = features[:RELU5_1]
    for m in features:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return features


def _load_features(features: nn.Sequential, path: Path) -> None:
    """Load the ``features.0-25`` tensors of a torchvision VGG16 state dict file; the rest (classifier) is ignored."""
    state = load_tensors(path, "VGG16 weights file")
    kept = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1].isdigit() and int(parts[1]) < RELU5_1:
            kept[".".join(parts[1:])] = value
    missing = sorted(set(features.state_dict()) - set(kept))
    if missing:
        names = ", ".join("features." + k for k in missing)
        raise ConfigError(f"{path} is not a torchvision VGG16 state dict: no {names}")
    features.load_state_dict(kept)


@register_backbone(
    "vgg16", "torchvision VGG16 (ImageNet, vgg16-397923af.pth), whole image, relu5_1 maps: the DeepSSIM backbone",
    weights=UrlWeights(VGG16_Weights.IMAGENET1K_V1.url),
)
def build_vgg16(name: str, pretrained: bool = True, weights: str | None = None) -> VGG16:
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise MissingFileError(f"vgg16 weights file {path} not found (expected torchvision's {WEIGHTS_FILE})")
        features = _torchvision_features(None)[:RELU5_1]
        _load_features(features, path)
    elif pretrained:
        download(name)  # into torch hub's cache, where torchvision reads it, or the one clear WeightsUnavailableError
        features = _torchvision_features(VGG16_Weights.IMAGENET1K_V1)[:RELU5_1]
    else:
        features = _random_init(_torchvision_features(None))
    return VGG16(name, features)
