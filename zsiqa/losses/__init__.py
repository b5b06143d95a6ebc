"""Losses: a zero-shot metric as a differentiable image loss and DeepSSIM-Lite (``perceptual``), and the MOS
objectives that fit learned weights to subjective scores (``mos``)."""
from .mos import MOS_LOSSES, fidelity_loss, get_loss, plcc_loss, srcc_loss
from .perceptual import DeepSSIMLoss, PerceptualLoss

__all__ = ["DeepSSIMLoss", "MOS_LOSSES", "PerceptualLoss", "fidelity_loss", "get_loss",
           "plcc_loss", "srcc_loss"]
