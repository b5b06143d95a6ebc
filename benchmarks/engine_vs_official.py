"""The evaluation engine against the official-style loop on TID2013-sized images, and peak memory.

    python benchmarks/engine_vs_official.py                 # everything below, random-init dino_vitb16
    python benchmarks/engine_vs_official.py --parts speed   # or: rss, huge, baselines

speed: 2 references x 8 distorted 512x384 images (TID2013 layout), the five paper heads, side by side in one run:
       the engine (``evaluate.py``) in fp32 and bf16 against the official-style loop (each distance in its own pass,
       one pair at a time, one window per backbone call) on ``--official-pairs`` pairs; the one-distance ratio (l2);
       the heads' share of the scoring time. ``--repeat`` rounds (default 3), each running the loop and the engine
       once, interleaved; every time is the best of the rounds (as ``timeit`` reports), each round's ratio is printed.
rss:   peak RSS of ``evaluate.py`` on 768x512 (LIVE-sized) images at ``run.batch_size`` 16 and 64, one process each.
baselines: the share of ``--baselines`` in an evaluation (the five heads alone, with the baselines, the baselines
       alone), and each baseline on a group of 8 pairs in one call against one call per pair.
huge:  peak RSS of ``create_metric("dino_vitb16", "wsd", pretrained=False)`` scoring one 8000x6000 pair (1200 windows
       per image; ``--huge-chunks N`` scores only the first N chunks: the memory is flat after the first).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pipal_protocol import (
    PAPER_HEADS,
    REPO,
    distorted,
    heads_share,
    max_relative_difference,
    official_loop,
    profile_summary,
    run_engine,
)

from zsiqa.data import read_dataset


def make_tid(root: Path, refs: int, per_ref: int, size: tuple[int, int]) -> None:
    """TID2013 layout: reference_images/I01.BMP, distorted_images/I01_01_1.bmp ..., mos_with_names.txt."""
    rng = np.random.default_rng(0)
    (root / "reference_images").mkdir(parents=True, exist_ok=True)
    (root / "distorted_images").mkdir(exist_ok=True)
    lines = []
    for r in range(1, refs + 1):
        ref = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(ref).save(root / "reference_images" / f"I{r:02d}.BMP")
        for j in range(per_ref):
            name = f"I{r:02d}_{j // 5 + 1:02d}_{j % 5 + 1}.bmp"
            Image.fromarray(distorted(ref, j, rng)).save(root / "distorted_images" / name)
            lines.append(f"{7 - 0.5 * j:.5f} {name}")
    (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")


def peak_rss_gb(cmd: list[str]) -> float:
    """Peak resident memory (GB) of ``cmd`` run to completion in a fresh process (``getrusage`` of the children)."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", probe, *cmd], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.split()[-1]) / 1024**2  # ru_maxrss is in KiB on Linux


def speed(args: argparse.Namespace, tmp: Path) -> None:
    root = tmp / "tid"
    make_tid(root, 2, 8, (512, 384))
    items = read_dataset("tid2013", root, strict=False)
    heads = PAPER_HEADS.split(",")
    base = ["data=tid2013", f"data.root={root}", "data.strict=false", f"backbone={args.backbone}",
            "backbone.pretrained=false", "run.batch_size=16", "run.num_workers=2", "run.accelerator=cpu"]
    subset = items[: args.official_pairs]
    n = len(items)
    rounds = []  # the loop and the engine runs interleaved, so that a slow spell of a shared machine hits both
    for r in range(args.repeat):
        seconds, diffs = {}, {}
        loop = {d: official_loop(subset, args.backbone, [d], "cpu") for d in heads}
        seconds["loop"] = sum(s for s, _ in loop.values()) / len(subset)
        seconds["l2 loop"] = loop["l2"][0] / len(subset)
        loop_scores = {it.index: {d: loop[d][1][it.index][d] for d in heads} for it in subset}
        for label, distances, extra in (("fp32", heads, []), ("bf16", heads, ["run.precision=bf16"]), ("l2", ["l2"], [])):
            s, scores = run_engine(tmp / f"run_{label}_{r}", [*base, f"distance=[{','.join(distances)}]", *extra],
                                   distances)
            seconds[label] = s / n
            if label != "l2":
                diffs[label] = max_relative_difference(scores, loop_scores)
        rounds.append((seconds, diffs, heads_share(items, args.backbone, heads, "cpu")))
    best = {k: min(sec[k] for sec, _, _ in rounds) for k in rounds[0][0]}

    def ratios(loop: str, engine: str) -> str:
        each = ", ".join(f"{sec[loop] / sec[engine]:.1f}x" for sec, _, _ in rounds)
        return f"{best[loop] / best[engine]:5.1f}x the loop (each round: {each})"

    print(f"\n{args.backbone}, 2 refs x 8 distorted 512x384, {torch.get_num_threads()} threads; official-style loop "
          f"on {len(subset)} pairs, engine on all {n}; best of {args.repeat} interleaved rounds (engine: "
          "Trainer.predict's wall time, decoding included; both without start-up and model construction)")
    each_loop = ", ".join(f"{sec['loop']:.2f}" for sec, _, _ in rounds)
    print(f"  official-style loop, five heads (5 passes): {best['loop']:7.2f} s/pair (each round: {each_loop})")
    for label in ("fp32", "bf16"):
        diff = max(d[label] for _, d, _ in rounds)
        print(f"  engine {label}, five heads: {best[label]:7.2f} s/pair -> {ratios('loop', label)}; max relative "
              f"score difference {diff:.1e}")
    print(f"  one distance (l2): loop {best['l2 loop']:.2f} s/pair, engine {best['l2']:.2f} s/pair -> "
          f"{ratios('l2 loop', 'l2')}")
    print(f"  scoring profile (fp32, decoding excluded): {profile_summary([share for _, _, share in rounds])}")


def evaluate_seconds(out: Path, overrides: list[str]) -> float:
    """``evaluate.py`` with ``overrides`` in a fresh process: its scoring seconds (summary.json)."""
    done = subprocess.run([sys.executable, "evaluate.py", f"run.out={out}", *overrides], cwd=REPO, capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise SystemExit(f"evaluate.py {' '.join(overrides)} failed:\n{done.stderr[-2000:]}")
    return float(json.loads(next(out.rglob("summary.json")).read_text())["seconds"])


def baselines(args: argparse.Namespace, tmp: Path) -> None:
    """The baselines' share of an evaluation, and each baseline on a reference's group of pairs in one call (how the
    engine calls it) against one call per pair (a per-image loop)."""
    from zsiqa.baselines import get_baseline
    from zsiqa.images import read_image

    root = tmp / "tid_baselines"
    make_tid(root, 2, 8, (512, 384))
    names = args.baselines.split(",")
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    base = ["data=tid2013", f"data.root={root}", "data.strict=false", f"backbone={args.backbone}",
            "backbone.pretrained=false", "run.batch_size=16", "run.num_workers=2", f"run.accelerator={accelerator}"]
    runs = {"heads": [f"distance=[{PAPER_HEADS}]", "baselines=[]"],
            "heads + baselines": [f"distance=[{PAPER_HEADS}]", f"baselines=[{','.join(names)}]"],
            "baselines": ["distance=[]", f"baselines=[{','.join(names)}]"]}
    best = {label: min(evaluate_seconds(tmp / f"b_{label.replace(' ', '')}_{r}", [*base, *extra])
                       for r in range(args.repeat)) for label, extra in runs.items()}
    n = len(read_dataset("tid2013", root, strict=False))
    print(f"\nbaselines {','.join(names)} beside the five heads, {args.backbone}, {n} pairs 512x384, {args.device}, "
          f"best of {args.repeat} (evaluate.py's scoring seconds):")
    for label, seconds in best.items():
        print(f"  {label:18s} {seconds:7.2f} s ({n / seconds:6.2f} pairs/s)")
    print(f"  the baselines' share of the evaluation: {(best['heads + baselines'] - best['heads']) / best['heads + baselines']:.0%}")
    items = read_dataset("tid2013", root, strict=False)[:8]  # one reference's group of 8
    ref = read_image(items[0].ref, "ignore")[None].to(args.device)
    dis = torch.stack([read_image(it.dis, "ignore") for it in items]).to(args.device)
    print(f"  one group of {len(items)} pairs in one call (the engine) vs one call per pair (a per-image loop):")
    for name in names:
        b = get_baseline(name)
        if b.module is not None:
            b.module.to(args.device)
        b.fn(ref, dis[:1])  # warm-up: one-time allocations and lazy set-up are not the mode's cost
        times = {}
        for mode in ("batched", "loop"):
            elapsed = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                if mode == "batched":
                    b.fn(ref.expand(len(dis), -1, -1, -1), dis)
                else:
                    [b.fn(ref, dis[i : i + 1]) for i in range(len(dis))]
                if args.device == "cuda":
                    torch.cuda.synchronize()
                elapsed.append(time.perf_counter() - start)
            times[mode] = min(elapsed)
        one_call = b.fn(ref.expand(len(dis), -1, -1, -1), dis)
        per_pair = torch.cat([b.fn(ref, dis[i : i + 1]) for i in range(len(dis))])
        diff = ((one_call - per_pair).abs() / per_pair.abs().clamp_min(1e-12)).max().item()
        print(f"    {name:12s} batched {times['batched'] / len(dis) * 1000:8.1f} ms/pair, loop "
              f"{times['loop'] / len(dis) * 1000:8.1f} ms/pair -> loop/batched {times['loop'] / times['batched']:.2f}x; "
              f"max relative difference {diff:.1e}")


def rss(args: argparse.Namespace, tmp: Path) -> None:
    root = tmp / "live_sized"
    make_tid(root, 1, max(args.batch_sizes), (768, 512))
    print(f"\npeak RSS, evaluate.py on 768x512 images, {args.backbone}, five heads, one process each:")
    for batch in args.batch_sizes:
        cmd = [sys.executable, "evaluate.py", "data=tid2013", f"data.root={root}", "data.strict=false",
               f"data.limit={batch}", f"backbone={args.backbone}", "backbone.pretrained=false",
               f"distance=[{PAPER_HEADS}]", "baselines=[]", f"run.batch_size={batch}", "run.num_workers=0",
               "run.accelerator=cpu", f"run.out={tmp}/rss_{batch}"]
        print(f"  run.batch_size={batch:3d}: {peak_rss_gb(cmd):.2f} GB")


HUGE = """
import sys, resource, torch
from zsiqa import create_metric
import zsiqa.metric as zm
chunks = int(sys.argv[1])
if chunks:
    plan = zm.FRMetric.chunks
    zm.FRMetric.chunks = lambda self, *a: iter(list(plan(self, *a))[:chunks])
g = torch.Generator().manual_seed(0)
ref = torch.rand(1, 3, 6000, 8000, generator=g)
dis = ref.clone()
for rows in dis.split(500, 2):  # noise added in slices: the test images themselves take 2 x 576 MB
    rows.add_(0.05 * torch.randn(rows.shape, generator=g)).clamp_(0, 1)
metric = create_metric("dino_vitb16", "wsd", pretrained=False, device="cpu")
metric(ref, dis)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def huge(args: argparse.Namespace, tmp: Path) -> None:
    what = "the whole pair" if not args.huge_chunks else f"the first {args.huge_chunks} chunks"
    done = subprocess.run([sys.executable, "-c", HUGE, str(args.huge_chunks)], cwd=REPO, capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    print(f"\npeak RSS, create_metric('dino_vitb16', 'wsd') on one 8000x6000 pair ({what}): "
          f"{int(done.stdout.split()[-1]) / 1024**2:.2f} GB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="dino_vitb16")
    p.add_argument("--parts", default="speed,rss,huge")
    p.add_argument("--official-pairs", type=int, default=4, help="pairs the official-style loop scores")
    p.add_argument("--repeat", type=int, default=3, help="speed: interleaved rounds; the best of each is reported")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    p.add_argument("--huge-chunks", type=int, default=0, help="score only this many chunks of the 8000x6000 pair")
    p.add_argument("--baselines", default="psnr,ms_ssim,fsim,lpips,dists",
                   help="baselines: the baselines timed (pyiqa's need the extra and their weights)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="baselines: where they run")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts.split(","):
            {"speed": speed, "rss": rss, "huge": huge, "baselines": baselines}[part](args, Path(tmp))


if __name__ == "__main__":
    main()
