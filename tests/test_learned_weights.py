"""Learned weights: step-0 equivalence with the zero-shot metric, positivity, trained files, and loading them back."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from zsiqa import create_metric
from zsiqa.backbones import list_backbones, register_backbone
from zsiqa.backbones.base import Backbone
from zsiqa.distances import get_distance
from zsiqa.learned_weights import (
    TermWeights,
    TrainedMetric,
    backbone_fingerprint,
    load_trained_metric,
    read_trained,
    save_trained,
    trained_config,
    trained_record,
)
from zsiqa.metric import FRMetric

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyCNN(Backbone):
    """Random-init feature maps on 32-px windows (two stages), for the map layout (cos along width: paper quirk)."""

    layout = "maps"
    window = 32

    def __init__(self, name: str = "test_heads_tiny_cnn", seed: int = 0) -> None:
        super().__init__(name)
        g = torch.Generator().manual_seed(seed)
        self.c1, self.c2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 10, 3, stride=2, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = torch.tanh(self.c1(x))
        return [a, torch.tanh(self.c2(a))]


if "test_heads_tiny_cnn" not in list_backbones():
    register_backbone("test_heads_tiny_cnn")(lambda name, pretrained=True, weights=None: TinyCNN(name))


def images(seed: int, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(n, 3, 40, 48, generator=g)
    return ref, (ref + 0.2 * torch.randn(ref.shape, generator=g)).clamp(0, 1)


def untrained(metric: FRMetric, channels: bool) -> TermWeights:
    ref, dis = images(0, 1)
    f_ref, f_dis = metric.features(ref), metric.features(dis)
    num_layers = metric.layer_terms(f_ref, f_dis).shape[1]
    return TermWeights(num_layers, [t.shape[1] for t in metric.channel_terms(f_ref, f_dis)] if channels else None)


@pytest.mark.parametrize("channels", [False, True])
@pytest.mark.parametrize("distance", ["l2", "cos", "cos_channel"])
@pytest.mark.parametrize("net", ["tokens", "maps"])
def test_untrained_weights_reproduces_the_zero_shot_scores(tiny_backbone, net, distance, channels):
    backbone = tiny_backbone if net == "tokens" else TinyCNN().freeze()
    zero_shot = FRMetric(backbone, get_distance(distance)).eval()
    trained = TrainedMetric(backbone, get_distance(distance), untrained(zero_shot, channels)).eval()
    ref, dis = images(1)
    torch.testing.assert_close(trained(ref, dis), zero_shot(ref, dis), rtol=1e-6, atol=1e-6)
    assert trained.lower_better and trained.distance.kind == "window"


class ReluCNN(TinyCNN):
    """TinyCNN with ReLU and no biases: black regions give all-zero feature vectors (the step-0 hole of cos heads)."""

    def __init__(self) -> None:
        super().__init__("test_heads_relu_cnn")
        with torch.no_grad():
            self.c1.bias.zero_()
            self.c2.bias.zero_()

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = torch.relu(self.c1(x))
        return [a, torch.relu(self.c2(a))]


@pytest.mark.parametrize("channels", [False, True])
def test_untrained_weights_reproduces_the_zero_shot_scores_over_black_regions(channels):
    backbone = ReluCNN().freeze()
    ref, dis = images(4, 2)
    ref[..., :, :36] = 0  # black in both images: zero feature vectors where 1 - cos = 1 (eps) in the zero-shot score
    dis[..., :, :36] = 0
    zero_shot = FRMetric(backbone, get_distance("cos_channel")).eval()
    f_ref = zero_shot.features(ref)
    assert (f_ref.taps[0].flatten(2).norm(dim=1) == 0).float().mean() > 0.3
    trained = TrainedMetric(backbone, get_distance("cos_channel"), untrained(zero_shot, channels)).eval()
    torch.testing.assert_close(trained(ref, dis), zero_shot(ref, dis), rtol=1e-6, atol=1e-7)


def test_weights_start_at_exactly_one_and_stay_positive():
    learned = TermWeights(3, [4, 5, 6])
    assert torch.equal(learned.layer_weights(), torch.ones(3))
    assert all(torch.equal(v, torch.ones(len(v))) for v in learned.channel_weights())
    terms = [torch.rand(2, c) for c in (4, 5, 6)]
    assert torch.equal(learned(terms), torch.stack([t.sum(1) for t in terms], 1).sum(1))
    with torch.no_grad():
        learned.log_layer.copy_(torch.tensor([-30.0, 0.5, -2.0]))
    assert (learned.layer_weights() > 0).all()
    expected = (torch.stack([t.sum(1) for t in terms], 1) * torch.tensor([-30.0, 0.5, -2.0]).exp()).sum(1)
    torch.testing.assert_close(learned(terms), expected)


def test_wrong_terms_are_clear_errors():
    with pytest.raises(ValueError, match=r"per-layer weights take \[N, 3\]"):
        TermWeights(3)(torch.rand(2, 4))
    with pytest.raises(ValueError, match="per-channel weights take"):
        TermWeights(2, [4, 5])([torch.rand(2, 4), torch.rand(2, 6)])
    with pytest.raises(ValueError, match="channel counts"):
        TermWeights(2, [4])


def _trained_file(tmp_path, backbone: Backbone, distance: str = "l2", preset: str = "paper", channels: bool = False):
    metric = FRMetric(backbone, get_distance(distance), preset=preset).eval()
    learned = untrained(metric, channels)
    with torch.no_grad():
        learned.log_layer.copy_(torch.linspace(-1, 1, learned.num_layers))
    config = trained_config(metric, learned, pretrained=False, weights_file=None, fingerprint=backbone_fingerprint(backbone))
    return save_trained(tmp_path / "trained.pt", trained_record(config, learned)), metric, learned


def test_trained_file_is_small_and_round_trips(tmp_path):
    path, metric, learned = _trained_file(tmp_path, TinyCNN(), channels=True)
    assert path.stat().st_size < 8_000
    weights, config = read_trained(path)
    assert torch.equal(weights.layer_weights(), learned.layer_weights())
    assert config["backbone"] == "test_heads_tiny_cnn" and config["channels"] == [6, 10] and config["distance"] == "l2"
    with pytest.raises(FileNotFoundError, match="trained weights not found"):
        read_trained(tmp_path / "missing.pt")
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="neither a trained-weights file"):
        read_trained(tmp_path / "other.pt")


def test_load_trained_metric_scores_the_weighted_terms(tmp_path):
    backbone = TinyCNN()
    path, metric, learned = _trained_file(tmp_path, backbone)
    metrics = load_trained_metric(path, backbone)
    assert list(metrics) == ["l2_trained"]
    m = metrics["l2_trained"]
    assert m.lower_better and m.distance.kind == "window" and m.backbone is backbone
    ref, dis = images(2)
    f_ref, f_dis = m.features(ref), m.features(dis)
    expected = (metric.layer_terms(f_ref, f_dis) * torch.linspace(-1, 1, 2).exp()).sum(1)
    torch.testing.assert_close(m.score_features(f_ref, f_dis), expected)
    assert not torch.allclose(m(ref, dis), metric(ref, dis))  # the learned weights change the score


def test_trained_weights_refuse_another_backbone(tmp_path):
    path, _, _ = _trained_file(tmp_path, TinyCNN())
    with pytest.raises(ValueError, match="other weights"):
        load_trained_metric(path, TinyCNN(seed=1))
    with pytest.raises(ValueError, match="trained on backbone 'test_heads_tiny_cnn'"):
        load_trained_metric(path, TinyCNN(name="another"))


def test_create_metric_with_trained_weights(tmp_path):
    path, metric, _ = _trained_file(tmp_path, TinyCNN(), distance="cos_channel", preset="fixed")
    built = create_metric(trained=path, device="cpu")
    assert isinstance(built, TrainedMetric) and built.preset == "fixed" and built.distance.name == "cos_channel"
    ref, dis = images(3)
    expected = load_trained_metric(path, TinyCNN())["cos_channel_trained"](ref, dis)
    torch.testing.assert_close(built(ref, dis), expected)
    # explicit arguments that agree are fine ("cos" under the fixed preset is cos_channel) ...
    create_metric("test_heads_tiny_cnn", "cos", preset="fixed", trained=path, device="cpu")
    # ... and any that contradict the learned are clear errors
    for kwargs, match in [({"backbone": "dino_vitb16"}, "backbone='dino_vitb16' contradicts"),
                          ({"distance": "l2"}, "distance='l2' contradicts"),
                          ({"preset": "paper"}, "preset='paper' contradicts"),
                          ({"normalize": False}, "normalize=False contradicts")]:
        with pytest.raises(ValueError, match=match):
            create_metric(trained=path, device="cpu", **kwargs)
    with pytest.raises(ValueError, match="needs a backbone name"):
        create_metric()
