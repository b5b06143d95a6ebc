"""`zsiqa` command line: score one pair, draw its quality map, list what is registered, pre-fetch weights, fetch or
check datasets, compare metrics, gather a sweep.

Expected failures (bad image, unknown backbone, missing file, offline weights) print one line ``zsiqa: error: ...`` and
exit 1 (2 for usage and configuration errors); ``--debug`` or ``ZSIQA_DEBUG=1`` shows their traceback.
"""
from __future__ import annotations

import argparse
import sys

from . import pyiqa_baselines
from .backbones import backbone_doc, list_backbones
from .baselines import BASELINES, get_baseline
from .choices import Align, Exif, Preset
from .distances import get_distance, list_distances
from .errors import ConfigError, run_entry_point
from .factory import create_metric


def _score(args: argparse.Namespace) -> int:
    if args.baseline:
        if args.backbone or args.distance or args.trained or args.weights or args.random_init or args.preset:
            raise ConfigError("--baseline scores a full-image baseline: it takes no --backbone, --distance, "
                              "--trained, --weights, --random-init or --preset")
        metric = create_metric(baseline=args.baseline, device=args.device, align=args.align, exif=args.exif)
        score = float(metric(args.ref, args.dis)[0])
        direction = "lower = better" if metric.lower_better else "higher = better"
        print(f"{score:.6f}" if args.quiet else f"{metric.name} ({metric.baseline.source}): {score:.6f}  ({direction})")
        return 0
    backbone = args.backbone or (None if args.trained else "dino_vitb16")
    metric = create_metric(
        backbone, args.distance, pretrained=not args.random_init, weights=args.weights,
        device=args.device, preset=args.preset, trained=args.trained, align=args.align, exif=args.exif,
    )
    score = float(metric(args.ref, args.dis)[0])
    direction = "lower = better" if metric.lower_better else "higher = better"
    name = f"{metric.backbone.name} {metric.distance.name}{' + trained weights' if args.trained else ''} ({metric.preset})"
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
    print("baselines (full image):")
    for name in BASELINES:
        b = BASELINES.get(name)
        print(f"  {name:28s} {'lower' if b.lower_better else 'higher'} = better. {b.doc}")
    extra = "" if pyiqa_baselines.installed() else f" (install the extra: {pyiqa_baselines.EXTRA})"
    print(f"  pyiqa's FR metrics{extra}: {', '.join(pyiqa_baselines.available())}")
    print(f"presets: {', '.join(Preset)}")
    return 0


def _map(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .images import to_batch
    from .metric import align_pair
    from .reporting.quality_map import map_figure

    metric = create_metric(args.backbone, args.distance, pretrained=not args.random_init, weights=args.weights,
                           device=args.device, preset=args.preset, align=args.align, exif=args.exif)
    qmap = metric.map(args.ref, args.dis)
    ref, dis = to_batch(args.ref, "ref", metric.exif)[0], to_batch(args.dis, "dis", metric.exif)
    dis = align_pair(ref[None], dis, metric.align, "")[0]
    title = f"{metric.backbone.name} {metric.distance.name} ({metric.preset}): {Path(args.dis).name} vs {Path(args.ref).name}"
    path = map_figure(qmap, ref, dis, title, Path(args.out))
    print(f"{title}: score {qmap.score:.6f} -> {path}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from .backbones.weights import download

    if not args.backbones and not args.baselines:
        raise ConfigError("zsiqa download: name backbones (zsiqa download dino_vitb16) and/or --baselines lpips,dists")
    for name in args.backbones:
        print(f"{name}: {download(name)}")
    import torch

    for name in [b for b in (args.baselines or "").split(",") if b]:
        baseline = get_baseline(name)  # builds it: its missing weight files are fetched into the caches
        print(f"{name}: ready ({baseline.source}; weights cached under {torch.hub.get_dir()})")
    return 0


def _data_root(name: str, root: str | None) -> str:
    """``--root``, else where ``evaluate.py data=NAME`` looks (``$ZSIQA_DATA/<folder>``, configs/data/NAME.yaml)."""
    if root:
        return root
    from .config import compose_config
    from .data import DATASETS

    folder = compose_config("evaluate", [f"data={name}"]).data.root
    if folder:
        return folder
    spec = DATASETS.get(name)
    if spec.default_root is None:
        raise ConfigError(f"data={name} has no default folder; give --root DIR")
    return str(spec.default_root())  # the demo set, built in its cache folder


def _data(args: argparse.Namespace) -> int:
    from .data import DATASETS
    from .data.fetch import check, fetch

    if args.name not in DATASETS:
        raise ConfigError(f"unknown dataset {args.name!r}; choose one of {', '.join(DATASETS)}")
    root = _data_root(args.name, args.root)
    if args.action == "check":
        print(check(args.name, root))
    else:
        print(fetch(args.name, root, url=args.url, archive=args.archive, keep_archive=args.keep_archive))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import InputError
    from .stats import compare as cmp

    runs = []
    for spec in args.runs:  # NAME=RUN_DIR, unless the whole argument is a folder (Hydra folder names hold "=")
        name, _, path = ("", "", spec) if Path(spec).is_dir() else spec.partition("=")
        runs.append((name, path))
    defaults = cmp.default_prefixes([path for _, path in runs])
    sources = [cmp.read_run(path, prefix=name or default, match=args.match)
               for (name, path), default in zip(runs, defaults)]
    if args.csv and args.label_direction is None:
        raise InputError("--csv needs --label-direction higher|lower (the direction of its label column)")
    columns = {"ref": args.ref_col, "dis": args.dis_col, "label": args.label_col, "pred": args.pred_col,
               "type": args.type_col}
    for spec in args.csv:
        name, eq, rest = spec.partition("=")
        path, _, direction = rest.rpartition(":")
        if not eq or not name or direction not in ("lower", "higher"):
            raise InputError(f"--csv {spec!r}: write NAME=PATH:lower or NAME=PATH:higher (the prediction's direction)")
        sources.append(cmp.read_predictions(path, name, direction == "lower", args.label_direction == "lower",
                                            columns, args.match))
    level = 1 - args.alpha
    result = cmp.compare(sources, args.resamples, args.seed, level, args.alpha, args.by_type)
    print(cmp.format_leaderboard(result, level))
    for dist_type, board in result.get("by_type", {}).items():
        print(cmp.format_leaderboard(board, level, title=f"distortion type {dist_type}"))
    for option, write in ((args.json, cmp.write_json), (args.matrix, cmp.write_matrix), (args.plot, cmp.plot_leaderboard)):
        if option:
            print(f"wrote {write(result, option)}")
    return 0


def _gather(args: argparse.Namespace) -> int:
    from .reporting.sweep import gather

    path, text, unfinished = gather(args.folder)
    print(f"{text}-> {path} and {path.with_suffix('.csv')}")
    return 1 if unfinished else 0  # failed or unfinished cells: rerun the sweep


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zsiqa", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of expected errors too (= ZSIQA_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="score one reference/distorted pair")
    score.add_argument("ref", help="reference image file")
    score.add_argument("dis", help="distorted image file")
    score.add_argument("--backbone", default=None, help="backbone name (see `zsiqa list`; default dino_vitb16)")
    score.add_argument("--distance", default=None, help="distance head (see `zsiqa list`; default l2)")
    score.add_argument("--preset", default=None, choices=[p.value for p in Preset], help="default paper")
    score.add_argument("--baseline", default=None,
                       help="a full-image baseline instead: psnr, ssim, ms_ssim, or pyiqa's (fsim, lpips, dists ...)")
    score.add_argument("--trained", default=None,
                       help="learned weights from train.py (<run>/trained.pt; it decides backbone/distance/preset)")
    score.add_argument("--weights", default=None, help="local checkpoint file instead of the hub weights")
    score.add_argument("--random-init", action="store_true", help="random weights (smoke tests only)")
    score.add_argument("--align", default=Align.error.value, choices=[Align.error.value, Align.resize.value],
                       help="different sizes: error, or resize the distorted image to the reference (window heads)")
    score.add_argument("--exif", default=Exif.auto.value, choices=[e.value for e in Exif],
                       help="EXIF orientation of the files: apply it, or ignore it as the official code did "
                            "(auto: ignore under preset paper, apply under fixed)")
    score.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    score.add_argument("-q", "--quiet", action="store_true", help="print the number only")
    score.set_defaults(func=_score)

    qmap = sub.add_parser("map", help="where two images differ: a quality map per layer and combined (l2, cos)")
    qmap.add_argument("ref")
    qmap.add_argument("dis")
    qmap.add_argument("--backbone", default="dino_vitb16", help="backbone name (see `zsiqa list`)")
    qmap.add_argument("--distance", default="l2", help="l2, cos or cos_channel (heads whose score is a sum of terms)")
    qmap.add_argument("--out", default="map.png", help="the figure (PNG, PDF or SVG)")
    qmap.add_argument("--preset", default=Preset.paper.value, choices=[p.value for p in Preset])
    qmap.add_argument("--align", default=Align.error.value, choices=[Align.error.value, Align.resize.value])
    qmap.add_argument("--exif", default=Exif.auto.value, choices=[e.value for e in Exif])
    qmap.add_argument("--weights", default=None, help="a local checkpoint file instead of the hub weights")
    qmap.add_argument("--random-init", action="store_true", help="random backbone weights (smoke tests)")
    qmap.add_argument("--device", default=None)
    qmap.set_defaults(func=_map)

    lst = sub.add_parser("list", help="list backbones, distances and presets")
    lst.set_defaults(func=_list)

    dl = sub.add_parser("download", help="pre-fetch backbone and baseline weights into the caches (for offline GPU nodes)")
    dl.add_argument("backbones", nargs="*")
    dl.add_argument("--baselines", default=None, metavar="NAME,NAME",
                    help="pyiqa baselines whose weights to fetch, comma-separated (e.g. lpips,lpips-vgg,dists)")
    dl.set_defaults(func=_download)

    data = sub.add_parser("data", help="datasets on demand: fetch (download, verify, unpack) or check a folder")
    data.add_argument("action", choices=["fetch", "check"])
    data.add_argument("name", help="live, tid2013, kadid10k, csiq, pipal (or demo)")
    data.add_argument("--root", default=None,
                      help="the dataset folder (default: where evaluate.py looks, $ZSIQA_DATA/<folder>)")
    data.add_argument("--url", default=None, help="fetch: download from this URL instead (a mirror)")
    data.add_argument("--archive", default=None, help="fetch: unpack this local archive instead of downloading")
    data.add_argument("--keep-archive", action="store_true", help="fetch: keep the downloaded archive")
    data.set_defaults(func=_data)

    # ---- zsiqa compare: leaderboard with reference-clustered intervals and paired significance (zsiqa.stats.compare)
    cmp = sub.add_parser("compare", help="compare metrics on the same pairs: leaderboard, intervals, paired tests",
                         description="Compare metrics from zsiqa run folders and per-image CSVs on the same pairs.")
    cmp.add_argument("runs", nargs="*", metavar="[NAME=]RUN_DIR",
                     help="zsiqa run folders; each metric column becomes NAME/<column> (NAME: the folder name)")
    cmp.add_argument("--csv", action="append", default=[], metavar="NAME=PATH:lower|higher",
                     help="a per-image CSV of one metric and the direction of its prediction (repeatable)")
    cmp.add_argument("--label-direction", choices=["higher", "lower"], default=None,
                     help="direction of the CSVs' label column (required with --csv; PIPAL/KADID MOS: higher)")
    for role, default in (("ref", "ref"), ("dis", "dis"), ("label", "mos"), ("pred", "pred"), ("type", None)):
        cmp.add_argument(f"--{role}-col", default=default, help=f"CSV column of the {role} (default: {default or 'none'})")
    cmp.add_argument("--match", choices=["name", "path"], default="name",
                     help="match pairs by image file names (default) or by the paths as written")
    cmp.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of reference images (1000)")
    cmp.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    cmp.add_argument("--alpha", type=float, default=0.05, help="significance level; intervals are 1 - alpha (0.05)")
    cmp.add_argument("--by-type", action="store_true", help="also one leaderboard per distortion type")
    cmp.add_argument("--json", default=None, metavar="PATH", help="write metrics and pairs as JSON")
    cmp.add_argument("--matrix", default=None, metavar="PATH", help="write the ΔSRCC / p matrix as CSV")
    cmp.add_argument("--plot", default=None, metavar="PATH", help="draw the leaderboard with interval bars (PNG)")
    cmp.set_defaults(func=_compare)
    gather = sub.add_parser("gather", help="gather a sweep's summary.json files into grid.md and grid.csv")
    gather.add_argument("folder", help="a sweep folder (<run.out>/multirun/<time>) or any folder of run folders")
    gather.set_defaults(func=_gather)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse itself exits with 2 on a usage error)."""
    args = build_parser().parse_args(argv)
    return run_entry_point(lambda: args.func(args), "zsiqa", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
