import urllib.error

import numpy as np
import pytest
import torch

from zsiqa.backbones import create_backbone
from zsiqa.backbones.weights import WeightsUnavailableError
from zsiqa.distances import DISTANCES
from zsiqa.distances.deepssim import (
    block_ssim,
    deepssim_distance,
    deepssim_score,
    gram_ssim,
    image_features,
    saliency_mask,
)
from zsiqa.errors import ConfigError
from zsiqa.losses import DeepSSIMLoss


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return create_backbone("vgg16", pretrained=False)


def smooth_images(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


def numpy_gram_ssim(f_ref: np.ndarray, f_dis: np.ndarray, block: int = 4, c: float = 1e-6) -> float:
    """One sample, written with loops: Gram sums over positions, then population statistics per block."""
    ch = f_ref.shape[0]
    g_ref = np.zeros((ch, ch))
    g_dis = np.zeros((ch, ch))
    for i in range(ch):
        for j in range(ch):
            g_ref[i, j] = sum(f_ref[i, p] * f_ref[j, p] for p in range(f_ref.shape[1]))
            g_dis[i, j] = sum(f_dis[i, p] * f_dis[j, p] for p in range(f_dis.shape[1]))
    scores = []
    for bi in range(0, ch, block):
        for bj in range(0, ch, block):
            x = [g_ref[bi + a, bj + b] for a in range(block) for b in range(block)]
            y = [g_dis[bi + a, bj + b] for a in range(block) for b in range(block)]
            mx, my = sum(x) / len(x), sum(y) / len(y)
            vx = sum((v - mx) ** 2 for v in x) / len(x)
            vy = sum((v - my) ** 2 for v in y) / len(y)
            cxy = sum((u - mx) * (v - my) for u, v in zip(x, y)) / len(x)
            scores.append((2 * cxy + c) / (vx + vy + c))
    return sum(scores) / len(scores)


def test_block_statistic_closed_form():
    x = torch.arange(16, dtype=torch.float64).view(1, 4, 4)
    var = (16**2 - 1) / 12  # population variance of 0..15
    c = 1e-6
    assert block_ssim(x, 2 * x).item() == pytest.approx((4 * var + c) / (5 * var + c), rel=1e-12)
    assert block_ssim(x, x + 5).item() == pytest.approx(1.0, rel=1e-12)
    assert block_ssim(x, -x).item() == pytest.approx((-2 * var + c) / (2 * var + c), rel=1e-12)
    assert block_ssim(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)).item() == 1.0


def test_gram_ssim_matches_loops_with_different_position_counts():
    rng = np.random.default_rng(0)
    f_ref, f_dis = rng.random((2, 8, 5)), rng.random((2, 8, 3))
    got = gram_ssim(torch.from_numpy(f_ref), torch.from_numpy(f_dis))
    expected = [numpy_gram_ssim(f_ref[i], f_dis[i]) for i in range(2)]
    assert got.shape == (2,)
    assert np.allclose(got.numpy(), expected, rtol=1e-12)


def test_gram_ssim_rejects_bad_shapes():
    with pytest.raises(ValueError, match="block=4 must divide"):
        gram_ssim(torch.rand(1, 6, 3), torch.rand(1, 6, 3))
    with pytest.raises(ValueError, match="equal N and C"):
        gram_ssim(torch.rand(1, 8, 3), torch.rand(1, 12, 3))


def test_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    # Gram entries ~1e8 and block variances ~1e16: beyond fp16, fine in fp32.
    f_ref = (torch.rand(2, 8, 400) * 1e3).to(torch.bfloat16)
    f_dis = (torch.rand(2, 8, 300) * 1e3).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gram_ssim(f_ref, f_dis)
    assert got.dtype == torch.float32
    assert torch.isfinite(got).all()
    assert torch.equal(got, gram_ssim(f_ref.float(), f_dis.float()))


def test_pipeline_under_autocast_returns_fp32(vgg):
    ref = smooth_images(1, 64, 64, seed=1)
    dis = (ref + 0.1 * torch.randn_like(ref)).clamp(0, 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = deepssim_score(vgg, ref, dis)
    assert got.dtype == torch.float32


def test_batch_invariance(vgg):
    ref = smooth_images(3, 64, 64, seed=2)
    dis = (ref + 0.2 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    with torch.no_grad():
        batched = deepssim_score(vgg, ref, dis)
        alone = deepssim_score(vgg, ref[1:2], dis[1:2])
    assert torch.allclose(batched[1:2], alone, atol=1e-6, rtol=0)
    assert len(set(batched.tolist())) == 3  # per sample, not one mean over the batch


def test_vgg16_different_sizes_and_identity(vgg):
    ref = smooth_images(2, 128, 88, seed=4)
    dis = ref[:, :, 32:96]  # 64x88 crop: a geometrically disparate "distortion"
    noisy = (ref + 0.3 * torch.randn_like(ref)).clamp(0, 1)
    with torch.no_grad():
        taps = vgg.taps(ref)
        crop = deepssim_score(vgg, ref, dis)
        same = deepssim_score(vgg, ref, ref)
        bad = deepssim_score(vgg, ref, noisy)
    assert vgg.layout == "maps" and vgg.window is None
    assert [list(t.shape) for t in taps] == [[2, 512, 8, 5]]  # relu5_1 at 1/16 resolution
    assert crop.shape == (2,) and torch.isfinite(crop).all()
    assert torch.allclose(same, torch.ones(2), atol=1e-6)
    assert (bad < same).all()


def test_tokens_with_different_window_counts(tiny_backbone):
    torch.manual_seed(5)
    ref_img, dis_img = torch.rand(2, 3, 32, 64), torch.rand(2, 3, 32, 96)

    def windows(img: torch.Tensor) -> torch.Tensor:  # [N, 3, 32, 32k] -> [N*k, 3, 32, 32], image-major
        k = img.shape[-1] // 32
        return torch.stack([img[..., 32 * i : 32 * (i + 1)] for i in range(k)], 1).flatten(0, 1)

    with torch.no_grad():
        ref, dis = tiny_backbone.taps(windows(ref_img)), tiny_backbone.taps(windows(dis_img))
    got = deepssim_distance(ref, dis, 2, 3)
    # Gram of all tokens of an image = sum of its window Grams.
    expected = []
    for r, d in zip(ref, dis):
        g_ref = sum(r[i::2].transpose(1, 2) @ r[i::2] for i in range(2))
        g_dis = sum(d[i::3].transpose(1, 2) @ d[i::3] for i in range(3))
        expected.append(block_ssim(g_ref, g_dis))
    assert got.shape == (2,)
    assert torch.allclose(got, torch.stack(expected, 1).mean(1), rtol=1e-5)
    assert torch.allclose(deepssim_distance(ref, ref, 2, 2), torch.ones(2), atol=1e-6)


def test_image_features_maps_pool_windows_per_image():
    f = torch.arange(2 * 3 * 4 * 2 * 1, dtype=torch.float32).view(6, 4, 2, 1)  # N=2 images x k=3 windows
    out = image_features(f, 3)
    assert out.shape == (2, 4, 6)
    assert torch.equal(out[1, 2], torch.cat([f[3, 2].flatten(), f[4, 2].flatten(), f[5, 2].flatten()]))
    with pytest.raises(ValueError, match="whole number of images"):
        image_features(f, 4)


def test_head_is_registered_as_image_similarity():
    head = DISTANCES["deepssim"]
    assert head.kind == "image" and head.lower_better is False and head.fn is deepssim_distance


def test_gradcheck():
    torch.manual_seed(6)
    f_ref = torch.rand(2, 8, 5, dtype=torch.float64, requires_grad=True)
    f_dis = torch.rand(2, 8, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram_ssim, (f_ref, f_dis))
    assert torch.autograd.gradcheck(lambda a, b: gram_ssim(a, b, block=8, normalize=True), (f_ref, f_dis))


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    return DeepSSIMLoss(pretrained=False)


def test_lite_loss_formula_and_frozen_backbone(lite):
    ref = smooth_images(2, 64, 64, seed=7)
    dis = (ref + 0.2 * torch.randn_like(ref)).clamp(0, 1).requires_grad_(True)
    loss = lite(dis, ref)
    loss.backward()
    assert dis.grad is not None and dis.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in lite.parameters())
    # independent: normalised Gram, statistics over all 512x512 entries, 1 - S, batch mean
    expected = []
    with torch.no_grad():
        for i in range(2):
            g = []
            for img in (ref[i : i + 1], dis[i : i + 1]):
                f = lite.backbone.taps((img - lite.mean) / lite.std)[0][0].flatten(1).double()
                g.append((f @ f.T / f.numel()).flatten())
            x, y = g
            cov = ((x - x.mean()) * (y - y.mean())).mean()
            expected.append(1 - (2 * cov + 1e-6) / (x.var(unbiased=False) + y.var(unbiased=False) + 1e-6))
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-4)
    assert lite(ref, ref).item() == pytest.approx(0.0, abs=1e-6)


def test_lite_loss_optimisation_raises_deepssim(lite, vgg):
    ref = smooth_images(1, 64, 64, seed=8)
    noisy = (ref + 0.3 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(9))).clamp(0, 1)
    x = noisy.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.02)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = lite(x, ref)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        before, after = deepssim_score(vgg, ref, noisy), deepssim_score(vgg, ref, x.clamp(0, 1))
    assert losses[-1] < losses[0]
    assert after.item() > before.item()


def test_all_ones_mask_equals_no_mask(vgg):
    ref = smooth_images(2, 64, 48, seed=10)
    dis = smooth_images(2, 32, 48, seed=11)
    with torch.no_grad():
        plain = deepssim_score(vgg, ref, dis)
        masked = deepssim_score(vgg, ref, dis, ref_mask=torch.ones(2, 64, 48), dis_mask=torch.ones(2, 1, 32, 48))
        assert torch.equal(vgg.taps(ref)[0], vgg.taps(ref, mask=torch.ones(2, 64, 48))[0])
    assert torch.equal(plain, masked)


def test_mask_multiplies_conv1_1_maps(vgg):
    img = smooth_images(1, 64, 64, seed=12)
    mask = torch.ones(1, 64, 64)
    mask[:, 16:48, 16:48] = 0
    changed = img.clone()
    # conv1_1 is 3x3: pixels at least one pixel inside the masked square only feed masked conv1_1 outputs.
    changed[..., 17:47, 17:47] = torch.rand(1, 3, 30, 30)
    with torch.no_grad():
        a, b = vgg.taps(img, mask=mask)[0], vgg.taps(changed, mask=mask)[0]
        unmasked_a, unmasked_b = vgg.taps(img)[0], vgg.taps(changed)[0]
    assert torch.equal(a, b)
    assert not torch.equal(unmasked_a, unmasked_b)
    assert not torch.equal(a, unmasked_a)


def test_bad_masks_raise(vgg):
    img = torch.rand(1, 3, 64, 48)
    with pytest.raises(ValueError, match=r"mask must be \[B, H, W\] = \[1, 64, 48\]"):
        vgg.taps(img, mask=torch.ones(1, 48, 64))
    with pytest.raises(ValueError, match="binary"):
        vgg.taps(img, mask=torch.full((1, 64, 48), 0.5))


def test_masks_need_the_vgg16_backbone(tiny_backbone):
    with pytest.raises(ValueError, match="whole images"):
        deepssim_score(tiny_backbone, torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    tiny_backbone.window = None
    with pytest.raises(ValueError, match="need the 'vgg16' backbone"):
        img = torch.rand(1, 3, 32, 32)
        deepssim_score(tiny_backbone, img, img, ref_mask=torch.ones(1, 32, 32))


def test_saliency_mask_binarises_channel_0():
    sal = torch.zeros(1, 3, 2, 3)
    sal[0, 0] = torch.tensor([[0.0, 0.004, 0.5], [1.0, 0.0, 0.02]])
    sal[0, 1] = 1.0  # other channels are ignored
    assert saliency_mask(sal).tolist() == [[[[0, 1, 1], [1, 0, 1]]]]
    assert saliency_mask(sal, threshold=0.01).tolist() == [[[[0, 0, 1], [1, 0, 1]]]]
    assert saliency_mask(sal[:, 0]).shape == (1, 1, 2, 3)


def test_offline_without_cache_names_the_file_and_fixes(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="vgg16-397923af.pth") as err:
        create_backbone("vgg16", pretrained=True)
    assert "--weights PATH (zsiqa score), weights=PATH (create_metric" in str(err.value)
    assert "zsiqa download vgg16" in str(err.value)


def test_local_weights_file(vgg, tmp_path):
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in vgg.features.state_dict().items()}, path)
    loaded = create_backbone("vgg16", weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), vgg.state_dict().values()))
    torch.save({"classifier.0.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="other.pth is not a torchvision VGG16 state dict"):
        create_backbone("vgg16", weights=str(tmp_path / "other.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        create_backbone("vgg16", weights=str(tmp_path / "missing.pth"))

