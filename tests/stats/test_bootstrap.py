"""Reference-clustered bootstrap: exact statistics of resamples with repeats, seeding, width and coverage, paired tests."""
import numpy as np
import pytest
from scipy import stats

from zsiqa.errors import InputError
from zsiqa.stats import (
    ReferenceBootstrap,
    correlation_intervals,
    paired_p_value,
    percentile_interval,
)


def _clustered(seed: int, n_refs: int, per_ref: int, ref_effect: float = 1.0) -> tuple[np.ndarray, ...]:
    """Pairs with strong per-reference effects: each reference shifts the label and, independently, the metric."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_refs), per_ref)
    label = 0.5 * rng.normal(size=n_refs)[ids] + rng.normal(size=ids.size)
    pred = label + ref_effect * rng.normal(size=n_refs)[ids] + 0.5 * rng.normal(size=ids.size)
    return ids, pred, label


def test_each_resample_equals_scipy_on_the_repeated_rows():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, 40)
    x = np.round(rng.normal(size=40), 1)  # rounded: ties inside and across references
    y = np.round(x + rng.normal(size=40), 1)
    boot = ReferenceBootstrap(ids, n_resamples=6, seed=3)
    repeats = np.concatenate(list(boot.weights())).astype(int)
    srcc, krcc, plcc = boot.srcc(x, y), boot.krcc(x, y), boot.plcc(x, y)
    for b in range(6):
        xe, ye = np.repeat(x, repeats[b]), np.repeat(y, repeats[b])
        assert srcc[b] == pytest.approx(stats.spearmanr(xe, ye).statistic, abs=1e-12)
        assert krcc[b] == pytest.approx(stats.kendalltau(xe, ye).statistic, abs=1e-12)
        assert plcc[b] == pytest.approx(stats.pearsonr(xe, ye).statistic, abs=1e-12)
    # A resample draws whole references: every pair of one reference repeats the same number of times.
    for g in range(6):
        assert (repeats[:, ids == g] == repeats[:, ids == g][:, :1]).all()
    assert (repeats.reshape(6, -1).sum(1) > 0).all()


def test_resamples_are_seeded_and_shared_across_metrics():
    ids, pred, label = _clustered(1, 10, 5)
    a = ReferenceBootstrap(ids, 300, seed=7)
    b = ReferenceBootstrap(ids, 300, seed=7)
    np.testing.assert_array_equal(a.srcc(pred, label), b.srcc(pred, label))
    assert not np.array_equal(a.srcc(pred, label), ReferenceBootstrap(ids, 300, seed=8).srcc(pred, label))
    many = a.srcc_many([pred, -pred], label)
    np.testing.assert_array_equal(many[0], a.srcc(pred, label))
    np.testing.assert_allclose(many[1], -many[0], atol=1e-12)


def test_clustered_intervals_are_wider_than_iid_and_cover_the_true_value():
    # The population SRCC, from one very large draw of the same model.
    _, pred, label = _clustered(123, 20000, 10)
    true = stats.spearmanr(pred, label).statistic
    covered = {True: 0, False: 0}
    widths = {True: [], False: []}
    draws = 60
    for seed in range(draws):
        ids, pred, label = _clustered(seed, 40, 8)
        for cluster in (True, False):
            lo, hi = percentile_interval(ReferenceBootstrap(ids, 300, seed, cluster=cluster).srcc(pred, label))
            covered[cluster] += lo <= true <= hi
            widths[cluster].append(hi - lo)
    ratio = np.mean(widths[True]) / np.mean(widths[False])
    print(f"clustered / iid width {ratio:.2f}; coverage clustered {covered[True] / draws:.2f}, "
          f"iid {covered[False] / draws:.2f}")
    assert ratio > 1.3
    assert 0.85 <= covered[True] / draws <= 1.0
    assert covered[False] / draws < covered[True] / draws - 0.1


def test_correlation_intervals_contain_the_estimates_and_follow_directions():
    ids, pred, label = _clustered(2, 12, 10)
    up = correlation_intervals(pred, label, ids, pred_lower_better=False, label_lower_better=False, n_resamples=200)
    down = correlation_intervals(-pred, label, ids, pred_lower_better=True, label_lower_better=False, n_resamples=200)
    assert up == down
    for key, value in (("srcc", stats.spearmanr(pred, label).statistic), ("krcc", stats.kendalltau(pred, label).statistic),
                       ("plcc", stats.pearsonr(pred, label).statistic)):
        lo, hi = up[f"{key}_ci"]
        assert 0 < lo < value < hi < 1
    assert up["plcc_fit_ci"][0] < up["plcc_fit_ci"][1]


def test_paired_difference_of_a_noisier_copy_is_significant():
    ids, pred, label = _clustered(3, 30, 10, ref_effect=0.3)
    noisier = pred + np.random.default_rng(9).normal(0, 1.0, pred.size)
    boot = ReferenceBootstrap(ids, 1000, seed=0)
    a, b = boot.srcc_many([pred, noisier], label)
    delta = stats.spearmanr(pred, label).statistic - stats.spearmanr(noisier, label).statistic
    lo, hi = percentile_interval(a - b)
    assert 0 < lo < delta < hi
    assert paired_p_value(delta, a - b) < 0.01


def test_monotone_transform_gives_zero_difference_and_p_one():
    ids, pred, label = _clustered(4, 15, 6)
    boot = ReferenceBootstrap(ids, 500, seed=0)
    a, b = boot.srcc_many([pred, np.exp(pred / 3) + 2], label)
    np.testing.assert_array_equal(a - b, 0.0)
    assert percentile_interval(a - b) == [0.0, 0.0]
    assert paired_p_value(0.0, a - b) == 1.0


def test_bad_input_is_named():
    with pytest.raises(InputError, match="at least 2"):
        ReferenceBootstrap(["r"] * 10)
    with pytest.raises(InputError, match="n_resamples"):
        ReferenceBootstrap(["a", "b", "c"], n_resamples=0)
    boot = ReferenceBootstrap(["a", "a", "b", "b"], 10)
    with pytest.raises(InputError, match=r"one value per pair \(4\)"):
        boot.srcc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="finite"):
        boot.plcc([1.0, np.nan, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(InputError, match="level"):
        percentile_interval(np.arange(5.0), level=95)
