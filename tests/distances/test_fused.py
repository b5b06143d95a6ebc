"""Several heads in one pass (zsiqa.distances.fused): bit-equal to each head alone."""

import pytest
import torch
from features import fn, map_feats, randn, token_feats

from zsiqa.distances import get_distance

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
