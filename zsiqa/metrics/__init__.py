"""Evaluation metrics: correlations (plain functions) and the device-exact score collector."""
from zsiqa.metrics.correlations import correlations, fit_logistic, logistic4
from zsiqa.metrics.torchmetric import IndexedScores

__all__ = ["IndexedScores", "correlations", "fit_logistic", "logistic4"]
