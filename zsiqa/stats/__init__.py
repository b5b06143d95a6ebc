"""Statistics over per-pair scores: correlations (plain functions), reference-clustered bootstrap intervals and
paired tests, metric comparison (``zsiqa.stats.compare``), and the device-exact score collectors."""
from zsiqa.stats.bootstrap import (
    ReferenceBootstrap,
    correlation_intervals,
    paired_p_value,
    percentile_interval,
)
from zsiqa.stats.correlations import correlations, fit_logistic, logistic4
from zsiqa.stats.indexed_scores import IndexedScores

__all__ = [
    "IndexedScores", "ReferenceBootstrap", "correlation_intervals", "correlations", "fit_logistic", "logistic4",
    "paired_p_value", "percentile_interval",
]
