"""Shared test set-up: offline, no W&B, few threads, and a tiny deterministic backbone."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from zsiqa.backbones.base import Backbone  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


class TinyViT(Backbone):
    """A 3-block token model on 32-px windows (patch 8 -> 16 tokens + CLS), for fast engine tests."""

    layout = "tokens"
    window = 32

    def __init__(self, dim: int = 16, depth: int = 3) -> None:
        super().__init__("tiny_vit")
        g = torch.Generator().manual_seed(0)
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim, generator=g))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)) for _ in range(depth)
        )
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1)
        out = []
        for blk in self.blocks:
            t = t + blk(t)
            out.append(t)
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.taps(x)[-1][:, 0]


@pytest.fixture
def tiny_backbone() -> TinyViT:
    return TinyViT().freeze()


@pytest.fixture
def one_thread():
    """For files of tiny tensors: one thread is fastest (thread start-up dominates), and threads contend on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The bad-input corpus of image files (``corpus.build_corpus``)."""
    from corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def metric(tiny_backbone):
    """An l2 metric on the tiny backbone, paper preset."""
    from zsiqa.distances import get_distance
    from zsiqa.metric import FRMetric

    return FRMetric(tiny_backbone, get_distance("l2"), preset="paper")
