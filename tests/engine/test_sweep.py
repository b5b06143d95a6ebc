"""A `-m` sweep on submitit's local launcher: every cell its own process, results gathered into one table."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zsiqa.cli import main as zsiqa_main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_local_sweep_runs_cells_as_processes_and_gathers_the_grid(tmp_path):
    from zsiqa.data import build_demo

    demo = build_demo(tmp_path / "demo")
    out = tmp_path / "runs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "evaluate.py", "-m", "backbone=efficientnet_lite0", "backbone.pretrained=false",
           "transform=none,tra,rot", "hydra/launcher=submitit_local", f"data.root={demo}", "data.limit=3",
           "distance=[l2]", "baselines=[psnr]", "run.num_workers=0", "run.accelerator=cpu", f"run.out={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (out / "multirun").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2"]
    pids = {p.name for p in (sweep / ".submitit").iterdir() if p.name.isdigit()}  # local jobs are named by process id
    assert len(pids) == 3 and str(os.getpid()) not in pids
    runs = {(job / "run").resolve() for job in jobs}
    assert len(runs) == 3 and all((r / "summary.json").is_file() for r in runs)
    grid = (sweep / "grid.md").read_text()
    assert "demo tra@1 SRCC" in grid and "demo rot@1 PLCC" in grid and "| efficientnet_lite0 l2 |" in grid
    with open(sweep / "grid.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    overall = [r for r in rows if r["dist_type"] == "all"]
    assert len(overall) == 3 * 2 and len(rows) > len(overall)  # + one line per distortion type
    assert all(float(r["srcc_ci_lo"]) <= float(r["srcc"]) <= float(r["srcc_ci_hi"]) for r in overall)
    (sweep / "grid.md").unlink()
    assert zsiqa_main(["gather", str(sweep)]) == 0  # the same table again, from the folder alone
    assert (sweep / "grid.md").read_text() == grid
