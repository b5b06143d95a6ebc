"""Training learned heads: losses, split by reference, term cache, a synthetic task, resume, and evaluate.py round trip.

The backbone is a random-init multi-scale CNN (fine, medium and coarse taps of the same image), so its layer terms
respond differently to fine and coarse distortions; images are 32 px, so every run takes a fraction of a second.
"""
from __future__ import annotations

import csv
import inspect
import json
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from zsiqa.backbones import list_backbones, register_backbone
from zsiqa.backbones.base import Backbone
from zsiqa.config import compose_config
from zsiqa.data import PairDataset, read_dataset
from zsiqa.data.datamodule import FRDataModule
from zsiqa.data.term_data import EpochShuffle
from zsiqa.distances import get_distance
from zsiqa.engine import term_cache, training
from zsiqa.engine.split import split_by_reference
from zsiqa.engine.term_cache import cached_terms, compute_terms, term_cache_key, terms_code_digest
from zsiqa.engine.training import train, train_dir_for
from zsiqa.images import to_float
from zsiqa.learned_weights import read_trained
from zsiqa.metric import FRMetric
from zsiqa.presets import FIXED_VARIANTS, PRESETS, resolve_distance
from zsiqa.stats import correlations
from zsiqa.transforms import make_transform

pytestmark = pytest.mark.usefixtures("one_thread")

BACKBONE = "test_training_multiscale"
N_REFS, PER_REF, SIZE = 12, 8, 32


class MultiScaleCNN(Backbone):
    """Random-init taps at three scales: tanh(conv) on the image, on its 4x and on its 8x average-pooled version."""

    layout = "maps"
    window = None
    calls = 0  # backbone runs, counted across instances

    def __init__(self, name: str = BACKBONE, seed: int = 0) -> None:
        super().__init__(name)
        g = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList(nn.Conv2d(3, 8, 3, padding=1) for _ in range(3))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        MultiScaleCNN.calls += 1
        return [torch.tanh(conv(F.avg_pool2d(x, s) if s > 1 else x)) for conv, s in zip(self.convs, (1, 4, 8))]


if BACKBONE not in list_backbones():
    register_backbone(BACKBONE)(lambda name, pretrained=True, weights=None: MultiScaleCNN(name))


def write_dataset(root: Path, seed: int = 0) -> Path:
    """The demo layout: N_REFS random references, each with PER_REF mixes of fine and coarse noise (label 0 for now)."""
    rng = np.random.default_rng(seed)
    (root / "ref").mkdir(parents=True)
    (root / "dis").mkdir()
    rows = []
    for i in range(N_REFS):
        ref = torch.from_numpy(rng.random((3, SIZE, SIZE))).float()
        Image.fromarray((ref.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(root / "ref" / f"r{i:02d}.png")
        for k in range(PER_REF):
            fine, coarse = rng.uniform(0, 0.3, 2)
            lf = F.interpolate(torch.from_numpy(rng.standard_normal((1, 3, 4, 4))).float(), size=SIZE, mode="bilinear")[0]
            dis = (ref + fine * torch.from_numpy(rng.standard_normal(ref.shape)).float() + coarse * lf).clamp(0, 1)
            name = f"r{i:02d}_mix_{k}.png"
            Image.fromarray((dis.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(root / "dis" / name)
            rows.append([f"ref/r{i:02d}.png", f"dis/{name}", 0, "mix", k])
    write_labels(root, rows)
    return root


def write_labels(root: Path, rows: list[list]) -> None:
    with open(root / "meta.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ref_name", "dist_name", "score", "dist_type", "level"])
        w.writerows(rows)


def metric_for(backbone: Backbone, distance: str = "l2", preset: str = "paper") -> FRMetric:
    return FRMetric(backbone, get_distance(distance), preset=preset).eval()


def demo_data(root: Path, **options) -> FRDataModule:
    return FRDataModule("demo", root, strict=False, **options)


def label_by_layer(root: Path, layer: int | None) -> torch.Tensor:
    """Rewrite the labels as one layer's l2 term (``None``: the sum, i.e. the zero-shot score); return all terms."""
    terms = compute_terms(metric_for(MultiScaleCNN()), demo_data(root), progress=False).layer
    label = terms.sum(1) if layer is None else terms[:, layer]
    with open(root / "meta.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    for row, value in zip(rows, label.tolist()):
        row[2] = repr(value)
    write_labels(root, rows)
    return terms


def make_cfg(tmp_path: Path, root: Path, *args: str):
    return compose_config("train", [
        f"backbone={BACKBONE}", f"run.out={tmp_path / 'runs'}", "optim.batch_size=32", "split.val_fraction=0.25",
        f"data.root={root}", "data.strict=false", f"test=[{{name:demo,root:'{root}',strict:false}}]", *args,
    ])


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data")


# --------------------------------------------------------------------------------------------- split, shuffling


def test_split_by_reference_is_disjoint_seeded_and_complete(dataset):
    items = read_dataset("demo", dataset, strict=False)
    split = split_by_reference(items, 0.25, seed=0)
    assert len(split["val"]) == 3 and len(split["train"]) == 9
    assert not set(split["train"]) & set(split["val"])
    assert set(split["train"]) | set(split["val"]) == {it.ref_id for it in items}
    assert split_by_reference(items, 0.25, seed=0) == split
    assert any(split_by_reference(items, 0.25, seed=s)["val"] != split["val"] for s in range(1, 4))
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_reference(items, 1.0, seed=0)
    with pytest.raises(ValueError, match="at least 2 reference"):
        split_by_reference([it for it in items if it.ref_id == "r00"], 0.5, seed=0)


def test_epoch_shuffle_depends_on_seed_and_epoch_only():
    a, b = EpochShuffle(10, seed=3), EpochShuffle(10, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) and sorted(a) == list(range(10))
    b.set_epoch(3)
    assert list(a) != list(b)


# ------------------------------------------------------------------------------------------------------ term cache


def test_compute_terms_matches_the_metric_pair_by_pair(dataset):
    data = demo_data(dataset, limit=20, batch_size=3)
    metric = metric_for(MultiScaleCNN(), "cos")
    before = MultiScaleCNN.calls
    table = compute_terms(metric, data, channels=True, progress=False)
    items = data.items
    # items are ordered by reference and cut into batches of 3: one run per reference (its features are reused)
    # plus one per (batch, reference) group of distorted images
    ordered = [it.ref_id for it in sorted(items, key=lambda it: (it.ref_id, it.index))]
    groups = sum(len(set(ordered[s:s + 3])) for s in range(0, len(ordered), 3))
    assert MultiScaleCNN.calls - before == len(set(ordered)) + groups
    assert table.index.tolist() == [it.index for it in items]
    for row, it in enumerate(items[:5]):
        expected = metric.layer_terms(metric.features(it.ref), metric.features(it.dis))[0]
        torch.testing.assert_close(table.layer[row], expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.stack([c.sum(1) for c in table.channel], 1), table.layer, rtol=1e-5, atol=1e-7)
    # run.batch_size is outside the run folder's hash (NOT_RESULT_KEYS): it cuts the work, the terms stay the same
    other = compute_terms(metric, demo_data(dataset, limit=20, batch_size=7), channels=True, progress=False)
    assert other.index.tolist() == table.index.tolist()
    torch.testing.assert_close(other.layer, table.layer, rtol=1e-5, atol=1e-7)


def test_cache_hits_without_the_backbone_and_invalidates_on_backbone_preset_data(dataset, tmp_path):
    cache = tmp_path / "cache"

    def lookup(metric, data, fingerprint="weights-a"):
        key = term_cache_key(metric, fingerprint, False, data, "error")
        return cached_terms(cache, key, lambda save: compute_terms(metric, data, save=save, progress=False))

    metric = metric_for(MultiScaleCNN())
    table, path, computed = lookup(metric, demo_data(dataset))
    assert computed
    before = MultiScaleCNN.calls
    again, path2, computed2 = lookup(metric_for(MultiScaleCNN()), demo_data(dataset))
    assert (path2, computed2) == (path, False) and MultiScaleCNN.calls == before  # no backbone run
    assert torch.equal(again.layer, table.layer)
    changed = [
        lookup(metric, demo_data(dataset), fingerprint="weights-b"),                      # other backbone weights
        lookup(metric_for(MultiScaleCNN(), preset="fixed"), demo_data(dataset)),          # other preset
        lookup(metric, demo_data(dataset, limit=N_REFS * PER_REF - 1)),                   # other item list
        lookup(metric, demo_data(dataset, pair_transform=make_transform("rotate", 1.0))),  # other transform
    ]
    img = read_dataset("demo", dataset, strict=False)[0].dis
    Image.open(img).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(img)  # the same file name, new content
    changed.append(lookup(metric, demo_data(dataset)))
    assert all(c[2] for c in changed)
    assert len({path, *(c[1] for c in changed)}) == 6
    assert not torch.equal(changed[-1][0].layer[0], table.layer[0])


def test_cache_key_follows_the_code_that_computes_terms(dataset, tmp_path, monkeypatch, tiny_backbone):
    metric, data = metric_for(MultiScaleCNN()), demo_data(dataset)
    digest = terms_code_digest(metric.backbone)
    assert re.fullmatch("[0-9a-f]{16}", digest) and terms_code_digest(MultiScaleCNN(seed=1)) == digest
    assert terms_code_digest(tiny_backbone) != digest  # the module that defines the backbone's class counts
    source = inspect.getsource
    edited = {"zsiqa.distances.basic", "zsiqa.windows", __name__}
    for name in edited:  # an edit to the distance, window or backbone code changes the digest
        with monkeypatch.context() as m:
            m.setattr(inspect, "getsource", lambda mod, name=name: source(mod) + ("#" if mod.__name__ == name else ""))
            assert terms_code_digest(metric.backbone) != digest
    with monkeypatch.context() as m:
        m.setattr(term_cache, "__version__", "0.0.0+other")
        assert terms_code_digest(metric.backbone) != digest

    def lookup():
        key = term_cache_key(metric, "weights-a", False, data, "error")
        return key, cached_terms(tmp_path / "cache", key, lambda save: compute_terms(metric, data, save=save, progress=False))

    key, (_, path, computed) = lookup()
    assert computed and key["code"] == digest and not lookup()[1][2]
    monkeypatch.setattr(term_cache, "terms_code_digest", lambda backbone: "0" * 16)  # the code changed: recompute
    new_key, (_, new_path, computed) = lookup()
    assert computed and new_key["code"] == "0" * 16 and new_path != path


def test_compute_terms_resizes_the_distorted_image_only_when_asked(dataset):
    metric = metric_for(MultiScaleCNN())
    data = demo_data(dataset, limit=3, pair_transform=make_transform("scale", 25.0))  # dis 40 px, ref 32 px
    with pytest.raises(ValueError, match=r"differ in size and distance 'l2' compares"):
        compute_terms(metric, data, progress=False)
    table = compute_terms(metric, data, align="resize", progress=False)
    resized = FRMetric(MultiScaleCNN(), get_distance("l2"), align="resize").eval()
    for row, sample in enumerate(PairDataset(data.items, pair_transform=data.pair_transform)):
        assert sample["dis"].shape[-1] == 40
        ref, dis = to_float(sample["ref"]), to_float(sample["dis"])  # the loader keeps 8-bit images as uint8
        assert table.layer[row].sum().item() == pytest.approx(resized(ref, dis).item(), rel=1e-5)
    cfg = compose_config("train", ["transform=scale", "transform.amount=25"])
    assert training.TermSource(metric, "weights-a", cfg).align == "resize"  # align=auto, as evaluate.py


def test_compute_terms_of_no_pairs_is_a_clear_error(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    write_labels(root, [])
    # An empty label file is refused by the reader, before any terms are computed.
    with pytest.raises(ValueError, match=r"demo: .*empty/meta.csv lists no pairs \(empty label file\)"):
        compute_terms(metric_for(MultiScaleCNN()), demo_data(root), progress=False)


# -------------------------------------------------------------------------------------------------- training runs


class EpochCalls(L.Callback):
    """Backbone runs seen at the start of every epoch."""

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.calls[trainer.current_epoch] = MultiScaleCNN.calls


def test_synthetic_single_layer_label_is_learned(dataset, tmp_path):
    terms = label_by_layer(dataset, layer=2)
    sums = terms.sum(1)
    assert correlations(sums, terms[:, 2], True, True)["srcc"] < 0.85  # the layers disagree
    cfg = make_cfg(tmp_path, dataset, "trainer.max_epochs=40", "callbacks.early_stopping.patience=40", "optim.lr=0.1")
    epochs = EpochCalls()
    summary = train(cfg, extra_callbacks=[epochs])
    assert len(set(epochs.calls.values())) == 1 and len(epochs.calls) > 1  # no backbone run during training
    weights = torch.tensor(summary["layer_weights"])
    assert int(weights.argmax()) == 2 and weights[2] / weights.sum() > 0.5
    assert summary["layer_share"][2] > 0.5
    assert summary["trained"]["srcc"] > 0.95 and summary["trained"]["srcc"] > summary["zero_shot"]["srcc"] + 0.1
    # A second run with the same backbone and data reads the cache: the backbone never runs.
    before = MultiScaleCNN.calls
    cfg.run.name = "again"
    train(cfg)
    assert MultiScaleCNN.calls == before


class Crash(L.Callback):
    """Stops the run with an error when epoch ``epoch`` starts (the previous epoch's checkpoint is written)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated interruption")


def test_interrupted_run_resumes_from_last_checkpoint_and_matches_an_uninterrupted_one(dataset, tmp_path):
    label_by_layer(dataset, 1)
    args = ("trainer.max_epochs=6", "callbacks.early_stopping.patience=50")
    whole = train(make_cfg(tmp_path, dataset, *args, "run.name=whole"))
    cfg = make_cfg(tmp_path, dataset, *args, "run.name=cut")
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train(cfg, extra_callbacks=[Crash(epoch=3)])
    ckpt_dir = Path(cfg.run.out) / "cut" / "checkpoints"
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=True)["epoch"] == 2
    epochs = EpochCalls()
    resumed = train(cfg, extra_callbacks=[epochs])
    assert min(epochs.calls) == 3 and max(epochs.calls) == 5  # epochs 0-2 were not trained again
    assert resumed["layer_weights"] == pytest.approx(whole["layer_weights"], rel=1e-6)
    assert resumed["trained"]["srcc"] == pytest.approx(whole["trained"]["srcc"], abs=1e-9)
    # A rerun of a finished run trains nothing; other settings in the same folder are an error.
    epochs = EpochCalls()
    train(cfg, extra_callbacks=[epochs])
    assert epochs.calls == {}
    with pytest.raises(ValueError, match="trainer; callbacks differ"):
        train(make_cfg(tmp_path, dataset, "trainer.max_epochs=7", "run.name=cut"))


def test_a_run_folder_refuses_other_precision_or_backbone_weights(dataset, tmp_path, monkeypatch):
    label_by_layer(dataset, 1)
    args = ("trainer.max_epochs=2", "run.name=one")
    train(make_cfg(tmp_path, dataset, *args))
    saved = json.loads((tmp_path / "runs" / "one" / "metric.json").read_text())
    assert saved["metric"]["precision"] == "float32" and len(saved["fingerprint"]) == 64
    with pytest.raises(ValueError, match=r"checkpoints of a different configuration \(precision \('float32' then, 'bfloat16' now\)"):
        train(make_cfg(tmp_path, dataset, *args, "run.precision=bf16"))
    with monkeypatch.context() as m:  # a new weights file at the same path: same config, other fingerprint
        m.setattr(training, "backbone_fingerprint", lambda backbone: "f" * 64)
        with pytest.raises(ValueError, match="backbone weights \\(fingerprint"):
            train(make_cfg(tmp_path, dataset, *args))
    epochs = EpochCalls()  # the same settings still re-evaluate the finished run ...
    train(make_cfg(tmp_path, dataset, *args), extra_callbacks=[epochs])
    assert epochs.calls == {}
    epochs = EpochCalls()  # ... and run.resume=false starts over with the new settings
    train(make_cfg(tmp_path, dataset, *args, "run.precision=bf16", "run.resume=false"), extra_callbacks=[epochs])
    assert sorted(epochs.calls) == [0, 1]
    assert json.loads((tmp_path / "runs" / "one" / "metric.json").read_text())["metric"]["precision"] == "bfloat16"


@pytest.mark.parametrize("weighting", ["layer", "channel"])
def test_trained_checkpoint_reproduces_validation_scores_in_evaluate(dataset, tmp_path, weighting):
    from zsiqa.engine.evaluation import evaluate, run_dir_for

    label_by_layer(dataset, 1)
    summary = train(make_cfg(tmp_path, dataset, f"weighting={weighting}", "trainer.max_epochs=5"))
    run_dir = Path(summary["run_dir"])
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=True)["state_dict"]
        assert ckpt.stat().st_size < 32_000 and all(k.startswith("weights.") for k in state)  # kilobytes, no backbone
        assert read_trained(ckpt)[1]["backbone"] == BACKBONE  # any checkpoint of the run is a trained file too
    cfg = compose_config("evaluate", [f"backbone={BACKBONE}", "distance=[l2]", "baselines=[]", f"trained={summary['trained_weights']}",
                                      f"run.out={tmp_path / 'eval'}", "run.num_workers=0", f"data.root={dataset}",
                                      "data.strict=false"])
    evaluate(cfg)
    with open(run_dir_for(cfg) / "scores.csv", newline="") as f:
        scored = {int(r["index"]): r for r in csv.DictReader(f)}
    with open(run_dir / "val_scores.csv", newline="") as f:
        val = list(csv.DictReader(f))
    ours = torch.tensor([float(r["trained"]) for r in val])
    theirs = torch.tensor([float(scored[int(r["index"])]["l2_trained"]) for r in val])
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor([float(scored[int(r["index"])]["l2"]) for r in val]),
                               torch.tensor([float(r["zero_shot"]) for r in val]), rtol=1e-5, atol=0)
    labels = [float(r["label"]) for r in val]
    assert correlations(theirs, labels, True, True)["srcc"] == pytest.approx(summary["trained"]["srcc"], abs=1e-9)


def test_bad_settings_are_clear_errors(dataset, tmp_path):
    with pytest.raises(ValueError, match="only l2, cos and cos_channel"):
        train(make_cfg(tmp_path, dataset, "distance=jsd"))
    with pytest.raises(ValueError, match="weighting=rows: choose one of layer, channel"):
        train(make_cfg(tmp_path, dataset, "weighting=rows"))
    with pytest.raises(ValueError, match="loss=mse: choose one of fidelity, plcc, srcc"):
        train(make_cfg(tmp_path, dataset, "loss=mse"))


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("name", ["l2", "cos", "cos_channel"])
def test_training_maps_distances_as_create_metric_does(name, preset):
    from zsiqa.engine.build import build_metrics

    cfg = compose_config("train", [f"distance={name}", f"preset={preset}", "backbone.pretrained=false"])
    (metric,) = build_metrics(cfg, "cpu").values()
    assert metric.distance.name == resolve_distance(name, preset)
    assert (metric.distance.name != name) == (preset == "fixed" and name in FIXED_VARIANTS)


def test_epoch_order_is_seeded_by_split_seed_and_no_inert_seed_is_offered(dataset, tmp_path):
    cfg = compose_config("train")
    assert not hasattr(cfg.run, "seed")  # run.seed had no effect: nothing else draws random numbers

    class Seeds(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.seed = trainer.train_dataloader.sampler.seed

    label_by_layer(dataset, 1)
    seeds = Seeds()
    train(make_cfg(tmp_path, dataset, "trainer.max_epochs=1", "split.seed=5"), extra_callbacks=[seeds])
    assert seeds.seed == 5


def test_run_folder_name_is_as_documented():
    cfg = compose_config("train", ["transform=rotate", "transform.amount=5", "run.out=out"])
    name = train_dir_for(cfg).name
    assert re.fullmatch(r"efficientnet_lite0_l2_paper_layer_fidelity_rotate@5_[0-9a-f]{6}", name)
    plain = compose_config("train", ["run.out=out"])
    assert re.fullmatch(r"efficientnet_lite0_l2_paper_layer_fidelity_[0-9a-f]{6}", train_dir_for(plain).name)
    doc = "<backbone>_<distance>_<preset>_<weighting>_<loss>[_<transform>]_<hash"
    assert doc in (Path(__file__).resolve().parents[2] / "configs" / "hydra" / "help" / "train.yaml").read_text()
    assert doc in (Path(__file__).resolve().parents[2] / "configs" / "train.yaml").read_text()


def test_sweep_cells_get_one_run_folder_each():
    runs = [compose_config("train", [f"distance={d}", f"loss={loss}"]) for d in ("l2", "cos") for loss in ("fidelity", "plcc")]
    assert len({train_dir_for(c) for c in runs}) == 4
    # Keys that can change the terms or the fit give other folders; how the work is cut does not.
    base = train_dir_for(runs[0])
    for key in ("run.precision=bf16", "data.limit=10", "run.max_image_side=100", "backbone.pretrained=false", "test=[]"):
        assert train_dir_for(compose_config("train", ["distance=l2", "loss=fidelity", key])) != base, key
    for key in ("run.batch_size=3", "run.num_workers=4", "run.devices=2", "logger=wandb", "run.cache_dir=/c"):
        assert train_dir_for(compose_config("train", ["distance=l2", "loss=fidelity", key])) == base, key
    kadid = compose_config("train", ["experiment=train_kadid_sweep", "data.root=/k"])
    assert kadid.logger["_target_"].endswith("wandb_logger") and kadid.logger["group"] == "train_kadid_sweep"


def _train_cli():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_cli", Path(__file__).resolve().parents[2] / "train.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_train_py_help(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["train.py"])
    assert _train_cli().main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "python train.py [-m] [key=value ...]" in out and "weighting=layer|channel" in out
    assert "transform: crop, elastic, none" in out  # Hydra lists the groups and their options


@pytest.mark.slow
def test_train_py_without_arguments_runs_the_offline_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["train.py"])
    assert _train_cli().main([]) == 0
    (path,) = (tmp_path / "runs" / "train" / "demo").glob("*/summary.json")
    summary = json.loads(path.read_text())
    assert summary["config"]["backbone"]["name"] == "efficientnet_lite0" and summary["n_val"] == 48
    assert summary["trained"]["srcc"] > summary["zero_shot"]["srcc"] + 0.05
    assert Path(summary["trained_weights"]).stat().st_size < 10_000 and summary["test"]["demo"]["in_domain"]
    # test.md: SRCC / PLCC with their reference-bootstrap intervals, and SRCC per distortion type
    demo = summary["test"]["demo"]["trained"]
    lo, hi = demo["srcc_ci"]
    table = (path.parent / "test.md").read_text()
    assert lo <= demo["srcc"] <= hi and f"{demo['srcc']:.4f} [{lo:.3f}, {hi:.3f}]" in table
    assert "#### demo: SRCC by distortion type" in table and "| blur | 24 |" in table
    assert set(demo["by_type"]) == {"blur", "brightness", "contrast", "jpeg", "noise", "shift"}


@pytest.mark.slow
def test_two_process_terms_and_weights_equal_one_process(tmp_path):
    """``run.devices=2``: the term table is computed in 2 CPU processes (gloo) and the weights fit on process 0; both equal
    the one-process run bit for bit."""
    import os
    import subprocess
    import sys

    from zsiqa.data import build_demo

    repo = Path(__file__).resolve().parents[2]
    demo = build_demo(tmp_path / "demo")

    def run(devices: int) -> tuple[dict, dict, dict]:
        out = tmp_path / f"d{devices}"
        cmd = [sys.executable, "train.py", "backbone.name=timm:vit_tiny_patch16_224", "backbone.pretrained=false",
               f"data.root={demo}", "data.limit=48", "test=[]", f"run.out={out}", "run.name=r", "run.batch_size=5",
               "run.num_workers=0", "run.accelerator=cpu", f"run.devices={devices}", "trainer.max_epochs=3"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (f"MEMBER: 2/{devices}" in proc.stderr + proc.stdout) == (devices == 2)  # Lightning's DDP start-up line
        (cache,) = (out / "cache").glob("*.pt")  # the merged table; no part files are left beside it (its lock stays)
        assert sorted((out / "cache").iterdir()) == [cache, cache.with_name(cache.name + ".lock")]
        summary = json.loads((out / "r" / "summary.json").read_text())
        return torch.load(cache, weights_only=True), torch.load(out / "r" / "trained.pt", weights_only=True), summary

    table1, weights1, summary1 = run(1)
    table2, weights2, summary2 = run(2)
    assert summary2["terms"][0]["computed"] and len(table2["index"]) == 48  # 2 references x 24 distorted images
    assert torch.equal(table1["index"], table2["index"]) and torch.equal(table1["layer"], table2["layer"])
    assert weights1["state"].keys() == weights2["state"].keys()
    assert all(torch.equal(weights1["state"][k], weights2["state"][k]) for k in weights1["state"])
    assert summary1["trained"] == summary2["trained"] and summary1["layer_weights"] == summary2["layer_weights"]


def test_a_logger_added_to_a_finished_run_gets_its_curves_from_the_runs_own_logs(dataset, tmp_path, capsys):
    """train.py logger=wandb on a run that finished with the CSV logger replays its curves; on one that kept no
    logs it says so in one line."""
    import wandb

    label_by_layer(dataset, 1)
    args = ("trainer.max_epochs=3", "callbacks.early_stopping.patience=50")
    train(make_cfg(tmp_path, dataset, *args, "run.name=r"))
    capsys.readouterr()
    train(make_cfg(tmp_path, dataset, *args, "run.name=r", "logger=wandb", "logger.mode=offline"))
    wandb.teardown()  # the offline record is written asynchronously
    out = capsys.readouterr().out
    assert "logged the training curves of" in out and "logs/version_0/metrics.csv" in out
    (record,) = (tmp_path / "runs" / "r" / "wandb").glob("offline-run-*/*.wandb")
    assert b"val/srcc" in record.read_bytes() and b"train/loss" in record.read_bytes()
    train(make_cfg(tmp_path, dataset, *args, "run.name=bare", "logger=none"))
    capsys.readouterr()
    train(make_cfg(tmp_path, dataset, *args, "run.name=bare", "logger=wandb", "logger.mode=offline"))
    wandb.teardown()
    assert "was trained without CSV logs, so its curves cannot be logged now; run.resume=false" in capsys.readouterr().out
