"""Pairs/s of the evaluation engine vs the official per-pair loop, on PIPAL-shaped data (288x288, 116 per reference).

    python benchmarks/engine_throughput.py --backbone dino_vits16 --refs 1 --per-ref 116

Engine: `evaluate.py`'s Lightning engine (each reference's features computed once, all windows of a batch of
distorted images in one backbone call). Naive: the official loop (one pair at a time, one window per backbone call,
reference recomputed for every pair). Same random-init weights and images; scores are checked to agree.
"""
from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from zsiqa import create_metric  # noqa: E402
from zsiqa.config import compose_config  # noqa: E402
from zsiqa.data import read_dataset  # noqa: E402
from zsiqa.engine.runner import run_cell  # noqa: E402


def make_pipal_like(root: Path, refs: int, per_ref: int, size: int) -> None:
    """PIPAL layout: Train_Ref/A0001.bmp, Train_Dis/A0001_00_00.bmp ..., Train_Label/A0001.txt (name,elo)."""
    rng = np.random.default_rng(0)
    for d in ("Train_Ref", "Train_Dis", "Train_Label"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for r in range(1, refs + 1):
        ref = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(ref).save(root / "Train_Ref" / f"A{r:04d}.bmp")
        lines = []
        for j in range(per_ref):
            name = f"A{r:04d}_{j // 20:02d}_{j % 20:02d}.bmp"  # PIPAL names: A<ref>_<group>_<idx>
            noise = rng.normal(0, 2 + j, ref.shape)
            Image.fromarray(np.clip(ref + noise, 0, 255).astype(np.uint8)).save(root / "Train_Dis" / name)
            lines.append(f"{name},{1500 - 3 * j:.4f}")
        (root / "Train_Label" / f"A{r:04d}.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="dino_vits16")
    p.add_argument("--distance", default="l2")
    p.add_argument("--refs", type=int, default=1)
    p.add_argument("--per-ref", type=int, default=116)
    p.add_argument("--size", type=int, default=288)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--accelerator", default="cpu")
    args = p.parse_args()
    device = "cuda" if args.accelerator == "gpu" else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "PIPAL"
        make_pipal_like(root, args.refs, args.per_ref, args.size)
        cfg = compose_config("evaluate", [
            f"backbone.name={args.backbone}", "backbone.pretrained=false", f"distance=[{args.distance}]", "baselines=[]",
            "data=pipal", f"data.root={root}", "data.strict=false", f"run.out={tmp}/runs", f"run.batch_size={args.batch_size}",
            "run.num_workers=2", f"run.accelerator={args.accelerator}",
        ])
        start = time.perf_counter()
        summary = run_cell(cfg)
        engine_s = time.perf_counter() - start
        run_dir = next(Path(tmp, "runs").rglob("scores.csv"))
        with open(run_dir, newline="") as f:
            engine_scores = {int(r["index"]): float(r[args.distance]) for r in csv.DictReader(f)}

        items = read_dataset("pipal", root, strict=False)
        metric = create_metric(args.backbone, args.distance, pretrained=False, device=device, max_windows_per_batch=1)
        start = time.perf_counter()
        naive = {it.index: float(metric(it.ref, it.dis)[0]) for it in items}
        naive_s = time.perf_counter() - start
    n = len(items)
    diff = max(abs(engine_scores[i] - naive[i]) / max(abs(naive[i]), 1e-12) for i in naive)
    print(f"\n{args.backbone} {args.distance}, {args.refs} ref(s) x {args.per_ref} distorted, {args.size}x{args.size}, "
          f"{torch.get_num_threads()} threads, {device}")
    print(f"  naive per-pair loop : {n / naive_s:7.2f} pairs/s ({naive_s:.1f} s)")
    print(f"  engine              : {n / engine_s:7.2f} pairs/s ({engine_s:.1f} s, incl. Trainer start-up; "
          f"{summary['reference_feature_computations_rank0']} reference feature passes)")
    print(f"  speed-up {naive_s / engine_s:.2f}x; max relative score difference {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("engine and naive scores disagree")


if __name__ == "__main__":
    main()
