"""Shared helpers of the distance tests: seeded features in the token and map layouts, the heads' functions."""
import torch

from zsiqa.distances import get_distance

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
