"""Distance heads: hand-computed values, invariances, term decompositions and errors."""
import math

import numpy as np
import pytest
import torch
from features import TERM_HEADS, WINDOW_HEADS, fn, map_feats, randn, token_feats

from zsiqa.distances import get_distance, list_distances

# ---------------------------------------------------------------- registry


def test_registry_lists_every_head_with_one_line_docs():
    assert set(WINDOW_HEADS + ["embed_cos"]) <= set(list_distances())
    for name in WINDOW_HEADS + ["embed_cos"]:
        head = get_distance(name)
        assert head.lower_better
        assert head.kind == ("embed" if name == "embed_cos" else "window")
        assert head.doc and "\n" not in head.doc
        assert (head.layer_terms is not None) == (name in TERM_HEADS)
        assert (head.channel_terms is not None) == (name in TERM_HEADS)


# ---------------------------------------------------------------- hand-computed values


def test_l2_hand_computed():
    ref = [torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)]
    dis = [torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]), torch.tensor([[[0.0, 0.0], [0.0, 2.0]]])]
    head = get_distance("l2")
    assert head.fn(ref, dis).tolist() == [8.5]  # (1+4+9+16)/4 + 4/4
    assert head.layer_terms(ref, dis).tolist() == [[7.5, 1.0]]
    # per channel: mean over tokens / C -> (1+9)/2/2, (4+16)/2/2 ; 0, 4/2/2
    assert [t.tolist() for t in head.channel_terms(ref, dis)] == [[[2.5, 5.0]], [[0.0, 1.0]]]

    maps_ref = [torch.zeros(1, 2, 1, 2), torch.zeros(1, 1, 2, 2)]
    maps_dis = [torch.tensor([[[[1.0, 3.0]], [[0.0, 2.0]]]]), torch.full((1, 1, 2, 2), 2.0)]
    assert head.fn(maps_ref, maps_dis).tolist() == [7.5]  # (1+9+0+4)/4 + 4
    assert head.channel_terms(maps_ref, maps_dis)[0].tolist() == [[2.5, 1.0]]


def test_cos_tokens_hand_computed():
    ref = [torch.tensor([[[1.0, 0.0], [1.0, 1.0]]]), torch.tensor([[[3.0, 4.0], [1.0, 2.0]]])]
    dis = [torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), torch.tensor([[[3.0, 4.0], [1.0, 2.0]]])]
    layer0 = (1.0 + (1 - 1 / math.sqrt(2))) / 2  # orthogonal tokens, then 45 degrees
    for name in ("cos", "cos_channel"):  # identical on tokens
        head = get_distance(name)
        assert head.fn(ref, dis).item() == pytest.approx(layer0, abs=1e-6)
        assert head.layer_terms(ref, dis)[0].tolist() == pytest.approx([layer0, 0.0], abs=1e-6)
        # unit vectors: token 0 (1,0) vs (0,1) -> (1/2, 1/2); token 1 (1,1)/sqrt2 vs (1,0)
        expected = [(0.5 + (1 - 1 / math.sqrt(2)) ** 2 / 2) / 2, (0.5 + 0.5 / 2) / 2]
        assert head.channel_terms(ref, dis)[0][0].tolist() == pytest.approx(expected, abs=1e-6)


def test_cos_maps_takes_the_width_axis_and_cos_channel_the_channel_axis():
    ref = [torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])]  # [1, C=2, H=1, W=2]
    dis = [torch.tensor([[[[1.0, 0.0]], [[1.0, 2.0]]]])]
    # width axis: channel 0 (1,0) vs (1,0) -> 0; channel 1 (0,1) vs (1,2) -> 1 - 2/sqrt5; mean over (C, H)
    width = (1 - 2 / math.sqrt(5)) / 2
    # channel axis: position 0 (1,0) vs (1,1) -> 1 - 1/sqrt2; position 1 (0,1) vs (0,2) -> 0; mean over (H, W)
    channel = (1 - 1 / math.sqrt(2)) / 2
    assert get_distance("cos").fn(ref, dis).item() == pytest.approx(width, abs=1e-7)
    assert get_distance("cos_channel").fn(ref, dis).item() == pytest.approx(channel, abs=1e-7)
    assert get_distance("cos").channel_terms(ref, dis)[0][0].tolist() == pytest.approx([0.0, width], abs=1e-7)
    expected = [(1 - 1 / math.sqrt(2)) ** 2 / 2 / 2, 0.5 / 2 / 2]
    assert get_distance("cos_channel").channel_terms(ref, dis)[0][0].tolist() == pytest.approx(expected, abs=1e-7)


def test_cos_guard_skips_nan_cosines_and_channel_terms_follow():
    ref = [torch.tensor([[[[float("nan"), 0.0]], [[0.0, 1.0]]]])]
    dis = [torch.tensor([[[[1.0, 0.0]], [[1.0, 2.0]]]])]
    head = get_distance("cos")
    assert head.fn(ref, dis).item() == pytest.approx(1 - 2 / math.sqrt(5), abs=1e-7)  # nanmean over one value
    assert head.channel_terms(ref, dis)[0].sum().item() == pytest.approx(1 - 2 / math.sqrt(5), abs=1e-7)


def test_embed_cos_hand_computed():
    head = get_distance("embed_cos")
    ref, dis = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert head.fn([ref], [dis]).tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    ref_t, dis_t = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]]), torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    assert head.fn([ref_t], [dis_t]).item() == pytest.approx((2 - 1 / math.sqrt(2)) / 2, abs=1e-7)


# numpy references written from the spec's formulas, with plain loops over columns


def np_columns(x):
    """[L, T, C] -> 64 x N/64 after round(n/8)*8 (zero tokens appended at the bottom, zero channels at the LEFT)."""
    layers, t, c = x.shape
    t2, c2 = int(round(t / 8)) * 8, int(round(c / 8)) * 8
    padded = np.zeros((layers, t2, c2))
    for li in range(layers):
        for ti in range(min(t, t2)):
            for ci in range(c2):
                src = ci - (c2 - c)  # c2 - c zero columns first (or that many leading channels dropped)
                if 0 <= src < c:
                    padded[li, ti, ci] = x[li, ti, src]
    flat = padded.ravel()
    return np.array([[flat[r * (flat.size // 64) + j] for j in range(flat.size // 64)] for r in range(64)])


def np_softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def np_weight(z):
    return math.exp(1 / (2 * (z + 10))) / (z + 10) ** 2


def np_pot_w1(pw, qw):
    """POT's wasserstein_1d (p=1) at positions 0..63 via quantile functions, for unnormalised masses."""
    pos = np.arange(64)
    cu, cv = np.cumsum(pw), np.cumsum(qw)
    qs = np.sort(np.concatenate([cu, cv]))
    uq = pos[np.clip(np.searchsorted(cu, qs), 0, 63)]
    vq = pos[np.clip(np.searchsorted(cv, qs), 0, 63)]
    return float(np.sum(np.diff(np.concatenate([[0.0], qs])) * np.abs(uq - vq)))


def np_final(xr, xd, kind):
    """The pre-squash value of one window: xr, xd are [L, T, C] numpy arrays."""
    mr, md = np_columns(xr), np_columns(xd)
    wr, wd = np.stack([np_softmax(row) for row in mr]), np.stack([np_softmax(row) for row in md])
    values = []
    for j in range(mr.shape[1]):
        p = np.maximum(np_softmax(md[:, j]) + 1e-10, 1e-10)
        q = np.maximum(np_softmax(mr[:, j]) + 1e-10, 1e-10)
        l2 = float(np.sum((md[:, j] - mr[:, j]) ** 2))
        if kind == "skld":
            kld = (np.sum(p * np.log(p / q)) + np.sum(q * np.log(q / p))) / 2
            values.append(kld + np_weight(kld) * l2)
        elif kind == "jsd":
            a = (p + q) / 2 + 1e-17
            values.append((np.sum(p * np.log(p / a)) + np.sum(q * np.log(q / a))) / 2)
        else:
            w = np_pot_w1(wd[:, j], wr[:, j])
            values.append(w + np_weight(w) * l2)
    return float(np.mean(values))


def squash(v):
    return math.log(v + 1) ** 0.25


@pytest.mark.parametrize("kind", ["skld", "jsd", "wsd"])
def test_distribution_heads_tiny_tokens_match_numpy(kind):
    # T=10 -> crop to 8 tokens; C=12 -> 4 zero channels at the left; 2 layers; 2 windows
    ref = [randn(2, 10, 12, seed=i) for i in range(2)]
    dis = [r + 0.7 * randn(2, 10, 12, seed=10 + i) for i, r in enumerate(ref)]
    got = fn(kind)(ref, dis)
    for m in range(2):
        xr = np.stack([r[m].numpy() for r in ref])
        xd = np.stack([d[m].numpy() for d in dis])
        assert got[m].item() == pytest.approx(squash(np_final(xr, xd, kind)), rel=1e-10)


@pytest.mark.parametrize("kind", ["skld", "jsd", "wsd"])
def test_distribution_heads_on_maps_average_per_layer_values(kind):
    ref = [randn(2, 8, 4, 4, seed=1), randn(2, 12, 3, 5, seed=2)]  # 16 positions; 15 -> 16 (one zero token)
    dis = [r + 0.7 * randn(*r.shape, seed=20 + i) for i, r in enumerate(ref)]
    got = fn(kind)(ref, dis)
    for m in range(2):
        finals = [
            np_final(r[m].numpy().reshape(r.shape[1], -1).T[None], d[m].numpy().reshape(d.shape[1], -1).T[None], kind)
            for r, d in zip(ref, dis)
        ]
        assert got[m].item() == pytest.approx(squash(np.mean(finals)), rel=1e-10)


def np_swd(xr, xd, directions):
    """xr, xd: [dim, n]; directions [k, dim] rows of unit length."""
    k, n = directions.shape[0], xr.shape[1]
    pr = np.sort(np.array([[np.dot(directions[i], xr[:, s]) for s in range(n)] for i in range(k)]), axis=1)
    pd = np.sort(np.array([[np.dot(directions[i], xd[:, s]) for s in range(n)] for i in range(k)]), axis=1)
    return sum(np.mean([(pd[i, s] - pr[i, s]) ** 2 for i in range(k)]) for s in range(n))


def unit_rows(d):
    d = d.double().numpy()
    return d / np.sqrt((d**2).sum(1, keepdims=True))


def test_swd_hand_computed_with_directions_drawn_per_window_in_order():
    ref = [randn(2, 2, 2, seed=i) for i in range(3)]  # 3 layers = dim, n = T*C = 4
    dis = [r + randn(2, 2, 2, seed=10 + i) for i, r in enumerate(ref)]
    torch.manual_seed(0)
    got = fn("swd")(ref, dis)
    torch.manual_seed(0)
    directions = [unit_rows(torch.randn(3, 3)) for _ in range(2)]  # the paper's draw, one per window
    for m in range(2):
        xr = np.stack([r[m].numpy().ravel() for r in ref])
        xd = np.stack([d[m].numpy().ravel() for d in dis])
        assert got[m].item() == pytest.approx(np_swd(xr, xd, directions[m]), rel=1e-6)


def test_swd_fixed_hand_computed_on_tokens_and_maps():
    ref = [randn(2, 2, 2, seed=i) for i in range(3)]
    dis = [r + randn(2, 2, 2, seed=10 + i) for i, r in enumerate(ref)]
    directions = unit_rows(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))
    got = fn("swd_fixed")(ref, dis)
    for m in range(2):
        xr = np.stack([r[m].numpy().ravel() for r in ref])
        xd = np.stack([d[m].numpy().ravel() for d in dis])
        assert got[m].item() == pytest.approx(np_swd(xr, xd, directions), rel=1e-6)

    maps_ref = [randn(2, 2, 2, 3, seed=1), randn(2, 3, 2, 2, seed=2)]  # per layer: dim = C, n = H*W
    maps_dis = [r + randn(*r.shape, seed=5 + i) for i, r in enumerate(maps_ref)]
    got = fn("swd_fixed")(maps_ref, maps_dis)
    for m in range(2):
        expected = sum(
            np_swd(r[m].numpy().reshape(r.shape[1], -1), d[m].numpy().reshape(d.shape[1], -1),
                   unit_rows(torch.randn(r.shape[1], r.shape[1], generator=torch.Generator().manual_seed(0))))
            for r, d in zip(maps_ref, maps_dis)
        )
        assert got[m].item() == pytest.approx(expected, rel=1e-6)



# ---------------------------------------------------------------- invariances and term decompositions


@pytest.mark.parametrize("layout", ["tokens", "maps"])
@pytest.mark.parametrize("name", [n for n in WINDOW_HEADS if n != "swd"])
def test_batch_invariance(name, layout):
    ref, dis = token_feats() if layout == "tokens" else map_feats()
    batch = fn(name)(ref, dis)
    assert batch.shape == (5,)
    for m in range(5):
        single = fn(name)([r[m : m + 1] for r in ref], [d[m : m + 1] for d in dis])
        assert single.item() == pytest.approx(batch[m].item(), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("layout", ["tokens", "maps"])
def test_swd_is_deterministic_in_order_and_swd_fixed_in_any_order(layout):
    ref, dis = token_feats() if layout == "tokens" else map_feats()
    torch.manual_seed(0)
    batch = fn("swd")(ref, dis)
    torch.manual_seed(0)
    singles = torch.cat([fn("swd")([r[m : m + 1] for r in ref], [d[m : m + 1] for d in dis]) for m in range(5)])
    torch.testing.assert_close(singles, batch, rtol=1e-6, atol=1e-9)
    again = fn("swd")(ref, dis)  # the global RNG has moved on: new directions, new scores
    assert not torch.allclose(again, batch)
    reversed_order = fn("swd_fixed")([r.flip(0) for r in ref], [d.flip(0) for d in dis]).flip(0)
    torch.testing.assert_close(reversed_order, fn("swd_fixed")(ref, dis), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("layout", ["tokens", "maps"])
@pytest.mark.parametrize("name", WINDOW_HEADS)
def test_identical_inputs_score_zero(name, layout):
    ref, _ = token_feats() if layout == "tokens" else map_feats()
    assert fn(name)(ref, [r.clone() for r in ref]).abs().max().item() < 1e-6


def test_embed_cos_identical_zero_and_batch_invariant():
    ref, dis = randn(5, 7, 16, seed=1), randn(5, 7, 16, seed=2)
    assert fn("embed_cos")([ref], [ref.clone()]).abs().max().item() < 1e-7
    batch = fn("embed_cos")([ref], [dis])
    single = torch.cat([fn("embed_cos")([ref[m : m + 1]], [dis[m : m + 1]]) for m in range(5)])
    torch.testing.assert_close(single, batch, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("layout", ["tokens", "maps"])
@pytest.mark.parametrize("name", TERM_HEADS)
def test_layer_and_channel_terms_sum_to_the_score(name, layout):
    ref, dis = token_feats() if layout == "tokens" else map_feats()
    head = get_distance(name)
    layers = head.layer_terms(ref, dis)
    assert layers.shape == (5, len(ref))
    torch.testing.assert_close(layers.sum(1), head.fn(ref, dis))
    channels = head.channel_terms(ref, dis)
    assert [c.shape for c in channels] == [(5, r.shape[2] if layout == "tokens" else r.shape[1]) for r in ref]
    torch.testing.assert_close(torch.stack([c.sum(1) for c in channels], 1), layers)


def zeroed_feats(layout, dtype):
    """Features with all-zero vectors (ReLU over black regions): in both images, in ref only, in dis only."""
    ref, dis = token_feats(m=3) if layout == "tokens" else map_feats(m=3)
    ref, dis = [r.to(dtype) for r in ref], [d.to(dtype) for d in dis]
    for r, d in zip(ref, dis):
        # window m is [T, C] (tokens: zero two tokens) or [C, H, W] (maps: zero two rows of positions, all channels)
        pos = (slice(0, 2),) if layout == "tokens" else (slice(None), slice(0, 2))
        r[0][pos] = 0
        d[0][pos] = 0
        r[1][pos] = 0
        d[2][pos] = 0
    return ref, dis


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize("name, layout", [("cos", "tokens"), ("cos_channel", "tokens"), ("cos_channel", "maps")])
def test_channel_terms_sum_to_the_layer_term_with_zero_feature_vectors(name, layout, dtype):
    ref, dis = zeroed_feats(layout, dtype)
    head = get_distance(name)
    layers = head.layer_terms(ref, dis).double()
    channels = torch.stack([c.double().sum(1) for c in head.channel_terms(ref, dis)], 1)
    tol = {"rtol": 1e-3, "atol": 1e-4} if dtype == torch.float16 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(channels, layers, **tol)
    if dtype == torch.float64:  # zero vectors: 1 - cos = 1 (F.cosine_similarity's eps) ...
        assert (layers[:, 0] > 0.1).all()
    else:  # ... but in fp16 the eps underflows, the cosine is NaN and the guard skips those positions
        assert torch.isfinite(channels).all()


@pytest.mark.parametrize("layout", ["tokens", "maps"])
def test_channel_terms_of_all_zero_features_are_one_over_c(layout):
    ref = [torch.zeros(1, 3, 4)] if layout == "tokens" else [torch.zeros(1, 4, 2, 3)]
    one_side = [torch.ones_like(ref[0])]
    head = get_distance("cos_channel")
    for r, d in ((ref, ref), (ref, one_side), (one_side, ref)):  # 1 - cos = 1: the shares 0 or 1/2 are topped up
        assert head.layer_terms(r, d).tolist() == [[1.0]]
        assert head.channel_terms(r, d)[0].tolist() == [[0.25] * 4]


@pytest.mark.parametrize("name", ["skld", "jsd", "wsd", "swd", "swd_fixed"])
def test_maps_construction_runs_on_differently_shaped_layers(name):
    ref, dis = map_feats(m=2)
    torch.manual_seed(0)
    assert fn(name)(ref, [r.clone() for r in ref]).abs().max().item() < 1e-6
    assert (fn(name)(ref, dis) > 1e-3).all()


def test_dtypes_follow_the_paper():
    ref, dis = token_feats(m=2)
    half_ref, half_dis = [r.half() for r in ref], [d.half() for d in dis]
    assert fn("skld")(half_ref, half_dis).dtype == torch.float16  # computed in the feature dtype
    assert fn("jsd")(half_ref, half_dis).dtype == torch.float16
    assert fn("wsd")(half_ref, half_dis).dtype == torch.float32  # the paper casts to fp32
    assert fn("swd_fixed")(half_ref, half_dis).dtype == torch.float32  # the paper's .float()
    assert get_distance("l2").layer_terms(half_ref, half_dis).dtype == torch.float16
    assert fn("l2")(half_ref, half_dis).dtype == torch.float32  # per-layer values summed as Python floats
    assert fn("l2")(ref, dis).dtype == torch.float64



# ---------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors():
    ref, dis = token_feats(m=2)
    with pytest.raises(ValueError, match="layer 1"):
        fn("l2")(ref, [dis[0], dis[1][:, :5], dis[2]])
    with pytest.raises(ValueError, match="layers"):
        fn("cos")(ref, dis[:2])
    with pytest.raises(ValueError, match="mix"):
        fn("l2")([ref[0], randn(2, 3, 4, 4)], [dis[0], randn(2, 3, 4, 4)])
    with pytest.raises(ValueError, match="one shape"):
        fn("skld")([ref[0], ref[1][:, :9]], [dis[0], dis[1][:, :9]])
    with pytest.raises(ValueError, match="rounds to zero"):
        fn("jsd")([randn(1, 3, 16)], [randn(1, 3, 16)])
    for t, c in ((4, 16), (16, 4)):  # round(4/8) = 0 (half to even): 5 is the least that works
        with pytest.raises(ValueError, match="at least 5 tokens"):
            fn("skld")([randn(1, t, c)], [randn(1, t, c, seed=1)])
    assert torch.isfinite(fn("skld")([randn(1, 5, 5)], [randn(1, 5, 5, seed=1)])).all()
    with pytest.raises(ValueError, match="one embedding"):
        fn("embed_cos")(ref, dis)
    with pytest.raises(ValueError, match="lists"):
        fn("l2")(ref[0], dis[0])
