"""Windows/s of one metric call: all windows of a pair batched vs one window at a time (the official loop).

    python benchmarks/windows_throughput.py --backbone dino_vitb16 --size 768x512 --pairs 2

Random-init weights (no download); the scores of both modes are checked to agree.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from zsiqa import create_metric


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="dino_vitb16")
    p.add_argument("--distance", default="l2")
    p.add_argument("--size", default="768x512", help="WxH of the test images (LIVE: 768x512 -> 12 windows)")
    p.add_argument("--pairs", type=int, default=2, help="pairs timed per mode")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(args.pairs, 3, h, w, generator=g)
    dis = (ref + 0.05 * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    metric = create_metric(args.backbone, args.distance, pretrained=False, device=args.device)
    k = metric.features(ref[:1]).num_windows
    windows = 2 * k * args.pairs
    print(f"{args.backbone} {args.distance}, {w}x{h} -> {k} windows per image, {args.pairs} pairs, "
          f"{args.threads} threads, {args.device}")
    results = {}
    for label, per_batch in (("one window at a time", 1), ("batched windows", 64)):
        metric.max_windows_per_batch = per_batch
        metric(ref[:1], dis[:1])  # warm-up
        start = time.perf_counter()
        scores = torch.cat([metric(ref[i : i + 1], dis[i : i + 1]) for i in range(args.pairs)])
        seconds = time.perf_counter() - start
        results[label] = (seconds, scores)
        print(f"  {label:22s} {windows / seconds:8.2f} windows/s  ({seconds:.2f} s)")
    (t1, s1), (t2, s2) = results.values()
    diff = float((s1 - s2).abs().max() / s1.abs().max().clamp_min(1e-12))
    print(f"  speed-up {t1 / t2:.2f}x; max relative score difference {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("scores of the two modes disagree")


if __name__ == "__main__":
    main()
