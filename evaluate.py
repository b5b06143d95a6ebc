"""Zero-shot FR-IQA benchmarking: python evaluate.py [key=value ...]

With no arguments: the bundled demo set (real photographs x graded synthetic distortions), scored by the offline
real-weights backbone (efficientnet_lite0) with the paper's distances, plus PSNR / SSIM / MS-SSIM.
"""
from __future__ import annotations

import sys

from zsiqa.config import CONFIG_DIR, load_grid

HELP = f"""usage: python evaluate.py [key=value ...]

Configuration: {CONFIG_DIR}/evaluate.yaml, overridden by key=value arguments. Groups take a name from
configs/<group>/ (a comma list runs the grid of all combinations):
  backbone=NAME[,NAME...]   {', '.join(sorted(p.stem for p in (CONFIG_DIR / 'backbone').glob('*.yaml')))}
                            or any registered name / timm:<model> / open_clip:<arch>:<tag> (`zsiqa list`)
  data=NAME[,NAME...]       {', '.join(sorted(p.stem for p in (CONFIG_DIR / 'data').glob('*.yaml')))}
  transform=NAME[@AMOUNT]   none, tra, sca, rot (paper: 1 % / 1 deg) or translate, rotate, scale, scale_keep,
                            perspective, elastic, crop, retarget (e.g. transform=none,rotate@5,translate@2)
  logger=csv|wandb
  experiment=NAME           a preset grid from configs/experiment/ ({', '.join(sorted(p.stem for p in (CONFIG_DIR / 'experiment').glob('*.yaml') if not p.stem.startswith('train_')))})
Options:
  distance=l2,cos,...       distance heads (`zsiqa list`); all scored from the same features
  baselines=psnr,ssim       full-image classics ([] for none: baselines=[])
  preset=paper|fixed        paper = the official code bit for bit; fixed = its bugs fixed (README table)
  head=PATH                 a head checkpoint from train.py (learned layer weights)
  align=auto|error|resize   size mismatch after a transform: auto resizes only for size-changing transforms
Dotted keys reach inside groups and run sections, e.g.:
  data.root=/data/tid2013 data.limit=100 backbone.pretrained=false backbone.weights=/ckpt/dino.pth
  run.devices=2 run.accelerator=gpu run.batch_size=32 run.out=runs run.name=myrun run.resume=false
  logger.project=zsiqa logger.group=table3 logger.mode=offline
Results: <run.out>/<data>/<transform>/<backbone>_<preset>/ holds config.yaml, scores.csv (per image, written as it
goes; a rerun resumes), summary.json, table.md and scatter.png; a grid also writes <run.out>/grid.md.
"""

NEXT_STEPS = """
Next: the paper's configurations on the real datasets (weights are downloaded once; `zsiqa download dino_vitb16`
pre-fetches them for offline GPU nodes):
  python evaluate.py backbone=dino_vitb16 distance=l2,cos,skld,jsd,wsd data=tid2013 data.root=/path/to/tid2013
  python evaluate.py experiment=paper_table3 data.root=/path/to/PIPAL run.accelerator=gpu
"""


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(HELP)
        return 0
    from zsiqa.engine.runner import run_grid

    cells = load_grid("evaluate", argv)
    run_grid(cells)
    if not argv:
        print(NEXT_STEPS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
