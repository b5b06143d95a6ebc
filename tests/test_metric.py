import pytest
import torch
from PIL import Image

import zsiqa.metric
from zsiqa.distances import get_distance
from zsiqa.errors import InputError
from zsiqa.metric import FRMetric


def make(backbone, distance="l2", **kw):
    return FRMetric(backbone, get_distance(distance), **kw)


def test_l2_score_is_mean_over_windows_of_summed_layer_mse(tiny_backbone):
    torch.manual_seed(0)
    ref, dis = torch.rand(1, 3, 40, 48), torch.rand(1, 3, 40, 48)
    # window 32, stride 200: rows [0, 8], cols [0, 16] -> 4 windows
    expected = []
    for x in (0, 8):
        for y in (0, 16):
            fr = tiny_backbone.taps(ref[..., x : x + 32, y : y + 32])
            fd = tiny_backbone.taps(dis[..., x : x + 32, y : y + 32])
            expected.append(sum(((a - b) ** 2).mean() for a, b in zip(fr, fd)))
    got = make(tiny_backbone)(ref, dis)
    assert got.shape == (1,)
    assert torch.allclose(got, torch.stack(expected).mean().view(1), rtol=1e-5)


def test_identical_images_score_zero(tiny_backbone):
    img = torch.rand(2, 3, 40, 40)
    assert torch.allclose(make(tiny_backbone)(img, img), torch.zeros(2))


def test_batch_invariance_and_window_chunking(tiny_backbone):
    torch.manual_seed(1)
    ref, dis = torch.rand(8, 3, 50, 70), torch.rand(8, 3, 50, 70)
    metric = make(tiny_backbone, "skld")
    batched = metric(ref, dis)
    alone = torch.cat([metric(ref[i : i + 1], dis[i : i + 1]) for i in range(8)])
    assert torch.allclose(batched, alone, atol=1e-5, rtol=1e-5)
    one_window_at_a_time = make(tiny_backbone, "skld", max_windows_per_batch=1)(ref, dis)
    assert torch.allclose(batched, one_window_at_a_time, atol=1e-5, rtol=1e-5)


def test_reference_features_reused_for_many_distorted(tiny_backbone):
    torch.manual_seed(2)
    metric = make(tiny_backbone, "cos")
    ref, dis = torch.rand(1, 3, 40, 40), torch.rand(5, 3, 40, 40)
    cached = metric.score_features(metric.features(ref), metric.features(dis))
    assert torch.allclose(cached, metric(ref.expand(5, -1, -1, -1), dis), atol=1e-6)


def test_reference_broadcast_is_chunked_without_changing_scores(tiny_backbone):
    torch.manual_seed(5)
    ref, dis = torch.rand(1, 3, 40, 40), torch.rand(7, 3, 40, 40)  # 4 windows per image
    whole = make(tiny_backbone, "wsd")
    chunked = make(tiny_backbone, "wsd", max_windows_per_batch=8)  # 2 distorted images (8 windows) per chunk
    chunks = list(chunked.chunks(7, 4))
    assert [images.stop - images.start for images, _ in chunks] == [2, 2, 2, 1]
    assert all(windows == slice(0, 4) for _, windows in chunks)
    fr, fd = whole.features(ref), whole.features(dis)
    assert torch.allclose(chunked.score_features(fr, fd), whole.score_features(fr, fd), atol=1e-6)
    l2_whole, l2_chunked = make(tiny_backbone), make(tiny_backbone, max_windows_per_batch=8)
    assert torch.allclose(l2_chunked.layer_terms(fr, fd), l2_whole.layer_terms(fr, fd), atol=1e-6)
    for a, b in zip(l2_chunked.channel_terms(fr, fd), l2_whole.channel_terms(fr, fd)):
        assert a.shape == (7, 16) and torch.allclose(a, b, atol=1e-6)


def test_layer_terms_sum_to_score(tiny_backbone):
    torch.manual_seed(3)
    metric = make(tiny_backbone, "l2")
    ref, dis = torch.rand(3, 3, 40, 40), torch.rand(3, 3, 40, 40)
    fr, fd = metric.features(ref), metric.features(dis)
    terms = metric.layer_terms(fr, fd)
    assert terms.shape == (3, 3)
    assert torch.allclose(terms.sum(1), metric.score_features(fr, fd), rtol=1e-5)
    channels = metric.channel_terms(fr, fd)
    assert [c.shape for c in channels] == [(3, 16)] * 3
    assert torch.allclose(torch.stack([c.sum(1) for c in channels], 1), terms, rtol=1e-5)
    with pytest.raises(ValueError, match="no per-layer terms"):
        make(tiny_backbone, "skld").layer_terms(fr, fd)


def test_default_stride_is_official_but_capped_at_the_window(tiny_backbone):
    assert make(tiny_backbone).stride == 32  # TinyViT windows are 32 px; the paper's 224-px windows get 200
    assert make(tiny_backbone, stride=16).features(torch.rand(1, 3, 64, 64)).num_windows == 9


def test_paper_preset_feeds_raw_pixels_and_fixed_preset_normalises(tiny_backbone):
    img = torch.rand(1, 3, 32, 32)
    raw = make(tiny_backbone).features(img).taps
    assert all(torch.equal(a, b) for a, b in zip(raw, tiny_backbone.taps(img)))
    norm = make(tiny_backbone, preset="fixed").features(img).taps
    mean, std = torch.tensor(tiny_backbone.mean).view(1, 3, 1, 1), torch.tensor(tiny_backbone.std).view(1, 3, 1, 1)
    assert torch.allclose(norm[0], tiny_backbone.taps((img - mean) / std)[0], atol=1e-6)


def test_inputs_as_files_and_pil(tiny_backbone, tmp_path):
    torch.manual_seed(4)
    arr = (torch.rand(40, 40, 3) * 255).to(torch.uint8).numpy()
    Image.fromarray(arr).save(tmp_path / "r.png")
    Image.fromarray(255 - arr).save(tmp_path / "d.png")
    metric = make(tiny_backbone)
    from_files = metric(tmp_path / "r.png", str(tmp_path / "d.png"))
    from_pil = metric(Image.open(tmp_path / "r.png"), Image.open(tmp_path / "d.png"))
    as_tensor = torch.from_numpy(arr).permute(2, 0, 1).float()[None] / 255
    assert torch.allclose(from_files, from_pil) and torch.allclose(from_files, metric(as_tensor, 1 - as_tensor), atol=1e-5)


def test_clear_errors(tiny_backbone):
    metric = make(tiny_backbone)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric(torch.rand(1, 3, 32, 32) * 255, torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="differ in size.*align='resize'"):
        metric(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 32, 64))
    with pytest.raises(ValueError, match="different windows"):
        metric.score_features(metric.features(torch.rand(1, 3, 64, 64)), metric.features(torch.rand(1, 3, 32, 64)))
    with pytest.raises(ValueError, match="stride must be in 1..32"):
        make(tiny_backbone, stride=33)
    with pytest.raises(ValueError, match="2 references for 3"):
        metric(torch.rand(2, 3, 32, 32), torch.rand(3, 3, 32, 32))
    with pytest.raises(ValueError, match="preset"):
        make(tiny_backbone, preset="paperr")
    resized = make(tiny_backbone, align="resize")(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 32, 64))
    assert resized.shape == (1,)


class CountingViT:
    """Wraps a backbone's ``taps`` to record the windows of every call."""

    def __init__(self, backbone):
        self.calls = []
        self.taps = backbone.taps
        backbone.taps = self

    def __call__(self, x):
        self.calls.append(x.shape[0])
        return self.taps(x)


def test_scoring_streams_chunks_of_at_most_max_windows(tiny_backbone, monkeypatch):
    monkeypatch.setattr(zsiqa.metric, "CPU_CALL_WINDOWS", 1000)  # one backbone call per chunk (see the next test)
    torch.manual_seed(6)
    ref, dis = torch.rand(1, 3, 96, 128), torch.rand(3, 3, 96, 128)  # 3 x 4 = 12 windows per image
    whole = make(tiny_backbone, "skld")
    expected = whole.score_features(whole.features(ref), whole.features(dis))
    counter = CountingViT(tiny_backbone)
    streamed = make(tiny_backbone, "skld", max_windows_per_batch=8)(ref, dis)
    # image by image, windows in runs of 4 (half of 8: the reference's run is computed alongside, for each image)
    assert counter.calls == [4, 4] * 3 * 3
    torch.testing.assert_close(streamed, expected, rtol=1e-6, atol=0)
    counter.calls.clear()
    make(tiny_backbone, "skld", max_windows_per_batch=24)(ref, dis)
    assert counter.calls == [12, 24, 12]  # the reference once, then two distorted images per call


def test_cpu_backbone_calls_take_at_most_cpu_call_windows_with_the_same_taps(tiny_backbone, monkeypatch):
    torch.manual_seed(6)
    x = torch.rand(2, 3, 96, 128)  # 12 windows per image
    metric = make(tiny_backbone, "l2")
    monkeypatch.setattr(zsiqa.metric, "CPU_CALL_WINDOWS", 5)
    counter = CountingViT(tiny_backbone)
    with torch.no_grad():
        split = metric._taps(x, slice(0, 12))
    assert counter.calls == [5, 5, 5, 5, 4]
    monkeypatch.setattr(zsiqa.metric, "CPU_CALL_WINDOWS", 1000)
    with torch.no_grad():
        whole = metric._taps(x, slice(0, 12))
    assert counter.calls[-1] == 24 and len(split) == len(whole)
    assert all(torch.equal(a, b) for a, b in zip(split, whole))
    # Both sides streaming (2 references): a chunk is one CPU call per side, whatever max_windows_per_batch allows.
    ref = torch.rand(2, 3, 96, 128)
    expected = metric.score_features(metric.features(ref), metric.features(x))
    monkeypatch.setattr(zsiqa.metric, "CPU_CALL_WINDOWS", 5)
    counter.calls.clear()
    streamed = make(tiny_backbone, "l2", max_windows_per_batch=24)(ref, x)
    assert counter.calls == [5, 5, 5, 5, 2, 2] * 2
    torch.testing.assert_close(streamed, expected, rtol=1e-6, atol=0)


def test_score_pairs_scores_several_metrics_in_one_pass(tiny_backbone):
    from zsiqa.metric import score_pairs

    torch.manual_seed(7)
    ref, dis = torch.rand(1, 3, 40, 70), torch.rand(4, 3, 40, 70)
    names = ["l2", "cos", "cos_channel", "skld", "jsd", "wsd", "swd_fixed"]
    metrics = {name: make(tiny_backbone, name, max_windows_per_batch=8) for name in names}
    first = metrics["l2"]
    got = score_pairs(metrics, first.features(ref), dis)
    for name, m in metrics.items():
        torch.testing.assert_close(got[name], m(ref, dis), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="does not share features"):
        score_pairs({"a": first, "b": make(tiny_backbone, "l2", stride=16)}, ref, dis)


def test_terms_stream_with_the_reference_features(tiny_backbone):
    torch.manual_seed(8)
    ref, dis = torch.rand(1, 3, 40, 70), torch.rand(3, 3, 40, 70)
    metric = make(tiny_backbone, "cos", max_windows_per_batch=3)
    layers, channels = metric.terms(metric.features(ref), dis, channels=True)
    whole = make(tiny_backbone, "cos")
    fr, fd = whole.features(ref), whole.features(dis)
    torch.testing.assert_close(layers, whole.layer_terms(fr, fd), rtol=1e-6, atol=1e-7)
    for a, b in zip(channels, whole.channel_terms(fr, fd)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_whole_image_backbones_refuse_images_above_max_image_side(tiny_backbone):
    tiny_backbone.window = None  # a whole-image backbone (like efficientnet_lite0, vgg16)
    metric = make(tiny_backbone, max_image_side=48)
    assert metric(torch.rand(1, 3, 48, 40), torch.rand(1, 3, 48, 40)).shape == (1,)
    with pytest.raises(InputError, match=r"a 64x40 image exceeds max_image_side=48 .*run.max_image_side="):
        metric(torch.rand(1, 3, 40, 64), torch.rand(1, 3, 40, 64))
    assert make(tiny_backbone, max_image_side=None)(torch.rand(1, 3, 40, 64), torch.rand(1, 3, 40, 64)).shape == (1,)
    with pytest.raises(ValueError, match="max_image_side must be >= 1"):
        make(tiny_backbone, max_image_side=0)
