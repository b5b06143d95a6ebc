"""The field's FR metrics (pyiqa, the ``baselines`` extra) scored by zsiqa's engine equal pyiqa called directly on the
same decoded tensors: weight-free ones at batch 1 and 16 and in 2-process DDP; lpips, dists and stlpips from weight
files in the library's format where its resolver looks; missing weights offline are one line."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pyiqa = pytest.importorskip("pyiqa")

from zsiqa import create_metric  # noqa: E402
from zsiqa.baselines import get_baseline  # noqa: E402
from zsiqa.config import compose_config  # noqa: E402
from zsiqa.engine.evaluation import evaluate  # noqa: E402
from zsiqa.errors import ConfigError, WeightsUnavailableError, run_entry_point  # noqa: E402
from zsiqa.images import read_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WEIGHT_FREE = ["fsim", "vsi", "gmsd", "vif", "nlpd", "cw_ssim"]
WEIGHTED = ["lpips", "dists", "stlpips"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from zsiqa.data import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"))


def scores_of(run_dir: Path) -> list[dict]:
    with open(run_dir / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


def direct(name: str, rows: list[dict]) -> list[float]:
    """pyiqa's own metric on the decoded files, pair by pair (distorted image first)."""
    metric = pyiqa.create_metric(name, device=torch.device("cpu"))
    return [float(metric(read_image(r["dis"], "ignore")[None], read_image(r["ref"], "ignore")[None]))
            for r in rows]


def run(tmp_path: Path, demo_root: Path, baselines: list[str], *extra: str) -> dict:
    cfg = compose_config("evaluate", [
        "backbone=efficientnet_lite0", "backbone.pretrained=false", "distance=[l2]", f"baselines=[{','.join(baselines)}]",
        f"data.root={demo_root}", "data.limit=6", f"run.out={tmp_path}", "run.num_workers=0", "run.accelerator=cpu",
        *extra])
    return evaluate(cfg)


def test_weight_free_metrics_equal_pyiqa_at_batch_1_and_16(tmp_path, demo_root):
    one = run(tmp_path / "b1", demo_root, WEIGHT_FREE, "run.batch_size=1")
    sixteen = run(tmp_path / "b16", demo_root, WEIGHT_FREE, "run.batch_size=16")
    rows1, rows16 = scores_of(Path(one["run_dir"])), scores_of(Path(sixteen["run_dir"]))
    assert [r["index"] for r in rows1] == [r["index"] for r in rows16] and len(rows1) == 6
    for name in WEIGHT_FREE:
        expected = direct(name, rows1)
        for rows in (rows1, rows16):
            assert [float(r[name]) for r in rows] == pytest.approx(expected, rel=1e-5, abs=1e-7), name
        batched = get_baseline(name).fn(*(torch.stack([read_image(r[k], "ignore") for r in rows1]) for k in ("ref", "dis")))
        assert batched.tolist() == pytest.approx(expected, rel=1e-5, abs=1e-7), name  # all pairs in one call (GPUs)
        m = one["metrics"][name]
        assert m["lower_better"] == bool(pyiqa.create_metric(name, device=torch.device("cpu")).lower_better)
        assert m["n_scored"] == 6 and "srcc" in m
    grid_table = (Path(one["run_dir"]) / "table.md").read_text()
    assert all(f"| {name} |" in grid_table for name in WEIGHT_FREE)


def test_own_names_stay_and_pyiqas_take_a_prefix(tmp_path, demo_root):
    summary = run(tmp_path, demo_root, ["psnr", "pyiqa:psnr", "ssim", "pyiqa:ssim"], "run.batch_size=4")
    rows = scores_of(Path(summary["run_dir"]))
    assert {"psnr", "pyiqa:psnr", "ssim", "pyiqa:ssim"} <= set(rows[0])
    assert [float(r["pyiqa:psnr"]) for r in rows] == pytest.approx(direct("psnr", rows), rel=1e-5)
    assert get_baseline("psnr").module is None and get_baseline("pyiqa:psnr").module is not None


def test_unknown_and_uninstalled_names_are_one_line(monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown baseline 'fsimc' \(did you mean fsim\?\)"):
        compose_config("evaluate", ["baselines=[fsimc]"])
    import zsiqa.pyiqa_baselines as pb

    monkeypatch.setattr(pb, "installed", lambda: False)
    pb.fr_names.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"baseline 'lpips' is pyiqa's and pyiqa is not installed; install the "
                                              r"extra: pip install -e \"\.\[baselines\]\""):
            compose_config("evaluate", ["baselines=[lpips]"])
    finally:
        pb.fr_names.cache_clear()


def test_the_python_api_and_the_cli_score_a_pair(demo_root, capsys):
    from zsiqa.cli import main as cli_main
    from zsiqa.data import read_dataset

    item = read_dataset("demo", demo_root)[5]
    metric = create_metric(baseline="gmsd", device="cpu")
    score = float(metric(str(item.ref), str(item.dis))[0])
    assert score == pytest.approx(direct("gmsd", [{"ref": item.ref, "dis": item.dis}])[0], rel=1e-5)
    assert metric.lower_better is True
    assert run_entry_point(lambda: cli_main(["score", str(item.ref), str(item.dis), "--baseline", "gmsd", "-q"]),
                           "zsiqa") == 0
    assert float(capsys.readouterr().out) == pytest.approx(score, rel=1e-5)


# ----------------------------------------------------------------------------------------------- weights


def _random_state(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """He-scaled random conv weights and zero biases; layers wider than 1M values are one broadcast value (the
    file stays small: torchvision's classifiers, which the metrics do not use)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in shapes.items():
        if shape.numel() > 1_000_000:
            state[k] = torch.zeros(1).expand(shape)
        elif k.endswith("weight") and len(shape) > 1:
            state[k] = torch.randn(shape, generator=g) * (2.0 / shape[1:].numel()) ** 0.5
        else:
            state[k] = torch.zeros(shape)
    return state


def write_weight_files(torch_home: Path) -> list[Path]:
    """Random weights in every file lpips, dists and stlpips (and their VGG variants) load, where pyiqa and
    torchvision look:
    ``$TORCH_HOME/hub/checkpoints`` (AlexNet, VGG16) and ``$TORCH_HOME/hub/pyiqa`` (pyiqa's own files)."""
    import torchvision
    from pyiqa.archs.dists_arch import DISTS
    from pyiqa.archs.lpips_arch import LPIPS
    from pyiqa.archs.stlpips_arch import STLPIPS

    checkpoints, own = torch_home / "hub" / "checkpoints", torch_home / "hub" / "pyiqa"
    checkpoints.mkdir(parents=True)
    own.mkdir(parents=True)
    files = []
    for i, (build, name) in enumerate(((torchvision.models.alexnet, "alexnet-owt-7be5be79.pth"),
                                       (torchvision.models.vgg16, "vgg16-397923af.pth"))):
        with torch.device("meta"):
            shapes = {k: v.shape for k, v in build().state_dict().items()}
        torch.save(_random_state(shapes, i), checkpoints / name)
        files.append(checkpoints / name)
    for i, (arch, name) in enumerate(((lambda: LPIPS(pretrained=False, net="alex"), "LPIPS_v0.1_alex-df73285e.pth"),
                                      (lambda: LPIPS(pretrained=False, net="vgg"), "LPIPS_v0.1_vgg-a78928a0.pth"),
                                      (lambda: DISTS(pretrained=False), "DISTS_weights-f5e65c96.pth"),
                                      (lambda: STLPIPS(pretrained=False, net="alex"), "alex_shift_tolerant.pth"),
                                      (lambda: STLPIPS(pretrained=False, net="vgg"), "vgg_shift_tolerant.pth"))):
        torch.manual_seed(10 + i)  # the architectures' own random initialisation (DISTS: alpha, beta ~ N(0.1, 0.01))
        torch.save(arch().state_dict(), own / name)
        files.append(own / name)
    return files


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty ``TORCH_HOME`` for this test (pyiqa reads its cache folder once, at import: repointed too)."""
    import pyiqa.utils.download_util as download_util

    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(home / "hub" / "pyiqa"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home


def test_weighted_metrics_load_the_files_where_the_resolver_looks(tmp_path, demo_root, torch_home):
    write_weight_files(torch_home)
    summary = run(tmp_path / "runs", demo_root, WEIGHTED, "run.batch_size=3")
    rows = scores_of(Path(summary["run_dir"]))
    for name in WEIGHTED:
        got = [float(r[name]) for r in rows]
        assert got == pytest.approx(direct(name, rows), rel=1e-5), name
        assert len(set(got)) > 1, name  # the random weights give a real spread, not one constant
        assert summary["metrics"][name]["lower_better"] is True


def test_missing_weights_offline_fail_before_scoring_naming_metric_file_and_command(torch_home):
    with pytest.raises(WeightsUnavailableError) as e:
        get_baseline("lpips")
    message = str(e.value)
    assert message.startswith("baseline 'lpips': its weights ") and "alexnet-owt-7be5be79.pth are missing" in message
    assert "HF_HUB_OFFLINE=1 forbids downloading" in message and "zsiqa download --baselines lpips" in message


def test_missing_weights_with_the_host_unreachable_fail_at_once(torch_home, monkeypatch):
    from huggingface_hub import constants

    import zsiqa.pyiqa_baselines as pb

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(pb, "unreachable", lambda url: f"the network is unreachable: no connection to {url[:30]}")
    write_weight_files(torch_home)
    (torch_home / "hub" / "pyiqa" / "LPIPS_v0.1_alex-df73285e.pth").unlink()  # AlexNet present, LPIPS's own missing
    with pytest.raises(WeightsUnavailableError, match=r"LPIPS_v0.1_alex-df73285e.pth are missing and the network is "
                                                      r"unreachable.*huggingface.co"):
        get_baseline("lpips")


@pytest.mark.slow
def test_evaluate_py_offline_without_weights_is_one_line(tmp_path, demo_root):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "evaluate.py", "baselines=[lpips]", "data.limit=4", f"data.root={demo_root}",
                           "backbone=efficientnet_lite0", f"run.out={tmp_path}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    err = [line for line in proc.stderr.splitlines() if line and not line.startswith("device:")]
    assert proc.returncode == 1 and len(err) == 1 and "Traceback" not in proc.stderr
    assert err[0].startswith("evaluate.py: error: baseline 'lpips': its weights ") and "zsiqa download" in err[0]
    assert not list(tmp_path.glob("demo/none/*/scores.csv"))  # nothing scored


@pytest.mark.slow
def test_two_process_ddp_equals_one_process(tmp_path, demo_root):
    def cell(devices):
        out = tmp_path / f"d{devices}"
        subprocess.run([sys.executable, "evaluate.py", "backbone=efficientnet_lite0", "backbone.pretrained=false",
                        "distance=[]", "baselines=[fsim,gmsd,nlpd]", f"data.root={demo_root}", "data.limit=7",
                        f"run.out={out}", "run.batch_size=2", "run.num_workers=0", "run.accelerator=cpu",
                        f"run.devices={devices}"], cwd=REPO, check=True, capture_output=True, timeout=600,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"})
        (run_dir,) = (out / "demo" / "none").iterdir()
        return scores_of(run_dir), json.loads((run_dir / "summary.json").read_text())

    (rows1, sum1), (rows2, sum2) = cell(1), cell(2)
    assert sum2["world_size"] == 2 and rows1 == rows2 and len(rows1) == 7 and sum1["metrics"] == sum2["metrics"]
    for name in ("fsim", "gmsd", "nlpd"):
        assert [float(r[name]) for r in rows2] == pytest.approx(direct(name, rows2), rel=1e-5), name


def make_pipal(root: Path, refs: int = 3, per_ref: int = 4) -> Path:
    """A small PIPAL-layout folder: Train_Ref/A000r.bmp, Train_Dis/A000r_00_0j.bmp (blur and noise of growing
    strength, 288x288 as PIPAL), Train_Label/A000r.txt with Elo labels falling with the strength."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    for d in ("Train_Ref", "Train_Dis", "Train_Label"):
        (root / d).mkdir(parents=True)
    for r in range(1, refs + 1):
        base = Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).resize((288, 288), Image.BICUBIC)
        base.save(root / "Train_Ref" / f"A{r:04d}.bmp")
        lines = []
        for j in range(per_ref):
            dis = np.asarray(base.filter(ImageFilter.GaussianBlur(0.5 + j)), dtype=np.float64)
            dis = np.clip(dis + rng.normal(0, 4 * (j + 1), dis.shape), 0, 255).astype(np.uint8)
            name = f"A{r:04d}_00_{j:02d}.bmp"
            Image.fromarray(dis).save(root / "Train_Dis" / name)
            lines.append(f"{name},{1600 - 60 * j - 7 * r:.4f}")
        (root / "Train_Label" / f"A{r:04d}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_paper_table3_gives_every_row_of_the_papers_table(tmp_path, torch_home):
    """experiment=paper_table3 on a PIPAL-layout folder: grid.md holds the paper's baseline rows (PSNR, MS-SSIM, FSIMc,
    DISTS, LPIPS Alex/VGG, ST-LPIPS Alex/VGG) beside the heads, for each transform (2 of the 4 and one small backbone
    here, for time)."""
    write_weight_files(torch_home)
    root = make_pipal(tmp_path / "PIPAL")
    env = {**os.environ, "TORCH_HOME": str(torch_home), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "evaluate.py", "-m", "experiment=paper_table3", f"data.root={root}",
                           "data.strict=false", "backbone=efficientnet_lite0",
                           "transform=none,tra", "backbone.pretrained=false", "logger=none",
                           f"run.out={tmp_path / 'out'}", "run.num_workers=0", "run.accelerator=cpu"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (grid,) = (tmp_path / "out" / "multirun").glob("*/grid.md")
    text = grid.read_text()
    for row in ("psnr", "ms_ssim", "fsim", "dists", "lpips", "lpips-vgg", "stlpips", "stlpips-vgg",
                "efficientnet_lite0 l2", "efficientnet_lite0 wsd"):
        line = next((line for line in text.splitlines() if line.startswith(f"| {row} |")), None)
        assert line is not None, row
        assert line.count("–") == 0, line  # a value in every column (PIPAL none and tra, PLCC and SRCC)
    assert text.startswith("| metric | pipal PLCC | pipal SRCC | pipal tra@1 PLCC | pipal tra@1 SRCC |")
    for row in ("psnr", "fsim"):  # labels fall with the distortion's strength: good correlations, sign-corrected
        line = next(line for line in text.splitlines() if line.startswith(f"| {row} |"))
        assert float(line.split("|")[3].split()[0]) > 0.8, line


def test_download_prefetches_baselines_and_names_what_it_could_not(torch_home, capsys):
    from zsiqa.cli import main as cli_main

    write_weight_files(torch_home)
    assert run_entry_point(lambda: cli_main(["download", "--baselines", "gmsd,lpips"]), "zsiqa") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("gmsd: ready (pyiqa ") and out[1].startswith("lpips: ready (pyiqa ")
    (torch_home / "hub" / "pyiqa" / "DISTS_weights-f5e65c96.pth").unlink()
    assert run_entry_point(lambda: cli_main(["download", "--baselines", "dists"]), "zsiqa") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "baseline 'dists': its weights" in err[0] and "DISTS_weights-f5e65c96.pth" in err[0]
