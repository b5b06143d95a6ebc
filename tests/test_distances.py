"""Distance heads: hand-computed values, a literal re-implementation of the official ZS-IQA code, invariances."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zsiqa.distances import get_distance, list_distances

WINDOW_HEADS = ["l2", "cos", "cos_channel", "skld", "jsd", "wsd", "swd", "swd_fixed"]
TERM_HEADS = ["l2", "cos", "cos_channel"]


def fn(name):
    return get_distance(name).fn


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def token_feats(m=5, layers=3, t=17, c=16, seed=0):
    ref = [randn(m, t, c, seed=seed + i) for i in range(layers)]
    dis = [r + 0.4 * randn(*r.shape, seed=seed + 100 + i) for i, r in enumerate(ref)]
    return ref, dis


def map_feats(m=5, seed=0):
    shapes = [(16, 7, 7), (12, 14, 14), (8, 5, 3)]
    ref = [randn(m, *s, seed=seed + i) for i, s in enumerate(shapes)]
    dis = [r + 0.4 * randn(*r.shape, seed=seed + 100 + i) for i, r in enumerate(ref)]
    return ref, dis


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


# ---------------------------------------------------------------- literal re-implementation of the official code


def vit_like(t, seed, m=1):
    """[M, 12, T, 768] residual-stream-like features: growing scale with depth, a few outlier channels."""
    x = randn(m, 12, t, 768, seed=seed) * torch.linspace(0.5, 3.0, 12, dtype=torch.float64).view(1, 12, 1, 1)
    x[..., 7] *= 20
    return x


def literal_pad(x):
    window = 8
    row_padding = round(x.size(2) / window) * window - x.size(2)
    column_padding = round(x.size(3) / window) * window - x.size(3)
    return nn.ZeroPad2d((column_padding, 0, 0, row_padding))(x)


def literal_1d(x, win=8):
    chn_num = x.shape[1]
    patch = torch.reshape(x, [win, win, chn_num, -1])
    patch_num = (x.shape[2] // win) * (x.shape[3] // win)
    return torch.reshape(patch, [-1, chn_num * patch_num])


def literal_weight(z):
    return 1 / (torch.sqrt(torch.exp(-1 / (z + 10))) * (z + 10) ** 2)


def literal_pq(x, y):
    p = torch.clamp(F.softmax(x, dim=0) + 1e-10, min=1e-10)
    q = torch.clamp(F.softmax(y, dim=0) + 1e-10, min=1e-10)
    return p, q


def literal_skld(fd, fr):
    x, y = literal_1d(literal_pad(fd)), literal_1d(literal_pad(fr))
    p, q = literal_pq(x, y)
    kl = nn.KLDivLoss(reduction="none")
    part1, part2 = kl(torch.log(q), p).sum(dim=0), kl(torch.log(p), q).sum(dim=0)
    part1[part1 == float("inf")] = 0
    part2[part2 == float("inf")] = 0
    kld = (part1 + part2) / 2
    final = (kld + ((x - y) ** 2).sum(dim=0) * literal_weight(kld)).mean()
    return torch.log(final + 1) ** 0.25


def literal_jsd(fd, fr):
    x, y = literal_1d(literal_pad(fd)), literal_1d(literal_pad(fr))
    p, q = literal_pq(x, y)
    kl = nn.KLDivLoss(reduction="none")
    log_mean = ((p + q) / 2 + 1e-17).log()
    part1, part2 = kl(log_mean, p).sum(dim=0), kl(log_mean, q).sum(dim=0)
    part1[part1 == float("inf")] = 0
    part2[part2 == float("inf")] = 0
    final = ((part1 + part2) / 2).mean()
    return torch.log(final + 1) ** 0.25


def literal_wsd(fd, fr):
    x, y = literal_1d(literal_pad(fd)).float(), literal_1d(literal_pad(fr)).float()
    px, py = F.softmax(x, dim=-1), F.softmax(y, dim=-1)
    # POT wasserstein_1d at positions 0..63, p=1 (the cumsum form derived in the spec)
    w = (torch.cumsum(px, 0) - torch.cumsum(py, 0)).abs()[:63].sum(0)
    final = (w + ((x - y) ** 2).sum(dim=0) * literal_weight(w)).mean()
    return torch.log(final + 1) ** 0.25


def literal_l2(fd, fr):
    return np.sum([((fd[:, i] - fr[:, i]) ** 2).mean().item() for i in range(fr.shape[1])])


def literal_cos(fd, fr):
    return np.sum([(1 - F.cosine_similarity(fd[:, i], fr[:, i], dim=-1)).mean().item() for i in range(fr.shape[1])])


def literal_swd(fd, fr):
    b, dim, h, w = fr.shape
    fd, fr = fd.view(b, dim, h * w).float(), fr.view(b, dim, h * w).float()
    directions = torch.randn(dim, dim)
    directions = directions / torch.sqrt(torch.sum(directions**2, dim=1, keepdim=True))
    sd = torch.sort(torch.einsum("bdn,md->bmn", fd, directions), dim=2)[0]
    sr = torch.sort(torch.einsum("bdn,md->bmn", fr, directions), dim=2)[0]
    return np.sum(((sd - sr) ** 2).mean(dim=1).numpy()[0])


LITERAL = {"skld": literal_skld, "jsd": literal_jsd, "wsd": literal_wsd, "l2": literal_l2, "cos": literal_cos}


@pytest.mark.parametrize(
    "tokens, dtype",
    [
        (197, torch.float64),  # DINO / ImageNet-ViT: 3 zero tokens appended per layer
        (50, torch.float64),  # CLIP B/32: the last 2 tokens cropped
        (50, torch.float32),
        pytest.param(257, torch.float32, marks=pytest.mark.slow),  # DINOv2: the last token cropped
        pytest.param(197, torch.float32, marks=pytest.mark.slow),
    ],
)
def test_heads_match_literal_official_code_on_vit_sized_features(tokens, dtype):
    ref = vit_like(tokens, seed=1).to(dtype)  # [1, 12, T, 768], as the official code holds one window
    dis = ref + 0.5 * vit_like(tokens, seed=2).to(dtype)
    ref_list, dis_list = list(ref.unbind(1)), list(dis.unbind(1))  # [M=1, T, 768] per layer
    for name, literal in LITERAL.items():
        assert fn(name)(ref_list, dis_list).item() == pytest.approx(float(literal(dis, ref)), rel=1e-6), name


def test_swd_matches_literal_official_code_over_two_windows_in_order():
    ref = vit_like(50, seed=1, m=2).float()
    dis = ref + 0.5 * vit_like(50, seed=2, m=2).float()
    torch.manual_seed(0)
    got = fn("swd")(list(ref.unbind(1)), list(dis.unbind(1)))
    torch.manual_seed(0)  # the official run: seed 0 once, then one draw per window
    expected = [float(literal_swd(dis[m : m + 1], ref[m : m + 1])) for m in range(2)]
    assert got.tolist() == pytest.approx(expected, rel=1e-5)


def test_literal_padding_rule():
    # the cases the paper meets: 50 -> 48 (crop), 197 -> 200 (zero-pad), 257 -> 256 (crop); 768 channels unchanged
    for t, expected in [(50, 48), (197, 200), (257, 256)]:
        assert literal_pad(torch.zeros(1, 12, t, 768)).shape == (1, 12, expected, 768)


@pytest.mark.parametrize("name", ["skld", "jsd", "wsd"])
def test_cropped_tokens_and_channels_never_reach_the_distribution_heads(name):
    # T=50 -> 48 drops the last 2 tokens; T=197 -> 200 keeps them all; C=20 -> 16 drops the FIRST 4 channels
    for t, c, token, channel, ignored in [(50, 16, -1, 0, True), (197, 16, -1, 0, False), (16, 20, 0, 3, True)]:
        ref, dis = token_feats(m=1, layers=2, t=t, c=c)
        changed = [d.clone() for d in dis]
        changed[0][:, token, channel] += 5
        assert (fn(name)(ref, dis) == fn(name)(ref, changed)).item() == ignored, (t, c)


def test_literal_cos_on_maps_with_guard():
    ref, dis = map_feats(m=1)
    expected = 0.0
    for r, d in zip(ref, dis):
        sim = 1 - F.cosine_similarity(d, r, dim=-1)
        sim[torch.isinf(sim)] = 0.0
        expected += sim.nanmean().item()
    assert fn("cos")(ref, dis).item() == pytest.approx(expected, rel=1e-10)
    assert fn("l2")(ref, dis).item() == pytest.approx(sum(((d - r) ** 2).mean().item() for r, d in zip(ref, dis)))


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


# ---------------------------------------------------------------- fused heads (several heads, one pass)

FUSED_MIX = ["l2", "cos", "cos_channel", "skld", "jsd", "wsd", "swd_fixed"]


def one_ref_many_dis(layout, n, dtype, windows=3):
    """One reference's ``windows`` windows and ``n`` distorted images of those windows (image-major)."""
    ref, _ = token_feats(m=windows, layers=3, t=37, c=20) if layout == "tokens" else map_feats(m=windows)
    dis = [torch.cat([r + (0.2 + 0.3 * i) * randn(*r.shape, seed=50 + 7 * i + j) for i in range(n)])
           for j, r in enumerate(ref)]
    return [r.to(dtype) for r in ref], [d.to(dtype) for d in dis]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("layout", ["tokens", "maps"])
def test_fused_heads_equal_each_head_alone(layout, n, dtype):
    from zsiqa.distances.fused import window_scores

    ref, dis = one_ref_many_dis(layout, n, dtype)
    fused = window_scores([get_distance(x) for x in FUSED_MIX], ref, dis)
    repeated = [r.repeat(n, *([1] * (r.ndim - 1))) for r in ref]
    for name in FUSED_MIX:
        # The fused pass works window by window: so does the head here. Below fp32 the heads alone are not
        # batch-invariant themselves (softmax kernels round differently for other batch shapes), so only window by
        # window is the comparison exact there; in fp32 and fp64 the batched head agrees too.
        alone = torch.cat([fn(name)([r[m : m + 1] for r in repeated], [d[m : m + 1] for d in dis]) for m in range(3 * n)])
        assert fused[name].dtype == alone.dtype and fused[name].shape == (3 * n,)
        torch.testing.assert_close(fused[name], alone, rtol=1e-6, atol=0, msg=name)
        if dtype in (torch.float32, torch.float64):
            torch.testing.assert_close(fused[name], fn(name)(repeated, dis), rtol=1e-6, atol=0, msg=name)


def test_fused_l2_and_cos_of_whole_image_maps_are_bit_equal_to_the_batched_heads():
    """Whole-image maps give one window per image; PyTorch sums a lone long output row in parallel halves, so the
    fused pass never reduces one image's row alone (it did: l2 was 2e-7 off on the demo set)."""
    from zsiqa.distances.fused import window_scores

    ref = [randn(1, 16, 144, 144, seed=1, dtype=torch.float32), randn(1, 24, 72, 72, seed=2, dtype=torch.float32)]
    dis = [torch.cat([r + 0.1 * randn(*r.shape, seed=10 + i, dtype=torch.float32) for i in range(3)]) for r in ref]
    fused = window_scores([get_distance(x) for x in ("l2", "cos", "cos_channel")], ref, dis)
    for name in ("l2", "cos", "cos_channel"):
        assert torch.equal(fused[name], fn(name)([r.repeat(3, 1, 1, 1) for r in ref], dis)), name


def test_fused_heads_keep_swd_draws_in_window_order():
    from zsiqa.distances.fused import window_scores

    ref, dis = one_ref_many_dis("tokens", 3, torch.float32)
    torch.manual_seed(0)
    fused = window_scores([get_distance(x) for x in ("skld", "swd", "l2")], ref, dis)
    torch.manual_seed(0)
    alone = fn("swd")([r.repeat(3, 1, 1) for r in ref], dis)
    assert torch.equal(fused["swd"], alone)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("step_windows", [1, 3, 64])
def test_fused_heads_are_bit_equal_to_the_heads_whatever_their_step_and_column_blocks(monkeypatch, step_windows, dtype):
    """One image per step, 3 (steps of 3 and 2 images) or all; 64-column blocks (160 columns: 64, 64, 32) or the
    default: the heads' scores bit for bit. (Blocks narrower than 32 columns are summed with other roundings.)"""
    from zsiqa.distances import fused

    ref = [randn(3, 40, 64, seed=i, dtype=dtype) for i in range(4)]
    dis = [torch.cat([r + (0.2 + 0.3 * k) * randn(*r.shape, seed=50 + 7 * k + j, dtype=dtype) for k in range(5)])
           for j, r in enumerate(ref)]
    names = ("l2", "cos", "skld", "jsd", "wsd")
    monkeypatch.setattr(fused, "HEAD_BYTES", step_windows * sum(r[0].numel() * r.element_size() for r in ref))
    repeated = [r.repeat(5, 1, 1) for r in ref]
    alone = {name: torch.cat([fn(name)([r[m : m + 1] for r in repeated], [d[m : m + 1] for d in dis]) for m in range(15)])
             for name in names}
    alone["l2"] = fn("l2")(repeated, dis)  # l2 alone on a lone window sums its row in parallel halves: batched instead
    for elements in (1, fused.BLOCK_ELEMENTS):
        monkeypatch.setattr(fused, "BLOCK_ELEMENTS", elements)
        got = fused.window_scores([get_distance(x) for x in names], ref, dis)
        for name in names:
            assert torch.equal(got[name], alone[name]), (name, elements)


def test_fused_path_only_for_heads_that_declare_a_kernel():
    from zsiqa.distances import DistanceHead
    from zsiqa.distances.fused import is_fused, window_scores

    def triple_l2(ref, dis):
        return 3 * fn("l2")(ref, dis)

    custom = DistanceHead("l2", triple_l2)  # the same name, no declared kernel: its own fn runs
    assert is_fused(get_distance("l2")) and not is_fused(custom) and not is_fused(get_distance("swd_fixed"))
    ref, dis = one_ref_many_dis("tokens", 2, torch.float64)
    got = window_scores([custom], ref, dis)["l2"]
    torch.testing.assert_close(got, 3 * fn("l2")([r.repeat(2, 1, 1) for r in ref], dis))
    renamed = DistanceHead("my_l2", triple_l2, fused="l2")  # a head declaring a kernel gets that kernel's scores
    torch.testing.assert_close(window_scores([renamed], ref, dis)["my_l2"], fn("l2")([r.repeat(2, 1, 1) for r in ref], dis))
    with pytest.raises(ValueError, match="unknown fused kernel 'l3'; choose one of l2, cos"):
        is_fused(DistanceHead("x", triple_l2, fused="l3"))
    with pytest.raises(ValueError, match="not a whole number of images"):
        window_scores([get_distance("l2")], ref, [d[:5] for d in dis])


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
