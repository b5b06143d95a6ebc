"""Correlations against scipy, sign conventions, the logistic fit, and exact de-duplicated gathering across processes."""
import datetime
import importlib
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy import stats

from zsiqa.stats import IndexedScores, correlations, fit_logistic, logistic4

# The package re-exports the function under the submodule's name, so fetch the module itself.
correlations_module = importlib.import_module("zsiqa.stats.correlations")


def _noisy_pair(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    quality = rng.uniform(0, 10, n)
    return quality, quality + rng.normal(0, 2, n)


def test_matches_scipy_on_random_data():
    rng = np.random.default_rng(1)
    pred, label = rng.normal(size=50), rng.normal(size=50)
    r = correlations(pred, label, pred_lower_better=True, label_lower_better=True)
    assert r["srcc"] == pytest.approx(stats.spearmanr(pred, label).statistic, abs=1e-12)
    assert r["krcc"] == pytest.approx(stats.kendalltau(pred, label).statistic, abs=1e-12)
    assert r["plcc"] == pytest.approx(stats.pearsonr(pred, label).statistic, abs=1e-12)
    assert r["n"] == 50


def test_kendall_is_tau_b_with_ties():
    pred = np.array([1, 1, 2, 3, 3, 4, 5, 5.0])
    label = np.array([1, 2, 2, 3, 4, 4, 4, 6.0])
    r = correlations(pred, label, True, True)
    assert r["krcc"] == pytest.approx(stats.kendalltau(pred, label, variant="b").statistic, abs=1e-12)
    assert r["krcc"] != pytest.approx(stats.kendalltau(pred, label, variant="c").statistic, abs=1e-6)


@pytest.mark.parametrize("pred_lower_better", [True, False])
@pytest.mark.parametrize("label_lower_better", [True, False])
def test_good_metric_is_positive_in_every_direction_combination(pred_lower_better, label_lower_better):
    quality, noisy = _noisy_pair()
    reference = correlations(noisy, quality, False, False)
    assert reference["srcc"] > 0.5
    # Express the same information in the requested directions: lower-better values are negated quality.
    pred = -noisy if pred_lower_better else noisy
    label = -quality if label_lower_better else quality
    r = correlations(pred, label, pred_lower_better, label_lower_better)
    for key in ("srcc", "krcc", "plcc", "plcc_fit"):
        assert r[key] == pytest.approx(reference[key], abs=1e-9)


def test_wrong_direction_stays_negative():
    quality, noisy = _noisy_pair()
    r = correlations(noisy, quality, pred_lower_better=True, label_lower_better=False)  # declared the wrong way
    assert r["srcc"] < -0.5 and r["plcc"] < -0.5 and r["plcc_fit"] < -0.5


def test_logistic_fit_recovers_known_parameters():
    rng = np.random.default_rng(2)
    true = np.array([80.0, 10.0, 0.4, 0.15])
    x = rng.uniform(-0.5, 1.3, 400)
    y = logistic4(x, *true) + rng.normal(0, 0.2, x.size)
    np.testing.assert_allclose(fit_logistic(x, y), true, rtol=0.02)
    r = correlations(x, y, True, True)
    assert r["fit_ok"]
    assert r["rmse_fit"] == pytest.approx(0.2, rel=0.15)
    assert r["plcc_fit"] > r["plcc"]


def test_logistic4_formula():
    assert logistic4(np.array([0.3]), 5.0, 1.0, 0.3, -2.0)[0] == pytest.approx(3.0)  # midpoint, |b4| used
    assert logistic4(np.array([1.0]), 1.0, 0.0, 0.0, 1.0)[0] == pytest.approx(1 / (1 + np.exp(-1.0)))


def test_fit_failure_is_reported_not_raised(monkeypatch):
    monkeypatch.setattr(correlations_module, "MAXFEV", 1)
    quality, noisy = _noisy_pair()
    r = correlations(noisy, quality, False, False)
    assert r["fit_ok"] is False
    assert np.isnan(r["plcc_fit"]) and np.isnan(r["rmse_fit"])
    assert r["srcc"] > 0.5


def test_non_finite_prediction_names_count_and_indices():
    pred = np.arange(10.0)
    pred[[2, 7]] = [np.nan, np.inf]
    with pytest.raises(ValueError, match=r"pred has 2 non-finite .* \[2, 7\]"):
        correlations(pred, np.arange(10.0), True, True)


def test_too_few_items_and_length_mismatch_raise():
    with pytest.raises(ValueError, match="at least 3"):
        correlations([1.0, 2.0], [1.0, 2.0], True, True)
    with pytest.raises(ValueError, match="same length"):
        correlations([1.0, 2.0, 3.0], [1.0, 2.0], True, True)


def test_srcc_by_type():
    quality, noisy = _noisy_pair(n=60)
    types = np.array(["blur", "jpeg", "noise"] * 20)
    r = correlations(noisy, quality, False, False, types=list(types))
    assert sorted(r["srcc_by_type"]) == ["blur", "jpeg", "noise"]
    for t in ("blur", "jpeg", "noise"):
        expected = stats.spearmanr(noisy[types == t], quality[types == t]).statistic
        assert r["srcc_by_type"][t] == pytest.approx(expected, abs=1e-12)
    small = correlations(noisy[:5], quality[:5], False, False, types=["a", "a", "a", "b", "b"])
    assert np.isnan(small["srcc_by_type"]["b"])


def test_indexed_scores_deduplicates_and_sorts():
    m = IndexedScores()
    m.update(torch.tensor([4, 1, 3]), torch.tensor([0.4, 0.1, 0.3]), torch.tensor([4.0, 1.0, 3.0]),
             torch.tensor([[4.0, 40.0], [1.0, 10.0], [3.0, 30.0]]))
    m.update(torch.tensor([0, 2, 4]), torch.tensor([0.0, 0.2, 0.4]), torch.tensor([0.0, 2.0, 4.0]),
             torch.tensor([[0.0, 0.0], [2.0, 20.0], [4.0, 40.0]]))
    out = m.compute()
    np.testing.assert_array_equal(out["index"], [0, 1, 2, 3, 4])
    np.testing.assert_allclose(out["score"], [0.0, 0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(out["label"], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(out["terms"][:, 1], [0, 10, 20, 30, 40])
    assert out["duplicates"] == 1


def test_indexed_scores_rejects_bad_input():
    m = IndexedScores()
    with pytest.raises(ValueError, match="integer"):
        m.update(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="score must have shape"):
        m.update(torch.tensor([0, 1]), torch.tensor([1.0]), torch.tensor([1.0, 2.0]))
    m.update(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]), torch.ones(2, 3))
    with pytest.raises(ValueError, match="every update or on none"):
        m.update(torch.tensor([2]), torch.tensor([1.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="width changed"):
        m.update(torch.tensor([2]), torch.tensor([1.0]), torch.tensor([1.0]), torch.ones(1, 2))
    m.update(torch.tensor([0]), torch.tensor([1.0]), torch.tensor([9.0]), torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"different labels at indices \[0\]"):
        m.compute()


# ---- 2-process gloo DDP: the gathered, de-duplicated result equals the 1-process result ----

N = 9


def _rows(indices: list[int]) -> tuple[torch.Tensor, ...]:
    i = torch.tensor(indices)
    return i, torch.sin(i.double()) + 0.01 * i, (i * 7 % 5).double() + 0.5 * i, torch.stack([i * 1.0, -i * 2.0], 1)


def _update_in_batches(m: IndexedScores, indices: list[int], batch: int = 2) -> None:
    for k in range(0, len(indices), batch):
        m.update(*_rows(indices[k:k + batch]))


# Scenario -> per-rank shards. "uneven": 5 vs 3 rows, rank 1 padded with a repeat of sample 0 (as DistributedSampler
# does); "empty_rank": rank 1 sees nothing (an unrepeated sampler with fewer samples than ranks).
SHARDS = {"uneven": ([0, 1, 2, 3, 4], [5, 6, 7, 8, 0]), "empty_rank": (list(range(N)), [])}


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    try:
        for scenario, shards in SHARDS.items():
            m = IndexedScores()
            _update_in_batches(m, shards[rank][::-1] if rank else shards[rank])
            torch.save(m.compute(), Path(out_dir) / f"{scenario}_{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_equals_single_process():
    single = IndexedScores()
    _update_in_batches(single, [3, 8, 1, 0, 5, 2, 7, 4, 6], batch=4)
    expected = single.compute()
    with tempfile.TemporaryDirectory() as tmp:
        # fork: children inherit the imports (spawn re-imports torchmetrics, about 5 s per process).
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        mp.start_processes(_ddp_worker, args=(2, str(Path(tmp) / "init"), tmp), nprocs=2, start_method=method)
        for scenario in SHARDS:
            for rank in range(2):
                got = torch.load(Path(tmp) / f"{scenario}_{rank}.pt", weights_only=False)
                for key in ("index", "score", "label", "terms"):
                    np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{scenario} rank {rank} {key}")
                assert got["duplicates"] == (1 if scenario == "uneven" else 0)
                assert correlations(got["score"], got["label"], True, True) == correlations(
                    expected["score"], expected["label"], True, True
                )


def test_three_items_give_correlations_without_a_logistic_fit():
    out = correlations([1.0, 2.0, 3.5], [1.0, 2.0, 3.0], pred_lower_better=True, label_lower_better=True)
    assert out["srcc"] == pytest.approx(1.0) and out["fit_ok"] is False and math.isnan(out["plcc_fit"])
