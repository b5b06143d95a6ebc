"""`zsiqa` command line: score one pair, list what is registered, pre-fetch weights, gather a sweep."""
from __future__ import annotations

import argparse
import sys

from .backbones import backbone_doc, list_backbones
from .distances import get_distance, list_distances
from .metric import PRESETS, create_metric


def _score(args: argparse.Namespace) -> int:
    backbone = args.backbone or (None if args.head else "dino_vitb16")
    metric = create_metric(
        backbone, args.distance, pretrained=not args.random_init, weights=args.weights,
        device=args.device, preset=args.preset, head=args.head, align=args.align,
    )
    score = float(metric(args.ref, args.dis)[0])
    direction = "lower = better" if metric.lower_better else "higher = better"
    name = f"{metric.backbone.name} {metric.distance.name}{' + head' if args.head else ''} ({metric.preset})"
    print(f"{score:.6f}" if args.quiet else f"{name}: {score:.6f}  ({direction})")
    return 0


def _list(args: argparse.Namespace) -> int:
    print("backbones (also timm:<model_name> and open_clip:<arch>:<pretrained_tag>):")
    for name in list_backbones():
        print(f"  {name:28s} {backbone_doc(name)}")
    print("distances:")
    for name in list_distances():
        head = get_distance(name)
        print(f"  {name:28s} {'lower' if head.lower_better else 'higher'} = better. {head.doc}")
    print(f"presets: {', '.join(PRESETS)}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from .backbones.weights import download

    for name in args.backbones:
        print(f"{name}: {download(name)}")
    return 0


def _gather(args: argparse.Namespace) -> int:
    from .reporting.sweep import gather

    path, text = gather(args.folder)
    print(f"{text}-> {path} and {path.with_suffix('.csv')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zsiqa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="score one reference/distorted pair")
    score.add_argument("ref", help="reference image file")
    score.add_argument("dis", help="distorted image file")
    score.add_argument("--backbone", default=None, help="backbone name (see `zsiqa list`; default dino_vitb16)")
    score.add_argument("--distance", default=None, help="distance head (see `zsiqa list`; default l2)")
    score.add_argument("--preset", default=None, choices=sorted(PRESETS), help="default paper")
    score.add_argument("--head", default=None, help="a head.pt from train.py (it decides backbone/distance/preset)")
    score.add_argument("--weights", default=None, help="local checkpoint file instead of the hub weights")
    score.add_argument("--random-init", action="store_true", help="random weights (smoke tests only)")
    score.add_argument("--align", default="error", choices=["error", "resize"],
                       help="different sizes: error, or resize the distorted image to the reference (window heads)")
    score.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    score.add_argument("-q", "--quiet", action="store_true", help="print the number only")
    score.set_defaults(func=_score)

    lst = sub.add_parser("list", help="list backbones, distances and presets")
    lst.set_defaults(func=_list)

    dl = sub.add_parser("download", help="pre-fetch backbone weights into the cache (for offline GPU nodes)")
    dl.add_argument("backbones", nargs="+")
    dl.set_defaults(func=_download)

    gather = sub.add_parser("gather", help="gather a sweep's summary.json files into grid.md and grid.csv")
    gather.add_argument("folder", help="a sweep folder (<run.out>/multirun/<time>) or any folder of run folders")
    gather.set_defaults(func=_gather)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
