"""The one backbone interface: a frozen model that returns its intermediate outputs ("taps")."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A frozen feature extractor.

    ``taps(x)`` returns one tensor per tapped layer. ``layout`` says how to read them:
    ``"tokens"`` -> each tap is ``[B, T, C]`` (ViTs: all tokens, CLS first, residual stream before the final norm);
    ``"maps"``   -> each tap is ``[B, C, H, W]`` (CNNs).
    ``x`` is ``[B, 3, h, w]`` RGB already preprocessed by the caller (see ``mean``/``std``).
    ``window`` is the crop size the model runs on (224 for the paper's models) or ``None`` for the whole image.
    ``paper_dtype`` is the dtype the official code ran the model in (fp16 only for OpenAI CLIP, on CUDA).
    ``requires_normalization``: the method defines the model on mean/std-normalised input under every preset (DeepSSIM's
    VGG16); the ZS-IQA models get raw [0, 1] pixels under ``preset=paper``, as the official code fed them.
    ``takes_mask``: ``taps(x, mask=)`` accepts a binary saliency mask per image (DeepSSIM's ``vgg16``).
    """

    layout: str = "tokens"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    window: int | None = 224
    paper_dtype: torch.dtype = torch.float32
    requires_normalization: bool = False
    takes_mask: bool = False

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def freeze(self) -> "Backbone":
        """eval mode (no dropout / stochastic depth / BN updates) and no gradients into the backbone."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> "Backbone":
        # A backbone is never put in train mode: stochastic depth or BN batch statistics would make scores random.
        return super().train(False)

    def cast(self, dtype: torch.dtype) -> None:
        """Run the model in ``dtype``: every parameter and buffer converted (a no-op when they already are).
        OpenAI CLIP overrides it for fp16, which ``clip.load`` applies to some parameters only."""
        if any(p.dtype != dtype for p in self.parameters()):
            self.to(dtype)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement taps()")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Final embedding: ``[B, D]`` (CLIP) or ``[B, T, D]`` (DINO: final-norm output of all tokens). Not normalised."""
        raise NotImplementedError(f"backbone {self.name!r} has no embedding output")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.taps(x)


BackboneBuilder = Callable[..., Backbone]
