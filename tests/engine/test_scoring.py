"""The method module and its data plan: predict output, compiled backbone, batches sized by windows."""
from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import torch

from zsiqa.backbones import list_backbones, register_backbone
from zsiqa.config import compose_config
from zsiqa.data import read_dataset
from zsiqa.data.datamodule import FRDataModule, collate_pairs, plan_batches
from zsiqa.distances import get_distance
from zsiqa.engine.build import compile_backbone, image_windows
from zsiqa.engine.evaluation import evaluate
from zsiqa.engine.scoring import ScoringModule
from zsiqa.metric import FRMetric

BACKBONE = "test_method_tiny_vit"


@pytest.fixture
def registered(tiny_backbone) -> None:
    """The tests' TinyViT (conftest) as a registered backbone, for runs built from a config."""
    if BACKBONE not in list_backbones():
        register_backbone(BACKBONE)(lambda name, pretrained=True, weights=None: type(tiny_backbone)().freeze())


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from zsiqa.data import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"))


def scores_csv(tmp_path: Path, demo_root: Path, *extra: str) -> list[dict]:
    import csv

    cfg = compose_config("evaluate", [
        f"backbone={BACKBONE}", "distance=[l2,wsd]", "baselines=[psnr]", f"data.root={demo_root}", "data.limit=30",
        f"run.out={tmp_path}", "run.batch_size=4", "run.num_workers=0", "run.accelerator=cpu", *extra,
    ])
    evaluate(cfg)
    (path,) = Path(tmp_path).glob("demo/none/*/scores.csv")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_step_returns_host_floats_in_batch_order(demo_root, tiny_backbone):
    items = read_dataset("demo", demo_root)[:5]
    from zsiqa.data import PairDataset

    batch = collate_pairs([PairDataset(items)[i] for i in range(5)])
    metric = FRMetric(tiny_backbone, get_distance("l2"))
    module = ScoringModule({"l2": metric}, [])
    module.on_predict_start()
    out = module.predict_step(batch, 0)
    assert out["index"] == [it.index for it in items]
    assert all(type(v) is float for v in out["scores"]["l2"])
    direct = metric(items[0].ref, [it.dis for it in items])
    assert out["scores"]["l2"] == direct.double().tolist()
    terms = ScoringModule({"l2": metric}, [], output="terms", channels=True)
    terms.on_predict_start()
    layer, *channel = terms.predict_step(batch, 0)["terms"]
    assert layer.device.type == "cpu" and layer.shape == (5, 3) and [c.shape for c in channel] == [(5, 16)] * 3
    torch.testing.assert_close(layer.sum(1), direct, rtol=1e-5, atol=0)


def test_compiled_backbone_scores_equal_eager(tmp_path, demo_root, registered):
    eager = scores_csv(tmp_path / "eager", demo_root)
    compiled = scores_csv(tmp_path / "compiled", demo_root, "run.compile=true")
    assert [r["index"] for r in compiled] == [r["index"] for r in eager]
    for a, b in zip(eager, compiled):
        for col in ("l2", "wsd"):
            assert float(b[col]) == pytest.approx(float(a[col]), rel=1e-5, abs=1e-7)


def test_compile_backbone_wraps_taps_and_keeps_the_weights(tiny_backbone):
    state = {k: v.clone() for k, v in tiny_backbone.state_dict().items()}
    x = torch.rand(2, 3, 32, 32)
    eager = tiny_backbone.taps(x)
    compile_backbone(tiny_backbone)
    assert hasattr(tiny_backbone.taps, "_torchdynamo_orig_callable") or "compile" in type(tiny_backbone.taps).__name__.lower()
    for a, b in zip(eager, tiny_backbone.taps(x)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(v, state[k]) for k, v in tiny_backbone.state_dict().items())


def test_batches_by_windows(demo_root):
    items = read_dataset("demo", demo_root)[:30]
    counts = {it.index: 1 + it.index % 3 for it in items}  # 1..3 windows per pair
    batches = plan_batches(items, set(), batch_size=999, batch_windows=5, windows_of=lambda it: counts[it.index])
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(30)) and flat == plan_batches(items, set(), 30)[0]  # reference order kept
    for b in batches:
        windows = sum(counts[items[i].index] for i in b)
        assert windows <= 5 or len(b) == 1
    # a batch ends only when the next pair would not fit
    assert all(sum(counts[items[i].index] for i in b) + counts[items[n[0]].index] > 5 for b, n in pairwise(batches))
    big = plan_batches(items, set(), 1, batch_windows=2, windows_of=lambda it: 7)  # one pair over the budget: alone
    assert [len(b) for b in big] == [1] * 30
    with pytest.raises(ValueError, match="batch_windows must be >= 1"):
        plan_batches(items, set(), 4, batch_windows=0, windows_of=lambda it: 1)


def test_image_windows_counts_the_official_windows(demo_root, tiny_backbone):
    item = read_dataset("demo", demo_root)[0]  # 288 x 288
    metric = FRMetric(tiny_backbone, get_distance("l2"))  # window 32, stride 32 -> 9 x 9
    assert image_windows(metric)(item) == 81 and image_windows(None)(item) == 1


def test_batch_windows_run_gives_the_same_scores(tmp_path, demo_root, registered, tiny_backbone):
    by_images = scores_csv(tmp_path / "images", demo_root)
    by_windows = scores_csv(tmp_path / "windows", demo_root, "run.batch_windows=200")  # 2 pairs of 81 windows
    assert len(by_windows) == 30
    for a, b in zip(by_images, by_windows):
        for col in ("l2", "wsd", "psnr"):
            assert float(b[col]) == pytest.approx(float(a[col]), rel=1e-6)
    data = FRDataModule("demo", demo_root, limit=30, batch_windows=200,
                        windows_of=image_windows(FRMetric(tiny_backbone, get_distance("l2"))))
    data.setup()
    assert [len(b) for b in data.batches] == [2] * 15
