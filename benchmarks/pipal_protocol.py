"""The paper's PIPAL protocol (200 references x 116 distorted images, 288x288: 4 windows each) on one device.

    python benchmarks/pipal_protocol.py                                  # CPU: 1 x 8 pairs, a few minutes
    python benchmarks/pipal_protocol.py --device cuda --refs 200 --per-ref 116 --official-pairs 16   # GPU: full size

Synthesises a PIPAL-shaped set, runs the evaluation engine (``evaluate.py``, random-init weights) in fp32, bf16 and
compiled (``run.compile=true``), and the official-style loop (one distance at a time, one pair at a time, one window
per backbone call, the reference recomputed for every pair) on a subset; checks that the scores agree; prints pairs/s,
windows/s, the backbone's achieved GFLOP/s against a measured matmul peak of the same device, the heads' share of the
scoring time, and the projected time for the full 23,200 pairs. ``--repeat`` rounds (default 3) run the loop and every
mode once each, interleaved; times are the best of the rounds (as ``timeit`` reports), each round's is printed too.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

import zsiqa.metric
from zsiqa import create_metric
from zsiqa.data import read_dataset
from zsiqa.distances import get_distance
from zsiqa.metric import FRMetric, score_pairs

REPO = Path(__file__).resolve().parents[1]
PIPAL_PAIRS = 200 * 116
PAPER_HEADS = "l2,cos,skld,jsd,wsd"


def distorted(ref: np.ndarray, j: int, rng: np.random.Generator) -> np.ndarray:
    """The ``j``-th distortion of ``ref``: Gaussian noise of growing strength."""
    return np.clip(ref + rng.normal(0, 2 + 3 * j, ref.shape), 0, 255).astype(np.uint8)


def make_pipal(root: Path, refs: int, per_ref: int, size: int = 288) -> None:
    """PIPAL layout: Train_Ref/A0001.bmp, Train_Dis/A0001_00_00.bmp ..., Train_Label/A0001.txt (name,elo)."""
    rng = np.random.default_rng(0)
    for d in ("Train_Ref", "Train_Dis", "Train_Label"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for r in range(1, refs + 1):
        ref = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(ref).save(root / "Train_Ref" / f"A{r:04d}.bmp")
        lines = []
        for j in range(per_ref):
            name = f"A{r:04d}_{j // 20:02d}_{j % 20:02d}.bmp"
            Image.fromarray(distorted(ref, j, rng)).save(root / "Train_Dis" / name)
            lines.append(f"{name},{1500 - 3 * j:.4f}")
        (root / "Train_Label" / f"A{r:04d}.txt").write_text("\n".join(lines) + "\n")


def run_engine(out: Path, overrides: list[str], distances: list[str]) -> tuple[float, dict[int, dict[str, float]]]:
    """``evaluate.py`` with ``overrides`` in a fresh process: (scoring seconds from its summary, scores by index).
    Every ``run.*`` override must appear in the run's saved config (a build without the key must not pass for one
    that has it).

    Raises RuntimeError with the last line of evaluate.py's error output if it fails (e.g. a key this build lacks)."""
    cmd = [sys.executable, str(REPO / "evaluate.py"), f"run.out={out}", "baselines=[]", *overrides]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    summary = json.loads(next(out.rglob("summary.json")).read_text())
    for key, value in (o.split("=", 1) for o in overrides if o.startswith("run.")):
        if str(summary["config"]["run"].get(key[4:])).lower() != value.lower():
            raise RuntimeError(f"this build's evaluate.py has no {key} (its saved config lacks it)")
    with open(next(out.rglob("scores.csv")), newline="") as f:
        scores = {int(r["index"]): {d: float(r[d]) for d in distances} for r in csv.DictReader(f)}
    return float(summary["seconds"]), scores


def official_loop(items: list, backbone: str, distances: list[str], device: str) -> tuple[float, dict]:
    """The official code's structure: each distance in its own pass; per pair, per window, one backbone call for the
    reference window and one for the distorted window. Returns (seconds, {index: {distance: score}})."""
    scores: dict[int, dict[str, float]] = {it.index: {} for it in items}
    seconds = 0.0
    for d in distances:
        metric = create_metric(backbone, d, pretrained=False, device=device, max_windows_per_batch=1)
        start = time.perf_counter()
        for it in items:
            scores[it.index][d] = float(metric(it.ref, it.dis)[0])
        seconds += time.perf_counter() - start
    return seconds, scores


def max_relative_difference(a: dict, b: dict) -> float:
    """Largest |a - b| / |b| over the pairs and distances of ``b``."""
    return max(abs(a[i][d] - v) / max(abs(v), 1e-12) for i, row in b.items() for d, v in row.items())


def matmul_peak(device: str, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Measured GFLOP/s of a square matmul on ``device`` (the practical ceiling the backbone's GEMMs can reach)."""
    n = 2048 if device == "cpu" else 8192
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        calls += 1
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * n**3 * calls / (time.perf_counter() - start) / 1e9


def flops_per_window(backbone: str, device: str) -> float:
    """FLOPs of one 224x224 window through the backbone's taps (matmuls and convolutions, counted by PyTorch)."""
    metric = create_metric(backbone, "l2", pretrained=False, device=device)
    window = metric.backbone.window or 224
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        metric.backbone.taps(torch.rand(1, 3, window, window, device=device))
    return float(counter.get_total_flops())


@contextmanager
def timed(obj, name: str, totals: dict, key: str, device: str):
    """Accumulate the seconds spent in ``obj.name`` under ``totals[key]`` while the context is open."""
    inner = getattr(obj, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = inner(*args, **kwargs)
        if device != "cpu":
            torch.cuda.synchronize()
        totals[key] = totals.get(key, 0.0) + time.perf_counter() - start
        return out

    setattr(obj, name, wrapper)
    try:
        yield
    finally:
        setattr(obj, name, inner)


def heads_share(items: list, backbone: str, distances: list[str], device: str, batch: int = 16) -> dict[str, float]:
    """Seconds in the backbone and in the fused heads while scoring ``items`` as the engine's ``score_group`` does
    (each reference's features once, its distorted images in batches), image decoding excluded."""
    from zsiqa.images import to_batch

    first = create_metric(backbone, distances[0], pretrained=False, device=device)
    metrics = {d: FRMetric(first.backbone, get_distance(d)).to(device) for d in distances}
    by_ref: dict = {}
    for it in items:
        by_ref.setdefault(str(it.ref), []).append(it)
    totals: dict[str, float] = {}
    with timed(first.backbone, "taps", totals, "backbone", device), \
            timed(zsiqa.metric, "window_scores", totals, "heads", device):
        start = time.perf_counter()
        for ref, group in by_ref.items():
            f_ref = first.features(ref)
            for a in range(0, len(group), batch):
                dis = to_batch([it.dis for it in group[a : a + batch]]).to(device)
                score_pairs(metrics, f_ref, dis)
        totals["total"] = time.perf_counter() - start
    return totals


def profile_summary(shares: list[dict[str, float]]) -> str:
    """``heads_share`` of several rounds in one line: the median round's backbone and heads shares, and the heads'
    share of every round, in round order."""
    heads = [share["heads"] / share["total"] for share in shares]
    median = shares[sorted(range(len(shares)), key=heads.__getitem__)[len(shares) // 2]]
    return (f"backbone {median['backbone'] / median['total']:.0%}, heads {median['heads'] / median['total']:.0%} of "
            f"{median['total']:.1f} s (median round; heads in each round: {', '.join(f'{h:.1%}' for h in heads)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--backbone", default="dino_vitb16")
    p.add_argument("--distances", default=PAPER_HEADS, help="comma-separated heads scored together")
    p.add_argument("--refs", type=int, default=1, help="references (PIPAL: 200)")
    p.add_argument("--per-ref", type=int, default=8, help="distorted images per reference (PIPAL: 116)")
    p.add_argument("--official-pairs", type=int, default=2, help="pairs the official-style loop scores")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--modes", default="fp32,bf16,compiled", help="engine modes: fp32, bf16, compiled (fp32)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best time of each is reported")
    args = p.parse_args()
    distances = args.distances.split(",")
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    pairs = args.refs * args.per_ref
    print(f"PIPAL protocol: {args.refs} x {args.per_ref} = {pairs} pairs ({pairs / PIPAL_PAIRS:.2%} of 23,200) at "
          f"288x288, {args.backbone} (random init), heads {','.join(distances)}, {args.device}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "PIPAL"
        make_pipal(root, args.refs, args.per_ref)
        items = read_dataset("pipal", root, strict=False)
        windows_per_image = create_metric(args.backbone, "l2", pretrained=False, device="cpu").num_windows((288, 288))
        windows = (args.refs + pairs) * windows_per_image  # each reference once, every distorted image
        flops = flops_per_window(args.backbone, args.device)
        peaks = {"fp32": matmul_peak(args.device, torch.float32), "bf16": matmul_peak(args.device, torch.bfloat16)}
        print(f"backbone {flops / 1e9:.1f} GFLOP per window; measured matmul peak {peaks['fp32']:.0f} GFLOP/s fp32, "
              f"{peaks['bf16']:.0f} GFLOP/s bf16\n")
        base = ["data=pipal", f"data.root={root}", "data.strict=false", f"backbone={args.backbone}",
                "backbone.pretrained=false", f"distance=[{','.join(distances)}]", f"run.batch_size={args.batch_size}",
                f"run.accelerator={accelerator}", "run.num_workers=2"]
        modes = {"fp32": [], "bf16": ["run.precision=bf16"], "compiled": ["run.compile=true"]}
        subset = items[: args.official_pairs]
        wanted = args.modes.split(",")
        rounds: list[dict[str, float]] = []  # the loop and the engine modes interleaved, best of the rounds reported
        diffs: dict[str, float] = {}
        shares = []
        for r in range(args.repeat):
            loop_s, loop_scores = official_loop(subset, args.backbone, distances, args.device)
            seconds = {"loop": loop_s}
            for mode in list(wanted):
                try:
                    seconds[mode], scores = run_engine(Path(tmp) / f"run_{mode}_{r}", base + modes[mode], distances)
                except RuntimeError as e:
                    print(f"  engine {mode:8s}: not run: {e}")
                    wanted.remove(mode)
                    continue
                diffs[mode] = max(diffs.get(mode, 0.0), max_relative_difference(scores, loop_scores))
            rounds.append(seconds)
            shares.append(heads_share(items, args.backbone, distances, args.device, args.batch_size))
        best = {k: min(sec[k] for sec in rounds if k in sec) for k in ("loop", *wanted)}
        print(f"best of {args.repeat} interleaved rounds (each round's seconds in brackets)")
        for mode in wanted:
            seconds = best[mode]
            peak = peaks["bf16" if mode == "bf16" else "fp32"]
            each = ", ".join(f"{sec[mode]:.1f}" for sec in rounds)
            print(f"  engine {mode:8s}: {pairs / seconds:8.2f} pairs/s, {windows / seconds:8.1f} windows/s, backbone "
                  f"{flops * windows / seconds / 1e9:7.1f} GFLOP/s ({flops * windows / seconds / 1e9 / peak:.0%} of "
                  f"the {mode if mode == 'bf16' else 'fp32'} matmul peak); full PIPAL "
                  f"{PIPAL_PAIRS / (pairs / seconds) / 60:.1f} min [{each} s]")
        naive_s = best["loop"]
        each_loop = ", ".join(f"{sec['loop']:.1f}" for sec in rounds)
        print(f"  official-style loop: {len(subset) / naive_s:8.2f} pairs/s on {len(subset)} pairs "
              f"({len(distances)} passes); full PIPAL {PIPAL_PAIRS / (len(subset) / naive_s) / 3600:.1f} h "
              f"[{each_loop} s]")
        for mode in wanted:
            print(f"  engine {mode} vs loop: {naive_s / len(subset) / (best[mode] / pairs):.1f}x faster, max relative "
                  f"score difference {diffs[mode]:.1e}")
            if mode == "fp32" and diffs[mode] > 1e-5:
                raise SystemExit("engine and official-style loop disagree")
        print(f"  scoring profile (fp32): {profile_summary(shares)}")


if __name__ == "__main__":
    main()
