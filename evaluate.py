"""Zero-shot FR-IQA benchmarking: python evaluate.py [-m] [key=value ...]   (python evaluate.py --help)

With no arguments: the bundled demo set (real photographs x graded synthetic distortions), scored by the offline
real-weights backbone (efficientnet_lite0) with the paper's distances, plus PSNR / SSIM / MS-SSIM. The config is
composed by Hydra from configs/evaluate.yaml (schema: zsiqa/config/schema.py); ``-m`` sweeps run one job per cell.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from zsiqa.config import CONFIG_DIR
from zsiqa.entry_point import run_app, run_task

NEXT_STEPS = """
Next: the paper's configurations on the real datasets (weights are downloaded once; `zsiqa download dino_vitb16`
pre-fetches them for offline GPU nodes):
  python evaluate.py backbone=dino_vitb16 data=tid2013 data.root=/path/to/tid2013
  python evaluate.py -m experiment=paper_table3 data.root=/path/to/PIPAL run.accelerator=gpu
"""


@hydra.main(config_path=str(CONFIG_DIR), config_name="evaluate", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from zsiqa.engine.evaluation import evaluate

    run_task(evaluate, "evaluate", cfg)


def main(argv: list[str]) -> int:
    """Run the command line ``argv``; returns the exit code (2: config error)."""
    code = run_app("evaluate", argv, _hydra_main)
    if code == 0 and not argv:
        print(NEXT_STEPS)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
