"""Quality maps: each token's or feature-map cell's term placed where its window puts it; the map sums to the score."""
from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF
from skimage import data

import zsiqa
from zsiqa.cli import main
from zsiqa.errors import ConfigError


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A 300x300 photograph and a copy whose top-right quadrant is blurred."""
    ref = torch.from_numpy(data.astronaut()[:300, 150:450].copy()).permute(2, 0, 1).float() / 255
    dis = ref.clone()
    dis[:, :150, 150:] = TF.gaussian_blur(ref[:, :150, 150:], 21, 5.0)
    return ref, dis


def quadrants(m: torch.Tensor) -> list[float]:
    h, w = m.shape[0] // 2, m.shape[1] // 2
    return [float(m[:h, :w].sum()), float(m[:h, w:].sum()), float(m[h:, :w].sum()), float(m[h:, w:].sum())]


@pytest.mark.parametrize("backbone,distance,kwargs", [
    ("efficientnet_lite0", "l2", {}),  # whole-image feature maps, real weights
    ("efficientnet_lite0", "cos_channel", {}),
    ("timm:vit_tiny_patch16_224", "l2", {"pretrained": False}),  # tokens in 4 overlapping 224 windows, CLS spread
    ("timm:vit_tiny_patch16_224", "cos", {"pretrained": False}),
])
def test_the_map_sums_to_the_score_and_peaks_where_the_blur_is(pair, backbone, distance, kwargs):
    ref, dis = pair
    metric = zsiqa.create_metric(backbone, distance, device="cpu", **kwargs)
    qmap = metric.map(ref, dis)
    score = float(metric(ref, dis)[0])
    assert qmap.score == pytest.approx(score, rel=1e-5)
    assert float(qmap.combined.sum()) == pytest.approx(score, rel=1e-5)
    assert qmap.layers.shape[1:] == (300, 300) and torch.allclose(qmap.layers.sum(0), qmap.combined, atol=1e-6)
    assert float(qmap.layers.sum((1, 2)).sub(metric.layer_terms(ref[None], dis[None])[0]).abs().max()) < 1e-5 * score
    shares = quadrants(qmap.combined)
    assert max(range(4), key=shares.__getitem__) == 1 and shares[1] > 0.5 * sum(shares)


def test_paper_cos_on_feature_maps_resolves_rows_only(pair):
    ref, dis = pair
    metric = zsiqa.create_metric("efficientnet_lite0", "cos", device="cpu")  # cosine along the width axis
    qmap = metric.map(ref, dis)
    assert qmap.score == pytest.approx(float(metric(ref, dis)[0]), rel=1e-5)
    top, bottom = sum(quadrants(qmap.combined)[:2]), sum(quadrants(qmap.combined)[2:])
    assert top > bottom


def test_heads_without_a_spatial_decomposition_say_so(pair):
    metric = zsiqa.create_metric("efficientnet_lite0", "wsd", device="cpu")
    with pytest.raises(ConfigError, match="'wsd' has no spatial decomposition.*l2, cos, cos_channel"):
        metric.map(*pair)


def test_zsiqa_map_writes_the_figure(pair, tmp_path, capsys):
    from PIL import Image

    for name, img in zip(("ref.png", "dis.png"), pair):
        Image.fromarray((img * 255).round().byte().permute(1, 2, 0).numpy()).save(tmp_path / name)
    out = tmp_path / "map.png"
    code = main(["map", str(tmp_path / "ref.png"), str(tmp_path / "dis.png"), "--backbone", "efficientnet_lite0",
                 "--distance", "l2", "--out", str(out)])
    assert code == 0 and out.stat().st_size > 20_000
    assert "efficientnet_lite0 l2 (paper)" in capsys.readouterr().out
