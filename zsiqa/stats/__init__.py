"""Statistics over per-pair scores: correlations (plain functions) and the device-exact score collector."""
from zsiqa.stats.correlations import correlations, fit_logistic, logistic4
from zsiqa.stats.indexed_scores import IndexedScores

__all__ = ["IndexedScores", "correlations", "fit_logistic", "logistic4"]
