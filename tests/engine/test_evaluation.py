"""The evaluation engine end to end on the demo set with a small random-init timm ViT."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zsiqa import create_metric
from zsiqa.config import compose_config
from zsiqa.data import read_dataset
from zsiqa.data.datamodule import batch_pairs, spread_limit
from zsiqa.engine import scoring
from zsiqa.engine.evaluation import evaluate, run_dir_for
from zsiqa.errors import run_entry_point
from zsiqa.reporting.results import read_rows
from zsiqa.reporting.sweep import gather

REPO = Path(__file__).resolve().parents[2]
BACKBONE = "timm:vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from zsiqa.data import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"))


def cell(tmp_path, demo_root, *extra):
    return compose_config("evaluate", [
        f"backbone.name={BACKBONE}", "backbone.pretrained=false", "distance=[l2,cos,wsd]", "baselines=[psnr,ssim]",
        f"data.root={demo_root}", "data.limit=10", f"run.out={tmp_path}", "run.batch_size=4", "run.num_workers=0",
        "run.accelerator=cpu", *extra,
    ])


def limited(demo_root, n):
    """The dataset indices that data.limit=n scores."""
    return [it.index for it in spread_limit(read_dataset("demo", demo_root), n)]


def read_scores(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_engine_matches_the_metric_and_writes_every_output(tmp_path, demo_root):
    cfg = cell(tmp_path, demo_root)
    summary = evaluate(cfg)
    run_dir = run_dir_for(cfg)
    assert run_dir.parent == tmp_path / "demo" / "none" and run_dir.name.startswith("timm-vit_tiny_patch16_224_paper_")
    assert summary["run_dir"] == str(run_dir)
    for name in ("config.yaml", "scores.csv", "summary.json", "table.md", "scatter.png", "hardest_pairs.png"):
        assert (run_dir / name).is_file(), name
    rows = read_scores(run_dir / "scores.csv")
    assert [int(r["index"]) for r in rows] == limited(demo_root, 10)
    assert summary["metrics"]["l2"]["n_scored"] == 10 and summary["metrics"]["psnr"]["lower_better"] is False
    # each reference's features computed once: data.limit=10 spreads the pairs over the 6 references
    assert summary["reference_feature_computations_rank0"] == len({r["ref_id"] for r in rows}) == 6
    # engine scores (cached reference, batched) equal the plain metric called pair by pair
    metric = create_metric(BACKBONE, "wsd", pretrained=False, device="cpu")
    for r in rows[:3]:
        direct = float(metric(r["ref"], r["dis"])[0])
        assert float(r["wsd"]) == pytest.approx(direct, rel=1e-5)
    table = (run_dir / "table.md").read_text()
    assert "| l2 |" in table and "| psnr |" in table
    saved = json.loads((run_dir / "summary.json").read_text())
    assert set(saved["metrics"]) == {"l2", "cos", "wsd", "psnr", "ssim"}


def test_interrupted_run_resumes_without_recomputing(tmp_path, demo_root, monkeypatch):
    full = evaluate(cell(tmp_path / "full", demo_root))
    calls = {"n": 0}
    original = scoring.ScoringModule.predict_step

    def interrupted(self, batch, batch_idx):
        if batch_idx == 1:
            raise KeyboardInterrupt
        calls["n"] += batch_pairs(batch)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(scoring.ScoringModule, "predict_step", interrupted)
    cfg = cell(tmp_path / "resumed", demo_root)
    with pytest.raises(SystemExit):  # Lightning shuts down gracefully on Ctrl-C, then exits
        evaluate(cfg)
    monkeypatch.setattr(scoring.ScoringModule, "predict_step", original)
    assert calls["n"] == 4
    resumed = evaluate(cfg)
    assert resumed["pairs_scored_now"] == 6  # 10 pairs, 4 already in the CSV
    a = read_scores(Path(full["run_dir"]) / "scores.csv")
    b = read_scores(run_dir_for(cfg) / "scores.csv")
    assert [r["index"] for r in a] == [r["index"] for r in b]
    for ra, rb in zip(a, b):
        for col in ("l2", "cos", "wsd", "psnr"):
            assert float(ra[col]) == pytest.approx(float(rb[col]), rel=1e-6)
    assert resumed["metrics"]["l2"]["srcc"] == pytest.approx(full["metrics"]["l2"]["srcc"])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to fail writes like a full disk")
def test_a_full_disk_is_one_line_and_the_same_command_resumes(tmp_path, demo_root, monkeypatch, capsys):
    """scores.csv's write fails as on a full disk (its temporary file points at /dev/full): one line naming the file,
    exit code 1, the scored rows kept; with space again the same run scores nothing twice and writes every output."""
    cfg = cell(tmp_path, demo_root)
    run_dir = run_dir_for(cfg)
    run_dir.mkdir(parents=True)
    full = run_dir / ".scores.csv.tmp"
    full.symlink_to("/dev/full")
    monkeypatch.setattr("zsiqa.files.temp_path", lambda p: full if p.name == "scores.csv" else p.with_name(f".{p.name}.x"))
    assert run_entry_point(lambda: evaluate(cfg), "evaluate.py") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line and not line.startswith(("scoring:", "device:"))]  # no bar
    assert err == [f"evaluate.py: error: {run_dir / 'scores.csv'}: No space left on device (a write failed). Free some "
                   "space on that disk, or write the run elsewhere (run.out=...), and run the same command again: it "
                   "resumes from what was already written"]
    assert not (run_dir / ".scores.csv.tmp").is_symlink() and len(read_rows(run_dir)) == 10

    scored = {"n": 0}
    original = scoring.ScoringModule.predict_step

    def counting(self, batch, batch_idx):
        scored["n"] += batch_pairs(batch)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(scoring.ScoringModule, "predict_step", counting)
    resumed = evaluate(cfg)
    assert scored["n"] == 0 and resumed["pairs_scored_now"] == 0
    assert [int(r["index"]) for r in read_scores(run_dir / "scores.csv")] == limited(demo_root, 10)
    assert (run_dir / "summary.json").is_file() and (run_dir / "scatter.png").is_file()


def test_resume_refuses_a_different_configuration(tmp_path, demo_root):
    evaluate(cell(tmp_path, demo_root, "run.name=mine"))
    with pytest.raises(ValueError, match="different configuration"):
        evaluate(cell(tmp_path, demo_root, "distance=[l2]", "run.name=mine"))


def test_different_settings_get_their_own_folder_and_the_same_command_resumes(tmp_path, demo_root):
    """The default folder name holds a hash of the score settings: commands that score differently run one after
    another in one run.out, in any order; the same command finds its folder again and scores nothing twice."""
    first = evaluate(cell(tmp_path, demo_root, "data.limit=4"))
    other = evaluate(cell(tmp_path, demo_root, "data.limit=4", "distance=[l2]", "baselines=[]"))
    aligned = evaluate(cell(tmp_path, demo_root, "data.limit=4", "align=resize"))
    assert len({first["run_dir"], other["run_dir"], aligned["run_dir"]}) == 3
    again = evaluate(cell(tmp_path, demo_root, "data.limit=4"))
    assert again["run_dir"] == first["run_dir"] and again["pairs_scored_now"] == 0
    assert {k: m["srcc"] for k, m in again["metrics"].items()} == {k: m["srcc"] for k, m in first["metrics"].items()}


def test_geometric_suite_cells_gather_into_one_table(tmp_path, demo_root):
    for transform in ("none", "{name:rotate,amount:5}", "{name:scale,amount:-25}"):
        evaluate(compose_config("evaluate", [
            "experiment=geometric_suite", f"backbone.name={BACKBONE}", "backbone.pretrained=false",
            "distance=[deepssim,l2]", "baselines=[psnr]", f"transform={transform}", f"data.root={demo_root}",
            "data.limit=8", f"run.out={tmp_path / 'runs'}", "run.num_workers=0", "run.accelerator=cpu",
        ]))
    path, grid, unfinished = gather(tmp_path / "runs")
    assert unfinished == 0
    assert path == tmp_path / "runs" / "grid.md" and path.read_text() == grid
    assert "demo rotate@5 SRCC" in grid and "demo scale@-25 PLCC" in grid
    assert f"| {BACKBONE} deepssim |" in grid and "| psnr |" in grid
    with open(path.with_suffix(".csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["dist_type"] == "all"]
    assert len(rows) == 3 * 3 and {r["transform"] for r in rows} == {"none", "rotate@5", "scale@-25"}


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(tmp_path, demo_root):
    def run(devices, *extra):
        out = tmp_path / f"d{devices}{len(extra)}"
        cmd = [sys.executable, "evaluate.py", f"backbone.name={BACKBONE}", "backbone.pretrained=false",
               "distance=[l2,skld]", "baselines=[psnr]", f"data.root={demo_root}", "data.limit=13", f"run.out={out}", "run.batch_size=3",
               "run.num_workers=0", "run.accelerator=cpu", f"run.devices={devices}", *extra]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
        (run_dir,) = (out / "demo" / "none").iterdir()
        return read_scores(run_dir / "scores.csv"), json.loads((run_dir / "summary.json").read_text())

    rows1, sum1 = run(1)
    rows2, sum2 = run(2)
    assert sum2["world_size"] == 2 and len(rows2) == 13
    assert rows1 == rows2  # identical per-image scores, bit for bit, nothing repeated or missing
    assert sum1["metrics"] == sum2["metrics"]
    rows, summary = run(2, "data.limit=2")  # one batch: process 1 has nothing to do, which must not fail
    assert summary["world_size"] == 2 and [int(r["index"]) for r in rows] == limited(demo_root, 2)
    assert rows == [r for r in rows1 if int(r["index"]) in limited(demo_root, 2)]  # data.limit=2 pairs are among 13's


@pytest.mark.slow
def test_evaluate_py_without_arguments(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "ZSIQA_DEMO_ROOT": str(tmp_path / "demo")}
    proc = subprocess.run([sys.executable, str(REPO / "evaluate.py")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = [line for line in re.split(r"[\r\n]", proc.stderr) if line.strip() and not line.startswith("scoring:")]
    assert said == ["device: cpu"]  # a new user sees the device line and the progress bar, no warning
    (run_dir,) = (tmp_path / "runs" / "demo" / "none").glob("efficientnet_lite0_paper_*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "runs"]  # no outputs/ or .hydra/ litter
    assert summary["n_items"] == 144 and (run_dir / "scatter.png").stat().st_size > 10_000
    # real weights on real photos: the deep distances track the distortion severity
    assert all(summary["metrics"][m]["srcc"] > 0.4 for m in ("l2", "cos", "skld", "jsd", "wsd"))
    assert "python evaluate.py backbone=dino_vitb16" in proc.stdout


def test_wandb_offline_run_has_config_summary_table_and_plot(tmp_path, demo_root):
    import wandb

    summary = evaluate(cell(tmp_path, demo_root, "logger=wandb", "logger.mode=offline", "logger.group=g1"))
    wandb.teardown()  # the W&B service writes the offline record asynchronously; this waits until it is on disk
    run_dir = Path(summary["run_dir"])
    (offline,) = list((run_dir / "wandb").glob("offline-run-*"))
    assert list(offline.glob("files/media/images/scatter_*.png"))
    assert list(offline.glob("files/media/images/hardest_pairs_*.png")) and (run_dir / "hardest_pairs.png").is_file()
    (table,) = list(offline.glob("files/media/table/per_image_*.table.json"))
    assert len(json.loads(table.read_text())["data"]) == 10
    (per_type,) = list(offline.glob("files/media/table/per_type_*.table.json"))
    types = {r["dist_type"] for r in read_scores(run_dir / "scores.csv")}
    assert len(json.loads(per_type.read_text())["data"]) == len(types) * len(summary["metrics"])
    (record,) = list(offline.glob("*.wandb"))  # the offline record (protobuf) holds config, metrics and tags
    blob = record.read_bytes()
    some_type = sorted(types)[0]
    for text in ("l2/srcc", "psnr/plcc_fit", "l2/srcc_ci_lo", "timm:vit_tiny_patch16_224", "zero-shot", "g1", "preset",
                 f"l2/{some_type}/n", "per_type_srcc"):
        assert text.encode() in blob, text
    assert summary["metrics"]["l2"]["n_scored"] == 10


def test_resume_false_replaces_results_of_another_configuration(tmp_path, demo_root):
    evaluate(cell(tmp_path, demo_root, "run.name=mine"))
    summary = evaluate(cell(tmp_path, demo_root, "distance=[l2]", "run.resume=false", "run.name=mine"))
    rows = read_scores(tmp_path / "mine" / "scores.csv")
    assert summary["pairs_scored_now"] == 10 and "l2" in rows[0] and "cos" not in rows[0]


def test_sweep_cells_never_share_a_run_folder(tmp_path, demo_root):
    cells = [cell(tmp_path, demo_root, f"run.precision={p}") for p in ("fp32", "bf16")]
    assert run_dir_for(cells[0]) != run_dir_for(cells[1])


def test_vgg16_deepssim_metric_is_the_official_deepssim(demo_root):
    from zsiqa.distances.deepssim import deepssim_score

    metric = create_metric("vgg16", "deepssim", pretrained=False, device="cpu")  # ImageNet-normalised under any preset
    assert metric.normalize
    ref, dis = demo_root / "ref" / "coffee.png", demo_root / "dis" / "coffee_blur_2.png"
    from zsiqa.images import to_batch

    expected = deepssim_score(metric.backbone, to_batch(ref), to_batch(dis))
    assert float(metric(ref, dis)[0]) == pytest.approx(float(expected[0]), rel=1e-6)
