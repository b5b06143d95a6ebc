"""Statistics over per-pair scores: correlations (plain functions), reference-clustered bootstrap intervals and
paired tests, metric comparison (``zsiqa.stats.compare``), the device-exact score collector and ``FRScore`` (a zsiqa
metric as a torchmetrics Metric)."""
from zsiqa.stats.bootstrap import (
    ReferenceBootstrap,
    correlation_intervals,
    paired_p_value,
    percentile_interval,
)
from zsiqa.stats.correlations import correlations, fit_logistic, logistic4
from zsiqa.stats.fr_score import FRScore
from zsiqa.stats.indexed_scores import IndexedScores

__all__ = [
    "FRScore", "IndexedScores", "ReferenceBootstrap", "correlation_intervals", "correlations", "fit_logistic", "logistic4",
    "paired_p_value", "percentile_interval",
]
