"""The fault corpus: runs killed, interrupted, corrupted and attacked on purpose, generated at run time. Every case
ends in the results of an uninterrupted run, or in one line naming the file and the fix: never a traceback, never
lost or silently wrong results."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from zsiqa import create_metric
from zsiqa.config import compose_config
from zsiqa.data import build_demo, read_dataset
from zsiqa.engine import term_cache
from zsiqa.engine.evaluation import NOT_SCORE_KEYS, evaluate, run_dir_for
from zsiqa.engine.term_cache import cache_lock, cached_terms
from zsiqa.errors import CorruptFileError, DataError, InputError
from zsiqa.files import atomic_save
from zsiqa.learned_weights import read_trained

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo"))


def python(code: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in the repository (what a killed process needs)."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


class Evil:
    """A pickle that creates ``marker`` when it is loaded by a loader that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.ones(1)}, "payload": Evil(marker)}, path)
    return path


# ---------------------------------------------------------------------------------------------------- evaluation

def eval_args(demo: Path, out: Path, *extra: str) -> list[str]:
    return ["backbone=efficientnet_lite0", "distance=[l2]", "baselines=[psnr]", f"data.root={demo}", "data.limit=12",
            f"run.out={out}", "run.batch_size=4", "run.num_workers=0", "run.accelerator=cpu", *extra]


EVAL_KILLED = """
import os, signal, sys
from zsiqa.config import compose_config
from zsiqa.engine import writers
from zsiqa.engine.evaluation import evaluate
original = writers.ScoreRowsWriter.write_on_batch_end
def write_then_stop(self, trainer, *a, **k):
    original(self, trainer, *a, **k)
    os.kill(os.getpid(), signal.SIG{sig})  # after the first batch's rows are on disk
writers.ScoreRowsWriter.write_on_batch_end = write_then_stop
evaluate(compose_config("evaluate", {args!r}))
"""


@pytest.mark.parametrize("sig", ["KILL", "INT"])
def test_evaluate_killed_mid_run_resumes_to_the_uninterrupted_scores(demo, tmp_path, sig):
    whole = evaluate(compose_config("evaluate", eval_args(demo, tmp_path, "run.name=whole")))
    args = eval_args(demo, tmp_path, "run.name=cut")
    proc = python(EVAL_KILLED.format(sig=sig, args=args))
    assert proc.returncode != 0
    kept = list(csv.DictReader(open(tmp_path / "cut" / "parts" / "rank0.csv")))
    assert len(kept) == 4  # the first batch survived
    resumed = evaluate(compose_config("evaluate", args))
    assert resumed["pairs_scored_now"] == 8
    a = list(csv.DictReader(open(tmp_path / "whole" / "scores.csv")))
    b = list(csv.DictReader(open(tmp_path / "cut" / "scores.csv")))
    assert [(r["index"], r["l2"], r["psnr"]) for r in a] == [(r["index"], r["l2"], r["psnr"]) for r in b]
    assert json.dumps(resumed["metrics"], sort_keys=True) == json.dumps(whole["metrics"], sort_keys=True)  # NaN-safe


def test_a_garbage_summary_is_written_again_and_a_finished_run_is_skipped(demo, tmp_path, capsys):
    cfg = compose_config("evaluate", eval_args(demo, tmp_path, "run.name=r"))
    first = evaluate(cfg)
    (tmp_path / "r" / "summary.json").write_text("{garbage")
    again = evaluate(cfg)
    same = json.dumps(again["metrics"], sort_keys=True) == json.dumps(first["metrics"], sort_keys=True)
    assert same and json.loads((tmp_path / "r" / "summary.json").read_text())
    capsys.readouterr()
    skipped = evaluate(cfg)  # complete and unchanged: nothing is built or scored
    assert "already complete (12 pairs" in capsys.readouterr().out
    assert json.dumps(skipped["metrics"], sort_keys=True) == json.dumps(first["metrics"], sort_keys=True)


def test_every_key_outside_the_run_folder_hash_leaves_the_scores_unchanged(demo, tmp_path):
    """Run identity: the keys left out of the hash (NOT_SCORE_KEYS) change how the work is cut, not the scores;
    every other key (max_image_side, which changes the outcome, included) gives another folder."""
    base = compose_config("evaluate", eval_args(demo, tmp_path, "distance=[l2,cos]"))
    other = compose_config("evaluate", eval_args(demo, tmp_path / "elsewhere", "distance=[l2,cos]", "run.batch_size=5",
                                                 "run.batch_windows=3", "run.ref_cache=1", "run.resume=false",
                                                 "logger=csv", "run.num_workers=1"))
    assert run_dir_for(base).relative_to(tmp_path) == run_dir_for(other).relative_to(tmp_path / "elsewhere")
    for key in ("run.max_image_side=1000", "run.precision=bf16", "run.max_windows_per_batch=7", "data.limit=11",
                "run.seed=1", "align=resize", "run.compile=true"):
        assert run_dir_for(compose_config("evaluate", eval_args(demo, tmp_path, "distance=[l2,cos]", key))) != run_dir_for(base), key
    assert {"run.batch_size", "run.num_workers", "run.devices", "run.ref_cache", "logger"} <= set(NOT_SCORE_KEYS)
    a, b = evaluate(base), evaluate(other)
    rows = [list(csv.DictReader(open(Path(s["run_dir"]) / "scores.csv"))) for s in (a, b)]
    for ra, rb in zip(*rows):
        for col in ("l2", "cos"):
            assert float(ra[col]) == pytest.approx(float(rb[col]), rel=1e-5)


def test_a_sweep_survives_a_failing_cell_and_its_rerun_skips_the_finished_one(demo, tmp_path):
    args = ["evaluate.py", "-m", *eval_args(demo, tmp_path), "run.max_image_side=100,4096"]
    proc = command(*args)
    no_traceback(proc)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("sweep: error: 1 of 2 cells failed or did not finish; see ")
    (sweep,) = (tmp_path / "multirun").iterdir()
    grid = (sweep / "grid.md").read_text()
    assert "| efficientnet_lite0 l2 |" in grid and "| psnr |" in grid
    assert "run.max_image_side=100" in grid and "exceeds max_image_side=100" in grid and "(and 1 other file)" in grid
    cells = {json.loads((sweep / j / "cell.json").read_text())["status"] for j in ("0", "1")}
    assert cells == {"failed", "done"}
    table = list(csv.DictReader(io.StringIO((sweep / "grid.csv").read_text())))
    assert [r["status"] for r in table if r["dist_type"] in ("all", "")] == ["done", "done", "failed"]
    rerun = command(*args)  # the finished cell is skipped, the failing one fails again
    assert rerun.returncode == 1 and "already complete (12 pairs" in rerun.stdout
    gather = subprocess.run(["zsiqa", "gather", str(sweep)], env=ENV, capture_output=True, text=True)
    assert gather.returncode == 1 and "failed: " in gather.stdout


def test_a_sweep_under_the_local_launcher_survives_a_failing_cell(demo, tmp_path):
    proc = command("evaluate.py", "-m", "hydra/launcher=local", *eval_args(demo, tmp_path, "data.limit=4"),
                   "run.max_image_side=100,4096")
    no_traceback(proc)
    assert proc.returncode == 1 and "1 of 2 cells failed" in proc.stderr
    (sweep,) = (tmp_path / "multirun").iterdir()
    assert "| efficientnet_lite0 l2 |" in (sweep / "grid.md").read_text()


def test_long_errors_name_the_first_file_and_a_count(demo, tmp_path):
    cfg = compose_config("evaluate", eval_args(demo, tmp_path, "run.max_image_side=100", "data.limit=48"))
    with pytest.raises(InputError) as e:  # the first batch: 4 pairs of one reference
        evaluate(cfg)
    assert "(and 3 other files): a 288x288 image exceeds max_image_side=100" in str(e.value)
    assert len(str(e.value)) < 600


# ---------------------------------------------------------------------------------------------------- inputs

def test_an_ignored_exif_orientation_is_one_warning_naming_the_file(tmp_path, capsys):
    img = Image.new("RGB", (40, 24), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to show it upright
    img.save(tmp_path / "phone.jpg", exif=exif)
    img.save(tmp_path / "plain.jpg")
    m = create_metric("efficientnet_lite0", "l2", preset="paper", align="resize")
    m(str(tmp_path / "plain.jpg"), str(tmp_path / "phone.jpg"))
    m(str(tmp_path / "plain.jpg"), str(tmp_path / "phone.jpg"))
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1 and err[0].startswith(f"warning: {tmp_path / 'phone.jpg'}: EXIF orientation 6 ignored")
    assert "data.exif=apply" in err[0] and "--exif apply" in err[0]


def test_a_label_line_leaving_the_dataset_folder_is_an_error(demo, tmp_path):
    import shutil

    root = Path(shutil.copytree(demo, tmp_path / "demo"))
    (tmp_path / "outside.png").write_bytes((root / "ref" / "astronaut.png").read_bytes())
    meta = root / "meta.csv"
    lines = meta.read_text().splitlines()
    lines[1] = lines[1].replace("dis/astronaut_noise_1.png", "../outside.png")
    meta.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"meta.csv:2: the distorted image '../outside.png' is outside the dataset folder"):
        read_dataset("demo", root, strict=False)


# ---------------------------------------------------------------------------------------------------- untrusted files

def test_a_hostile_pickle_is_refused_in_one_line_and_runs_no_code(demo, tmp_path):
    marker = tmp_path / "ran"
    for path in (plant(tmp_path / "head.pt", marker), plant(tmp_path / "evil.pth", marker)):
        with pytest.raises(CorruptFileError, match=rf"^{path}: refused: .* holds Python objects .* not plain tensors"):
            read_trained(path)
    with pytest.raises(CorruptFileError, match="evil.pth: refused: this weights file"):
        create_metric("timm:resnet10t", "l2", weights=str(tmp_path / "evil.pth"))
    proc = subprocess.run(["zsiqa", "score", str(demo / "ref" / "astronaut.png"),
                           str(demo / "dis" / "astronaut_noise_1.png"), "--weights",
                           str(tmp_path / "evil.pth"), "--backbone", "timm:resnet10t"], env=ENV, capture_output=True,
                          text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "evil.pth: refused" in proc.stderr
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------- training

def train_args(demo: Path, out: Path, *extra: str) -> list[str]:
    return ["backbone=efficientnet_lite0", f"data.root={demo}", "data.limit=48", "test=[]", f"run.out={out}",
            "run.batch_size=4", "run.num_workers=0", "run.accelerator=cpu", "trainer.max_epochs=6",
            "callbacks.early_stopping.patience=50", "logger=none", "optim.batch_size=8", *extra]


TRAIN_KILLED = """
import os, signal
import lightning as L
from zsiqa.config import compose_config
from zsiqa.engine import writers
from zsiqa.engine.training import train
where, sig = {where!r}, signal.SIG{sig}
original = writers.TermPartsWriter.write_on_batch_end
def write(self, trainer, pl_module, prediction, *a, **k):
    original(self, trainer, pl_module, prediction, *a, **k)
    self.batches_seen = getattr(self, "batches_seen", 0) + 1
    if where == "terms" and self.batches_seen == 3:  # some batches are on disk
        os.kill(os.getpid(), sig)
writers.TermPartsWriter.write_on_batch_end = write
class Stop(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if where == "fit" and trainer.current_epoch == 3:  # epoch 3 is trained, its checkpoint not yet written
            os.kill(os.getpid(), sig)
train(compose_config("train", {args!r}), extra_callbacks=[Stop()])
"""


def trained_state(run: Path) -> dict:
    return torch.load(run / "trained.pt", weights_only=True)["state"]


@pytest.mark.parametrize("where,sig", [("terms", "KILL"), ("terms", "INT"), ("fit", "KILL"), ("fit", "INT")])
def test_train_killed_resumes_to_the_same_head_bit_for_bit(demo, tmp_path, where, sig, capsys):
    train_cfg = compose_config("train", train_args(demo, tmp_path, "run.name=whole", f"run.cache_dir={tmp_path}/c1"))
    from zsiqa.engine.training import train

    train(train_cfg)
    args = train_args(demo, tmp_path, "run.name=cut", f"run.cache_dir={tmp_path}/c2")
    proc = python(TRAIN_KILLED.format(where=where, sig=sig, args=args))
    assert proc.returncode != 0
    no_traceback(proc) if sig == "KILL" else None
    capsys.readouterr()
    summary = train(compose_config("train", args))
    out = capsys.readouterr().out
    if where == "terms":
        assert "already computed in" in out and "of 48 pairs" in out
    else:
        assert "resuming after epoch 2 from" in out  # epoch 3 was lost, no more
    whole, cut = trained_state(tmp_path / "whole"), trained_state(tmp_path / "cut")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert summary["best_epoch"] == json.loads((tmp_path / "whole" / "summary.json").read_text())["best_epoch"]


def test_terms_cut_in_one_process_resume_in_two(demo, tmp_path):
    """Batches computed before a kill are kept whatever the number of processes of the rerun (DDP, gloo)."""
    args = train_args(demo, tmp_path, "run.name=cut", "trainer.max_epochs=2")
    proc = python(TRAIN_KILLED.format(where="terms", sig="KILL", args=args))
    assert proc.returncode == -signal.SIGKILL
    (parts,) = (tmp_path / "cache").glob("*.parts")
    kept = len(list(parts.glob("batch*.pt")))
    assert kept >= 3
    ddp = command("train.py", *args, "run.devices=2")
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert f"terms: {kept * 4} of 48 pairs already computed" in ddp.stdout and not parts.exists()
    (cache,) = (tmp_path / "cache").glob("*.pt")
    from zsiqa.engine.training import train

    whole = train(compose_config("train", train_args(demo, tmp_path, "run.name=whole", "trainer.max_epochs=2",
                                                     f"run.cache_dir={tmp_path}/fresh")))
    (fresh,) = (tmp_path / "fresh").glob("*.pt")
    assert torch.equal(torch.load(cache, weights_only=True)["layer"], torch.load(fresh, weights_only=True)["layer"])
    assert whole["trained"] == json.loads((tmp_path / "cut" / "summary.json").read_text())["trained"]


def test_corrupt_caches_parts_and_checkpoints_heal(demo, tmp_path, capsys):
    from zsiqa.engine.training import train

    args = train_args(demo, tmp_path, "run.name=r", "trainer.max_epochs=3")
    first = train(compose_config("train", args))
    (cache,) = (tmp_path / "cache").glob("*.pt")
    table = torch.load(cache, weights_only=True)
    cache.write_bytes(cache.read_bytes()[:200])  # truncated
    capsys.readouterr()
    second = train(compose_config("train", args[:-1] + ["run.name=r2", "trainer.max_epochs=3"]))
    out = capsys.readouterr().out
    assert f"{cache}: not a readable term cache (truncated or corrupt" in out and "moved to" in out
    assert torch.equal(torch.load(cache, weights_only=True)["layer"], table["layer"])
    assert second["trained"] == first["trained"]
    # An altered byte inside the tensors: the checksum catches what the zip reader does not.
    record = torch.load(cache, weights_only=True)
    record["layer"][0, 0] += 1
    atomic_save(cache, record)
    capsys.readouterr()
    train(compose_config("train", args[:-1] + ["run.name=r3", "trainer.max_epochs=3"]))
    assert "term cache altered (its checksum does not match" in capsys.readouterr().out
    # A garbage last.ckpt before a resume: named, moved aside, the fit continues from best.ckpt.
    ckpt = tmp_path / "r" / "checkpoints"
    (ckpt / "complete").unlink()
    (ckpt / "last.ckpt").write_bytes(b"garbage" * 20)
    capsys.readouterr()
    again = train(compose_config("train", args))
    out = capsys.readouterr().out
    assert f"{ckpt / 'last.ckpt'} is unreadable" in out and "resuming after epoch" in out
    assert (ckpt / "last.ckpt.corrupt").exists() and again["trained"]["srcc"] == pytest.approx(first["trained"]["srcc"])


def test_a_planted_last_checkpoint_runs_no_code(demo, tmp_path, capsys):
    from zsiqa.engine.training import train

    marker = tmp_path / "ran"
    args = train_args(demo, tmp_path, "run.name=r", "trainer.max_epochs=2")
    plant(tmp_path / "r" / "checkpoints" / "last.ckpt", marker)
    train(compose_config("train", args))
    assert "refused" in capsys.readouterr().out and not marker.exists()


def test_a_garbage_term_part_is_computed_again(demo, tmp_path, capsys):
    from zsiqa.engine.training import TermSource

    cfg = compose_config("train", train_args(demo, tmp_path, "data.limit=12"))
    from zsiqa.engine.build import build_metrics
    from zsiqa.learned_weights import backbone_fingerprint

    (metric,) = build_metrics(cfg, "cpu").values()
    source = TermSource(metric, backbone_fingerprint(metric.backbone), cfg)
    clean = source(cfg.data).table
    (cache,) = Path(source.cache_dir).glob("*.pt")
    parts = cache.with_suffix(".parts")
    cache.unlink()
    parts.mkdir()
    (parts / "batch00000000.pt").write_bytes(b"\x00" * 64)
    capsys.readouterr()
    healed = source(cfg.data).table
    assert "batch00000000.pt: not a readable term part" in capsys.readouterr().out
    assert torch.equal(healed.layer, clean.layer) and not parts.exists()


def test_two_runs_on_one_shared_cache_compute_the_table_once(tmp_path):
    """The second run waits on the cache's lock, then reads the table the first one wrote."""
    key = {"format": 2, "data": {"name": "d"}, "metric": {"backbone": "b", "distance": "l2"}}
    computed = []

    def compute(save):
        computed.append(1)
        from zsiqa.data.term_data import TermTable

        table = TermTable(torch.arange(3), torch.rand(3, 2))
        save(table)
        return table

    path = term_cache.cache_file(tmp_path, key)
    results = []
    with cache_lock(path):  # the first run is computing
        thread = threading.Thread(target=lambda: results.append(cached_terms(tmp_path, key, compute)))
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive() and not computed  # the second one waits
        first = compute(lambda table: atomic_save(path, {"key": key, "index": table.index, "layer": table.layer,
                                                         "channel": None, "sha256": term_cache.table_digest(table)}))
    thread.join(30)
    (table, _, was_computed), = results
    assert len(computed) == 1 and not was_computed and torch.equal(table.layer, first.layer)
