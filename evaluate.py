"""Zero-shot FR-IQA benchmarking: python evaluate.py [-m] [key=value ...]   (python evaluate.py --help)

With no arguments: the bundled demo set (real photographs x graded synthetic distortions), scored by the offline
real-weights backbone (efficientnet_lite0) with the paper's distances, plus PSNR / SSIM / MS-SSIM. The config is
composed by Hydra from configs/evaluate.yaml (schema: zsiqa/config/schema.py); ``-m`` sweeps run one job per cell.
"""
from __future__ import annotations

import sys

from zsiqa.entry_point import entry_main

NEXT_STEPS = """
Next: the paper's configurations on the real datasets (weights are downloaded once; `zsiqa download dino_vitb16`
pre-fetches them for offline GPU nodes):
  python evaluate.py backbone=dino_vitb16 data=tid2013 data.root=/path/to/tid2013
  python evaluate.py -m experiment=paper_table3 data.root=/path/to/PIPAL run.accelerator=gpu
"""


def main(argv: list[str]) -> int:
    """Run the command line ``argv``; returns the exit code (2: config error)."""
    return entry_main("evaluate", argv, NEXT_STEPS)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
