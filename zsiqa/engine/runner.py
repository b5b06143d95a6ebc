"""One evaluation run of a config (one cell of a sweep): its run folder, data, metrics, Trainer and summary.

``run_cell(cfg)`` builds the metrics (one shared backbone), the data module and the method module, scores every pair
with ``Trainer.predict`` (rows appended per batch by ``ScoreRowsWriter``; a rerun resumes), then process 0 merges the
parts and writes the summary, table and plot.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from PIL import Image

from ..backbones import create_backbone
from ..baselines import get_baseline
from ..config import to_container
from ..data import PairItem, data_root
from ..data.datamodule import FRDataModule, WindowCount
from ..distances import get_distance
from ..files import atomic_write_text
from ..io import resolve_exif
from ..learned_weights import load_head_metric
from ..metric import MAX_IMAGE_SIDE, FRMetric
from ..presets import resolve_distance
from ..reporting.results import ERROR_COLUMN, ITEM_COLUMNS, merge_parts, read_rows
from ..reporting.summary import scatter_plot, summarize, summary_table, write_summary
from ..transforms import TRANSFORMS, make_transform, transform_label
from ..windows import window_starts
from .method import IQAModule, compile_backbone
from .run_folder import refuse_to_resume
from .term_cache import predict_trainer
from .writers import PairProgress, ScoreRowsWriter

# Config keys that determine the scores: a run folder holding results of other values cannot be resumed.
SCORE_KEYS = ("backbone", "distance", "baselines", "preset", "head", "data", "transform", "align")
SCORE_RUN_KEYS = ("precision", "seed", "max_windows_per_batch")  # run.* keys that change scores (seed: paper swd)


def score_settings(cfg) -> dict:
    """Everything in a config that changes the scores (resolved, as plain values)."""
    cfg = to_container(cfg)
    return {**{k: cfg.get(k) for k in SCORE_KEYS}, **{f"run.{k}": cfg["run"].get(k) for k in SCORE_RUN_KEYS}}


def run_dir_for(cfg) -> Path:
    """``<out>/<data>/<transform>/<backbone>_<preset>[_head-<run>]_<hash>``: the hash covers every score setting
    (distances, baselines, align, data options, precision ...), so configurations that score differently never share
    a folder, and the same command finds its folder again (resume)."""
    run = cfg["run"]
    if run.get("name"):
        return Path(run["out"]) / run["name"]
    backbone = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg["backbone"]["name"])
    head = f"_head-{_head_label(Path(cfg['head']))}" if cfg.get("head") else ""
    digest = hashlib.sha256(json.dumps(score_settings(cfg), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return (Path(run["out"]) / cfg["data"]["name"] / transform_label(cfg["transform"])
            / f"{backbone}_{cfg['preset']}{head}_{digest}")


def _head_label(path: Path) -> str:
    """A head file's run folder name for the generic file names train.py writes (head.pt, best.ckpt, last.ckpt)."""
    return path.resolve().parent.name if path.stem in ("head", "best", "last") else path.stem


def image_windows(metric: FRMetric | None) -> WindowCount:
    """Windows of a pair's distorted image under ``metric`` (from the file's header; one for a whole-image
    backbone or no metric), for ``run.batch_windows``."""
    window = None if metric is None else metric.backbone.window
    stride = None if metric is None else metric.stride

    def count(item: PairItem) -> int:
        if window is None:
            return 1
        with Image.open(item.dis) as img:
            w, h = img.size
        return len(window_starts(h, window, stride)) * len(window_starts(w, window, stride))

    return count


def make_datamodule(data: dict, cfg: dict, skip: set[int] | frozenset = frozenset(),
                    windows_of: WindowCount | None = None) -> FRDataModule:
    """The data module of one ``data`` config entry, with the cell's transform, batch size (``run.batch_size``, or
    ``run.batch_windows`` windows counted by ``windows_of``) and workers."""
    tcfg, run = cfg["transform"], cfg["run"]
    return FRDataModule(
        data["name"], data_root(data), limit=data.get("limit"),
        pair_transform=None if tcfg["name"] == "none" else make_transform(tcfg["name"], tcfg["amount"], cfg["preset"]),
        batch_size=run["batch_size"], num_workers=run["num_workers"], skip=skip,
        batch_windows=run.get("batch_windows"), windows_of=windows_of, strict=data.get("strict", True),
        exif=resolve_exif(data.get("exif", "auto"), cfg["preset"]), on_bad_image=data.get("on_bad_image", "error"),
        **({"label": data["label"]} if data.get("label") else {}),
    )


def build_metrics(cfg: dict, device: str | torch.device) -> dict[str, FRMetric]:
    """One FRMetric per distance, all sharing one backbone instance (features are computed once)."""
    if not cfg["distance"] and not cfg.get("head"):
        return {}
    bcfg = cfg["backbone"]
    backbone = create_backbone(bcfg["name"], pretrained=bcfg.get("pretrained", True), weights=bcfg.get("weights"))
    metrics = {}
    for name in cfg["distance"]:
        name = resolve_distance(name, cfg["preset"])
        metrics[name] = FRMetric(
            backbone, get_distance(name), preset=cfg["preset"], precision=cfg["run"].get("precision"),
            max_windows_per_batch=cfg["run"]["max_windows_per_batch"],
            max_image_side=cfg["run"].get("max_image_side", MAX_IMAGE_SIDE),
        )
    if cfg.get("head"):
        metrics = {**metrics, **load_head_metric(cfg["head"], backbone, device)}
    if cfg["run"].get("compile"):
        compile_backbone(backbone)
    return {k: m.to(device) for k, m in metrics.items()}


def _check_resumable(run_dir: Path, cfg: dict) -> None:
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    saved, now = score_settings(yaml.safe_load(saved_path.read_text())), score_settings(cfg)
    refuse_to_resume(run_dir, "results", [k for k in now if saved.get(k) != now[k]])


def align_policy(cfg: dict) -> str:
    """``align=auto``: resize the distorted image to the reference only for transforms that change its size."""
    align = cfg.get("align", "auto")
    if align == "auto":
        name = cfg["transform"]["name"]
        return "resize" if name != "none" and TRANSFORMS[name].changes_size else "error"
    return align


def run_cell(cfg: Any) -> dict | None:
    """Evaluate one cell; returns the summary on process 0 (None on other processes)."""
    cfg = to_container(cfg)
    run = cfg["run"]
    L.seed_everything(run.get("seed", 0), verbose=False)  # the paper's swd draws from the global RNG, seeded 0
    data, tcfg = cfg["data"], cfg["transform"]
    run_dir = run_dir_for(cfg)
    if run.get("resume", True):
        _check_resumable(run_dir, cfg)
    elif run_dir.exists() and rank_zero_only.rank == 0:
        for p in [run_dir / "scores.csv", run_dir / "config.yaml", *run_dir.glob("parts/rank*.csv")]:
            p.unlink(missing_ok=True)
    done = set(read_rows(run_dir)) if run_dir.exists() else set()

    writer = ScoreRowsWriter(run_dir, transform_label(tcfg))
    trainer = predict_trainer(run["accelerator"], run.get("devices", 1), [writer, PairProgress()])
    rank0 = trainer.is_global_zero
    metrics = build_metrics(cfg, trainer.strategy.root_device)  # on the final device: the precision depends on it
    baselines = [get_baseline(b) for b in cfg["baselines"]]
    module = IQAModule(metrics, baselines, ref_cache=run["ref_cache"], align=align_policy(cfg),
                       on_bad_image=data.get("on_bad_image", "error"))
    datamodule = make_datamodule(data, cfg, skip=done, windows_of=image_windows(next(iter(metrics.values()), None)))
    datamodule.setup("predict")
    todo = sum(len(b) for b in datamodule.batches)
    if rank0:
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        print(f"{cfg['backbone']['name']} | {data['name']} ({len(datamodule.items)} pairs, {len(done)} already scored) | "
              f"transform {transform_label(tcfg)} | -> {run_dir}")
    start = time.perf_counter()
    if todo:
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    elapsed = time.perf_counter() - start
    trainer.strategy.barrier()
    if not rank0:
        return None
    return finalize(run_dir, cfg, module, datamodule.spec, extra={
        "pairs_scored_now": todo, "seconds": round(elapsed, 3),
        "pairs_per_second": round(todo / elapsed, 3) if todo and elapsed > 0 else None,
        "reference_feature_computations_rank0": module.ref_feature_computations,
        "world_size": trainer.world_size, "run_dir": str(run_dir),
    })


def finalize(run_dir: Path, cfg: dict, module: IQAModule, spec, extra: dict) -> dict:
    """Merge the parts by index, compute correlations, write summary.json, table.md, scatter.png (and log to W&B)."""
    merge_parts(run_dir, ITEM_COLUMNS + module.score_columns + [ERROR_COLUMN])
    rows = list(read_rows(run_dir).values())
    rows.sort(key=lambda r: int(r["index"]))
    directions = {name: m.lower_better for name, m in module.metrics.items()}
    directions.update({b.name: b.lower_better for b in module.baselines})
    summary = summarize(rows, directions, spec.lower_better)
    title = f"{cfg['backbone']['name']} on {cfg['data']['name']} ({transform_label(cfg['transform'])}, preset {cfg['preset']})"
    extra = {**extra, "n_items": len(rows), "label": spec.label_name, "label_lower_better": spec.lower_better}
    write_summary(run_dir, summary, cfg, extra)
    atomic_write_text(run_dir / "table.md", summary_table(summary, title))
    plot = scatter_plot(rows, summary, spec.label_name, run_dir / "scatter.png")
    if cfg["logger"]["name"] == "wandb":
        from ..reporting.wandb_log import log_evaluation

        log_evaluation(cfg, run_dir, rows, summary, plot, extra)
    print(summary_table(summary, title))
    return {"config": cfg, "metrics": summary, **extra}
