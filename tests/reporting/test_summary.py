"""Run summaries: correlations with reference-bootstrap intervals, the Markdown table, failed pairs."""
import math
import time

import numpy as np
import pytest

from zsiqa.reporting.summary import summarize, summary_table
from zsiqa.stats import correlation_intervals, correlations


def _rows(n_refs: int = 6, per_ref: int = 24, seed: int = 0) -> list[dict]:
    """Demo-shaped rows (144 pairs, 6 references): a distance (lower better) against a severity (lower better)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_refs * per_ref):
        level = 1 + i % 4
        rows.append({"index": i, "ref_id": f"photo{i // per_ref}", "dist_type": f"t{i % 3}", "label": float(level),
                     "l2": level + rng.normal(0, 1.0), "psnr": 40 - 5 * level + rng.normal(0, 3.0)})
    return rows


def test_summary_keeps_its_keys_and_adds_intervals():
    rows = _rows()
    start = time.perf_counter()
    summary = summarize(rows, {"l2": True, "psnr": False}, label_lower_better=True)
    print(f"summarize, 2 metrics x 144 pairs, 1000 resamples: {time.perf_counter() - start:.2f} s")
    pred = np.array([r["l2"] for r in rows])
    label = np.array([r["label"] for r in rows])
    ids = [r["ref_id"] for r in rows]
    s = summary["l2"]
    plain = correlations(pred, label, True, True, types=[r["dist_type"] for r in rows])
    assert {k: s[k] for k in plain} == plain  # existing keys unchanged
    assert s["srcc_ci"] == correlation_intervals(pred, label, ids, True, True)["srcc_ci"]
    for key in ("srcc", "krcc", "plcc", "plcc_fit"):
        lo, hi = s[f"{key}_ci"]
        assert lo < s[key] < hi
    assert s["ci_method"] == "reference-clustered percentile bootstrap, 1000 resamples, seed 0, 95 % intervals"
    table = summary_table(summary, "demo")
    assert f"| l2 | {s['plcc']:.4f} [{s['plcc_ci'][0]:.3f}, {s['plcc_ci'][1]:.3f}] |" in table
    assert "[lo, hi]: reference-clustered percentile bootstrap" in table


def test_resamples_argument_and_single_reference():
    rows = _rows()
    assert "srcc_ci" not in summarize(rows, {"l2": True}, True, n_resamples=0)["l2"]
    one_ref = [r | {"ref_id": "only"} for r in rows]
    s = summarize(one_ref, {"l2": True}, True)["l2"]
    assert all(math.isnan(v) for v in s["srcc_ci"]) and "at least 2" in s["ci_error"]
    assert s["srcc"] == pytest.approx(summarize(rows, {"l2": True}, True)["l2"]["srcc"])
    assert "| l2 | " + f"{s['plcc']:.4f} |" in summary_table({"l2": s}, "one reference")
