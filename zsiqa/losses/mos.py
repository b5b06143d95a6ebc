"""MOS objectives: losses for fitting learned weights to subjective scores (MOS / DMOS) within a batch of pairs
(image-space perceptual losses are in ``zsiqa.losses.perceptual``).

Every loss takes ``quality`` (predicted, higher = better: the metric's sign already applied) and ``target`` (the
label, higher = better: the dataset's direction already applied), both ``[B]``. Predictions are standardised within
the batch first, so every loss ignores the scale and offset of the score: one learning rate fits distances whose
magnitudes differ by orders (l2 on ViT tokens vs cos), and only the relative layer weights are learned.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..registry import Registry

EPS = 1e-8
SOFT_RANK_TEMPERATURE = 0.1  # on standardised scores: pairs closer than ~0.1 std count as half-ordered


def _standardize(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std(unbiased=False) + EPS)


def _pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation; 0 (with zero gradient) when either side is constant, never NaN."""
    x, y = x - x.mean(), y - y.mean()
    return (x * y).sum() / (x.norm() * y.norm() + EPS)


def _check(quality: torch.Tensor, target: torch.Tensor) -> None:
    if quality.ndim != 1 or quality.shape != target.shape:
        raise ValueError(f"quality and target must be [B] of the same length, got {tuple(quality.shape)} and "
                         f"{tuple(target.shape)}")


def fidelity_loss(quality: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pairwise fidelity loss (Tsai et al. 2007, as in UNIQUE) over all pairs of the batch.

    Thurstone model: P(i better than j) = Phi((z_i - z_j) / sqrt 2) on standardised predictions ``z``; the
    label gives 1, 0, or 1/2 for a tie. Loss = 1 - sqrt(p p_hat) - sqrt((1 - p)(1 - p_hat)), averaged over pairs.
    """
    _check(quality, target)
    if quality.numel() < 2:
        return quality.sum() * 0.0
    z = _standardize(quality)
    i, j = torch.triu_indices(len(z), len(z), 1, device=z.device)
    p_hat = 0.5 * (1 + torch.erf((z[i] - z[j]) / 2))  # Phi(d / sqrt 2) = (1 + erf(d / 2)) / 2
    p = 0.5 * (1 + torch.sign(target[i] - target[j])).to(z.dtype)
    # clamp: p_hat saturates to exactly 0 or 1 for far-apart pairs, where sqrt has no finite gradient
    agree = p.sqrt() * p_hat.clamp_min(EPS).sqrt() + (1 - p).sqrt() * (1 - p_hat).clamp_min(EPS).sqrt()
    return (1 - agree).mean()


def plcc_loss(quality: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(1 - PLCC) / 2``: 0 for a perfect linear fit, 1 for a perfectly reversed one."""
    _check(quality, target)
    return (1 - _pearson(quality, target.to(quality.dtype))) / 2


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks with ties averaged, up to a constant (all that Pearson needs): #smaller + #equal / 2."""
    return (x[None, :] < x[:, None]).sum(1) + 0.5 * (x[None, :] == x[:, None]).sum(1)


def srcc_loss(quality: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(1 - SRCC) / 2`` with soft ranks of the prediction: rank_i = sum_j sigmoid((z_i - z_j) / temperature)."""
    _check(quality, target)
    z = _standardize(quality)
    soft = torch.sigmoid((z[:, None] - z[None, :]) / SOFT_RANK_TEMPERATURE).sum(1)
    return (1 - _pearson(soft, _ranks(target).to(z.dtype))) / 2


@dataclass(frozen=True)
class MosLoss:
    """A MOS objective: ``fn(quality, target) -> scalar`` (both ``[B]``, higher = better), lower = better fit."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    doc: str


MOS_LOSSES: Registry[MosLoss] = Registry("loss")
for _loss in (
    MosLoss("fidelity", fidelity_loss, "pairwise fidelity (Thurstone) over all pairs of a batch"),
    MosLoss("plcc", plcc_loss, "(1 - PLCC) / 2"),
    MosLoss("srcc", srcc_loss, "(1 - SRCC) / 2 with soft ranks"),
):
    MOS_LOSSES.register(_loss)


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The function of MOS objective ``name``."""
    return MOS_LOSSES.get(name).fn

