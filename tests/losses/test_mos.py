"""The MOS objectives that fit learned weights: right order preferred, scale ignored, values at the extremes."""
import pytest
import torch

from zsiqa.losses import fidelity_loss, plcc_loss, srcc_loss


@pytest.mark.parametrize("loss", [fidelity_loss, plcc_loss, srcc_loss])
def test_losses_prefer_the_right_order_and_ignore_scale(loss):
    target = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    good, bad = target ** 3, -target
    assert loss(good, target) < loss(bad, target)
    assert torch.allclose(loss(7.0 * good + 3.0, target), loss(good, target), atol=1e-6)
    q = torch.tensor([0.3, 0.1, 0.2, 0.2], requires_grad=True)
    for t in (torch.tensor([1.0, 1.0, 2.0, 2.0]), torch.ones(4)):  # ties, and a constant target
        value = loss(q, t)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(q.grad).all()
    assert torch.isfinite(loss(torch.tensor([1.0]), torch.tensor([2.0])))


def test_loss_values_at_the_extremes():
    target = torch.arange(8.0)
    assert plcc_loss(2 * target + 1, target).item() == pytest.approx(0.0, abs=1e-6)
    assert plcc_loss(-target, target).item() == pytest.approx(1.0, abs=1e-6)
    assert srcc_loss(target.sqrt(), target).item() < 1e-3  # monotone, not linear: soft SRCC ~ 1
    assert srcc_loss(-target.sqrt(), target).item() > 0.99
    # fidelity on one pair: p = 1, p_hat = Phi((z1 - z2) / sqrt 2) with z = -+1 -> 1 - sqrt(Phi(sqrt 2))
    expected = 1 - (0.5 * (1 + torch.erf(torch.tensor(1.0)))).sqrt()
    assert fidelity_loss(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0])).item() == pytest.approx(expected.item(), abs=1e-4)
