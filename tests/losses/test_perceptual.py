"""Metrics as differentiable losses: gradcheck in float64, frozen backbone, same value as the metric, optimisation."""
import pytest
import torch

from zsiqa import create_metric
from zsiqa.distances import get_distance, list_distances
from zsiqa.errors import InputError
from zsiqa.losses import PerceptualLoss
from zsiqa.metric import FRMetric


def _loss(backbone, distance: str, **kw) -> PerceptualLoss:
    return PerceptualLoss(FRMetric(backbone, get_distance(distance)), **kw)


@pytest.mark.parametrize("distance", [d for d in list_distances() if get_distance(d).differentiable])
def test_gradcheck_float64_through_windows(tiny_backbone, distance, one_thread):
    torch.manual_seed(0)
    loss = _loss(tiny_backbone.double(), distance, reduction="none", dtype=torch.float64)
    ref = torch.rand(1, 3, 40, 36, dtype=torch.float64)  # 32-px windows, stride 32: 2 x 2 overlapping windows
    dis = (ref + 0.2 * torch.randn_like(ref)).clamp(0, 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: loss(d, ref), (dis,), fast_mode=True, eps=1e-6, atol=1e-5, rtol=1e-3)


def test_gradients_reach_the_input_not_the_frozen_backbone(tiny_backbone):
    torch.manual_seed(1)
    loss = _loss(tiny_backbone, "wsd")
    loss.train()  # a training loop calls .train() on everything: the backbone must stay in eval mode
    ref = torch.rand(2, 3, 40, 40)
    dis = (ref + 0.1 * torch.randn_like(ref)).clamp(0, 1).requires_grad_(True)
    loss(dis, ref).backward()
    assert dis.grad is not None and torch.isfinite(dis.grad).all() and dis.grad.abs().sum() > 0
    assert not tiny_backbone.training
    assert all(p.grad is None and not p.requires_grad for p in tiny_backbone.parameters())


@pytest.mark.parametrize("distance", ["l2", "cos", "wsd", "deepssim"])
def test_loss_value_is_the_metric_score(tiny_backbone, distance):
    torch.manual_seed(2)
    metric = FRMetric(tiny_backbone, get_distance(distance))
    ref, dis = torch.rand(1, 3, 40, 48), torch.rand(3, 3, 40, 48)
    score = metric(ref, dis)
    value = PerceptualLoss(metric, reduction="none")(dis, ref)
    expected = score if metric.lower_better else 1 - score
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(PerceptualLoss(metric)(dis, ref), expected.mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("distance", ["l2", "wsd", "deepssim"])
def test_adam_steps_bring_a_noised_image_closer(tiny_backbone, distance):
    torch.manual_seed(3)
    metric = FRMetric(tiny_backbone, get_distance(distance))
    loss = PerceptualLoss(metric)
    ref = torch.rand(1, 3, 40, 40)
    noised = (ref + 0.3 * torch.randn_like(ref)).clamp(0, 1)
    x = noised.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.01)
    for _ in range(15):
        opt.zero_grad()
        loss(x, ref).backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    before, after = metric(ref, noised), metric(ref, x.detach())
    assert (after < before if metric.lower_better else after > before).all()


def test_create_metric_as_loss_and_clear_errors(tiny_backbone):
    loss = create_metric("timm:vit_tiny_patch16_224", "l2", pretrained=False, device="cpu", as_loss=True)
    assert isinstance(loss, PerceptualLoss)
    ref = torch.rand(1, 3, 224, 224)
    dis = (ref + 0.1 * torch.randn_like(ref)).clamp(0, 1).requires_grad_(True)
    loss(dis, ref).backward()
    assert dis.grad.abs().sum() > 0
    with pytest.raises(InputError, match="distance 'swd' cannot be used as a loss; differentiable heads: cos, .*l2, .*swd_fixed"):
        _loss(tiny_backbone, "swd")
    with pytest.raises(InputError, match="reduction"):
        _loss(tiny_backbone, "l2", reduction="sum")
    with pytest.raises(InputError, match=r"dis must be a float \[N, 3, H, W\]"):
        _loss(tiny_backbone, "l2")(torch.rand(3, 40, 40), torch.rand(1, 3, 40, 40))


def test_a_metric_with_learned_weights_is_refused(tiny_backbone):
    from zsiqa.learned_weights import TermWeights, TrainedMetric

    trained = TrainedMetric(tiny_backbone, get_distance("l2"), TermWeights(3))
    with pytest.raises(InputError, match="TrainedMetric scores with learned weights"):
        PerceptualLoss(trained)
