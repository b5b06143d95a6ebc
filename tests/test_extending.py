"""docs/contributing.md's "How to add a backbone / distance / dataset / baseline", each done here as a user would."""
import csv

import pytest
import torch
from PIL import Image

import zsiqa
from zsiqa.backbones import BACKBONES, Backbone, register_backbone
from zsiqa.baselines import BASELINES, Baseline
from zsiqa.data import DATASETS, DatasetSpec, LabelFile, Row, read_dataset
from zsiqa.distances import DISTANCES, DistanceHead, register_distance


@pytest.fixture
def registered():
    """Registrations made by a test are undone after it (the registries are process-wide)."""
    before = {reg: dict(reg._entries) for reg in (BACKBONES, DISTANCES, BASELINES, DATASETS)}
    yield
    for reg, entries in before.items():
        reg._entries = entries


def test_add_a_backbone(registered):
    class Pixels(Backbone):  # a "model" whose taps are the pixels at two scales: [B, 3, H, W] maps
        layout, window = "maps", None

        def taps(self, x):
            return [x, torch.nn.functional.avg_pool2d(x, 2)]

    @register_backbone("pixels", "the image itself at two scales")
    def build_pixels(name, pretrained=True, weights=None):
        return Pixels(name)

    metric = zsiqa.create_metric("pixels", "l2", device="cpu")
    ref, dis = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    expected = ((dis - ref) ** 2).mean() + ((torch.nn.functional.avg_pool2d(dis, 2) - torch.nn.functional.avg_pool2d(ref, 2)) ** 2).mean()
    assert torch.allclose(metric(ref, dis), expected.reshape(1))
    assert "pixels" in zsiqa.list_backbones()


def test_add_a_distance(tiny_backbone, registered):
    def l1(ref, dis):  # per window: the sum over layers of the mean absolute difference
        return torch.stack([(d - r).abs().flatten(1).mean(1) for r, d in zip(ref, dis)], 1).sum(1)

    register_distance(DistanceHead("l1", l1, doc="sum over layers of the mean absolute difference"))
    metric = zsiqa.FRMetric(tiny_backbone, zsiqa.distances.get_distance("l1"))
    ref = torch.rand(1, 3, 32, 32)
    assert metric(ref, ref).item() == 0 and metric(ref, torch.rand(1, 3, 32, 32)).item() > 0
    assert "l1" in zsiqa.list_distances()


def test_add_a_dataset_in_its_authors_layout(tmp_path, registered):
    """A new dataset is a spec (data) plus a row parser of a few lines; the one reader does the rest."""
    root = tmp_path / "mydb"
    for folder in ("refs", "dists"):
        (root / folder).mkdir(parents=True)
    lines = []
    for r in range(2):
        Image.new("RGB", (8, 8), (r, 0, 0)).save(root / "refs" / f"r{r}.png")
        for level in (1, 2):
            Image.new("RGB", (8, 8), (r, level, 0)).save(root / "dists" / f"r{r}_blur_{level}.png")
            lines.append(f"r{r}_blur_{level}.png;{4 - level}.5")
    (root / "scores.txt").write_text("\n".join(lines) + "\n")

    def row(fields):  # "r0_blur_1.png;3.5"
        name, _, score = fields[0].partition(";")
        ref_id, dist_type, level = name[:-4].split("_")
        return Row(f"{ref_id}.png", name, score, dist_type, ref_id, level) if score else None

    DATASETS.register(DatasetSpec(
        "mydb", "MyDB", "MOS", False, num_items=4, num_refs=2, layout="scores.txt, refs/ and dists/",
        labels=(LabelFile("scores.txt", "words", '"<name>;<mos>", e.g. "r0_blur_1.png;3.5"'),),
        parse=row, refs=("refs",), distorted=("dists",)))
    items = read_dataset("mydb", root)
    assert [(it.ref.name, it.dis.name, it.label, it.level) for it in items[:2]] == [
        ("r0.png", "r0_blur_1.png", 3.5, "1"), ("r0.png", "r0_blur_2.png", 2.5, "2")]
    (root / "scores.txt").write_text("r0_blur_1.png 3.5\n")
    with pytest.raises(ValueError, match=r"scores.txt:1: malformed label line 'r0_blur_1.png 3.5'; expected"):
        read_dataset("mydb", root)


def test_add_a_baseline_and_score_it_in_evaluate(tmp_path, registered):
    from zsiqa.config import compose_config
    from zsiqa.data import build_demo
    from zsiqa.engine.evaluation import evaluate

    BASELINES.register(Baseline("mae", lambda ref, dis: (ref - dis).abs().mean((1, 2, 3)), True, "mean absolute error"))
    demo = build_demo(tmp_path / "demo")
    summary = evaluate(compose_config("evaluate", [
        "distance=[]", "baselines=[mae,psnr]", f"data.root={demo}", "data.limit=4", f"run.out={tmp_path / 'runs'}",
        "run.num_workers=0", "run.accelerator=cpu"]))
    with open(f"{summary['run_dir']}/scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(float(r["mae"]) > 0 for r in rows)
    assert summary["metrics"]["mae"]["lower_better"] is True
