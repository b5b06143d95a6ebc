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
    plain = correlations(pred, label, True, True)
    assert {k: s[k] for k in plain} == plain  # existing keys unchanged
    types = np.array([r["dist_type"] for r in rows])
    for t in ("t0", "t1", "t2"):  # per distortion type: the same correlations on its pairs, with intervals
        keep = types == t
        assert s["by_type"][t]["n"] == 48
        assert s["by_type"][t]["srcc"] == pytest.approx(correlations(pred[keep], label[keep], True, True)["srcc"])
        for key in ("srcc", "plcc", "krcc"):
            lo, hi = s["by_type"][t][f"{key}_ci"]
            assert lo <= s["by_type"][t][key] <= hi and hi - lo > 0.01
    assert s["srcc_ci"] == correlation_intervals(pred, label, ids, True, True)["srcc_ci"]
    for key in ("srcc", "krcc", "plcc", "plcc_fit"):
        lo, hi = s[f"{key}_ci"]
        assert lo < s[key] < hi
    assert s["ci_method"] == ("reference-clustered percentile bootstrap, 1000 resamples, seed 0, 95 % intervals "
                               "(extended to hold the estimate)")
    table = summary_table(summary, "demo")
    assert f"| l2 | {s['plcc']:.4f} [{s['plcc_ci'][0]:.3f}, {s['plcc_ci'][1]:.3f}] |" in table
    assert "[lo, hi]: reference-clustered percentile bootstrap" in table
    t1 = s["by_type"]["t1"]
    assert "#### SRCC by distortion type" in table and "#### KRCC by distortion type" in table
    assert f"| t1 | {t1['srcc']:.4f} [{t1['srcc_ci'][0]:.3f}, {t1['srcc_ci'][1]:.3f}] |" in table


def test_resamples_argument_and_single_reference():
    rows = _rows()
    assert "srcc_ci" not in summarize(rows, {"l2": True}, True, n_resamples=0)["l2"]
    one_ref = [r | {"ref_id": "only"} for r in rows]
    s = summarize(one_ref, {"l2": True}, True)["l2"]
    assert s["srcc_ci"] is None and "at least 2" in s["ci_error"]
    assert s["srcc"] == pytest.approx(summarize(rows, {"l2": True}, True)["l2"]["srcc"])
    table = summary_table({"l2": s}, "one reference")
    assert "| l2 | " + f"{s['plcc']:.4f} |" in table
    assert "[lo, hi]" not in table and f"No intervals for l2: {s['ci_error']}." in table  # said, not a NaN footnote


def test_summary_json_is_strict_json(tmp_path):
    """NaN is not JSON: undefined values (a constant prediction's correlations, missing intervals) are null."""
    import json

    from zsiqa.reporting.summary import write_summary

    rows = [r | {"ref_id": "only", "flat": "1.0"} for r in _rows()]
    summary = summarize(rows, {"l2": True, "flat": True}, True)
    assert math.isnan(summary["flat"]["srcc"])
    write_summary(tmp_path, summary, {"data": {"name": "demo"}}, {"n_items": len(rows)})

    def refuse(token):
        raise AssertionError(f"summary.json holds {token}")

    saved = json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    assert saved["metrics"]["flat"]["srcc"] is None and saved["metrics"]["l2"]["srcc_ci"] is None
    assert saved["metrics"]["l2"]["srcc"] == pytest.approx(summary["l2"]["srcc"])
    assert "| flat | – |" in summary_table(saved["metrics"], "read back")


def test_an_interval_always_holds_its_estimate():
    from zsiqa.stats.bootstrap import interval_with_estimate, percentile_interval

    samples = np.linspace(0.9699, 0.9776, 1000)  # the whole bootstrap distribution above the estimate (issue 21)
    assert percentile_interval(samples)[0] > 0.9691
    lo, hi = interval_with_estimate(samples, 0.9691)
    assert lo == 0.9691 and hi == pytest.approx(np.quantile(samples, 0.975))
    assert interval_with_estimate(samples, 0.972) == percentile_interval(samples)  # inside: unchanged
    assert interval_with_estimate(samples, float("nan")) == percentile_interval(samples)


def test_hardest_pairs_are_those_ranked_farthest_from_their_label(tmp_path):
    from PIL import Image

    from zsiqa.reporting.summary import hardest_pairs, hardest_pairs_plot

    for name in ("r.png", "d.png"):
        Image.new("RGB", (40, 30), "gray").save(tmp_path / name)
    # label: lower = better (1 best); l2 agrees except that the pair labelled 1 gets the worst score
    rows = [{"index": i, "label": float(i + 1), "l2": str(float(i + 1)), "dist_type": "t",
             "ref": str(tmp_path / "r.png"), "dis": str(tmp_path / "d.png")} for i in range(10)]
    rows[0]["l2"] = "99.0"
    worst = hardest_pairs(rows, "l2", True, True, n=2)
    assert (worst[0]["index"], worst[0]["label_rank"], worst[0]["pred_rank"]) == (0, 1.0, 10.0)
    assert worst[1]["pred_rank"] - worst[1]["label_rank"] == -1.0
    assert hardest_pairs(rows, "l2", False, True, n=1)[0]["index"] in (1, 9)  # l2 read the wrong way round
    assert hardest_pairs_plot(worst, "l2", 10, "MOS", tmp_path / "h.png").stat().st_size > 5_000
