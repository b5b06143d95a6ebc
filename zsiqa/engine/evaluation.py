"""One evaluation run of a config (one cell of a sweep): its run folder, metrics, data, Trainer and summary.

``evaluate(cfg)`` builds the metrics (one shared backbone), the data module and the scoring module, scores every
pair with ``Trainer.predict`` (rows appended per batch by ``ScoreRowsWriter``; a rerun resumes), then process 0
merges the parts and writes the summary, table and plot.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from PIL import Image

from ..baselines import get_baseline
from ..config import EvaluateConfig, plain
from ..files import atomic_write_text
from ..metric import MAP_DISTANCES
from ..reporting.results import ERROR_COLUMN, ITEM_COLUMNS, merge_parts, read_rows
from ..reporting.summary import (
    hardest_pairs,
    hardest_pairs_plot,
    scatter_plot,
    summarize,
    summary_table,
    write_summary,
)
from ..reporting.wandb_log import describe_run, log_evaluation
from .build import align_policy, build_datamodule, build_logger, build_metrics, build_trainer, image_windows
from .run_folder import identity, refuse_to_resume
from .scoring import ScoringModule
from .writers import PairProgress, ScoreRowsWriter

# Keys that cannot change a pair's scores nor whether the run succeeds; every other key of the config enters the run
# folder's hash, so two configurations share a folder only when their results are the same. Tested to leave the
# scores unchanged (tests/engine/test_run_identity.py): batches, workers, processes and the reference cache change how
# the work is cut, not what each pair computes.
NOT_SCORE_KEYS = ("logger", "run.out", "run.name", "run.resume", "run.batch_size", "run.batch_windows",
                  "run.num_workers", "run.devices", "run.ref_cache", "trainer.devices")


def score_settings(values: dict) -> dict:
    """Everything that changes the scores or the outcome, from a config's plain values (``plain(cfg)``, or a saved
    config.yaml), as dotted keys: the whole config but ``NOT_SCORE_KEYS``."""
    return identity(values, NOT_SCORE_KEYS)


def run_dir_for(cfg: EvaluateConfig) -> Path:
    """``<out>/<data>/<transform>/<backbone>_<preset>[_trained-<run>]_<hash>``: the hash covers every score setting
    (distances, baselines, align, data options, precision ...), so configurations that score differently never share
    a folder, and the same command finds its folder again (resume)."""
    if cfg.run.name:
        return Path(cfg.run.out) / cfg.run.name
    backbone = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.backbone.name)
    trained = f"_trained-{_trained_label(Path(cfg.trained))}" if cfg.trained else ""
    digest = hashlib.sha256(json.dumps(score_settings(plain(cfg)), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return (Path(cfg.run.out) / cfg.data.name / cfg.transform.label
            / f"{backbone}_{cfg.preset}{trained}_{digest}")


def _trained_label(path: Path) -> str:
    """A weights file's run folder name for the generic file names train.py writes (trained.pt, best.ckpt, last.ckpt)."""
    return path.resolve().parent.name if path.stem in ("trained", "best", "last") else path.stem


def _prepare(run_dir: Path, cfg: EvaluateConfig) -> set[int]:
    """The pairs already scored in ``run_dir`` (resume), after checking that they were scored by this config; with
    ``run.resume=false`` process 0 removes them first."""
    saved_path = run_dir / "config.yaml"
    if cfg.run.resume and saved_path.exists():
        saved, now = score_settings(yaml.safe_load(saved_path.read_text())), score_settings(plain(cfg))
        refuse_to_resume(run_dir, "results", sorted(k for k in {*saved, *now} if saved.get(k) != now.get(k)))
    elif not cfg.run.resume and run_dir.exists() and rank_zero_only.rank == 0:
        for p in [run_dir / "scores.csv", saved_path, *run_dir.glob("parts/rank*.csv")]:
            p.unlink(missing_ok=True)
    return set(read_rows(run_dir)) if run_dir.exists() else set()


def _finished(run_dir: Path, cfg: EvaluateConfig, done: set[int]) -> dict | None:
    """The summary of a run folder that already holds this exact config's complete results (a rerun of a sweep skips
    its finished cells without building a backbone), else None."""
    path = run_dir / "summary.json"
    if not cfg.run.resume or not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except ValueError:
        return None  # a damaged summary is simply written again
    complete = isinstance(summary, dict) and summary.get("n_items") == len(done) and summary.get("config") == plain(cfg)
    return summary if complete and (run_dir / "scores.csv").is_file() else None


def evaluate(cfg: EvaluateConfig) -> dict | None:
    """Evaluate one cell; returns the summary on process 0 (None on other processes)."""
    L.seed_everything(cfg.run.seed, verbose=False)  # the paper's swd draws from the global RNG, seeded 0
    run_dir = run_dir_for(cfg)
    done = _prepare(run_dir, cfg)
    finished = _finished(run_dir, cfg, done)
    if finished is not None:
        if rank_zero_only.rank != 0:
            return None
        print(f"{run_dir}: already complete ({finished['n_items']} pairs; run.resume=false scores it again)")
        return {**finished, "pairs_scored_now": 0}
    label = cfg.transform.label
    baselines = [get_baseline(b) for b in cfg.baselines]  # first: missing weights fail before anything heavy
    trainer = build_trainer(cfg.trainer, [ScoreRowsWriter(run_dir, label), PairProgress()])
    metrics = build_metrics(cfg, trainer.strategy.root_device)  # on the final device: the precision depends on it
    module = ScoringModule(metrics, baselines, ref_cache=cfg.run.ref_cache,
                           align=align_policy(cfg), on_bad_image=cfg.data.on_bad_image)
    datamodule = build_datamodule(cfg.data, cfg, skip=done, windows_of=image_windows(next(iter(metrics.values()), None)))
    datamodule.setup("predict")
    todo = sum(len(b) for b in datamodule.batches)
    if trainer.is_global_zero:
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(plain(cfg), sort_keys=False))
        print(f"{cfg.backbone.name} | {cfg.data.name} ({len(datamodule.items)} pairs, {len(done)} already scored) | "
              f"transform {label} | -> {run_dir}")
    start = time.perf_counter()
    if todo:
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    elapsed = time.perf_counter() - start
    trainer.strategy.barrier()
    if not trainer.is_global_zero:
        return None
    return finalize(run_dir, cfg, module, datamodule.spec, extra={
        "pairs_scored_now": todo, "seconds": round(elapsed, 3),
        "pairs_per_second": round(todo / elapsed, 3) if todo and elapsed > 0 else None,
        "reference_feature_computations_rank0": module.ref_feature_computations,
        "world_size": trainer.world_size, "run_dir": str(run_dir),
        "baseline_sources": {b.name: b.source for b in baselines},
    })


def _same_size(a: str, b: str) -> bool:
    with Image.open(a) as x, Image.open(b) as y:
        return x.size == y.size


def finalize(run_dir: Path, cfg: EvaluateConfig, module: ScoringModule, spec, extra: dict) -> dict:
    """Merge the parts by index, compute correlations, write summary.json, table.md, scatter.png, hardest_pairs.png
    (and log them)."""
    merge_parts(run_dir, ITEM_COLUMNS + module.score_columns + [ERROR_COLUMN])
    rows = sorted(read_rows(run_dir).values(), key=lambda r: int(r["index"]))
    directions = {name: m.lower_better for name, m in module.metrics.items()}
    directions.update({b.name: b.lower_better for b in module.baselines})
    summary = summarize(rows, directions, spec.lower_better)
    label = cfg.transform.label
    title = f"{cfg.backbone.name} on {cfg.data.name} ({label}, preset {cfg.preset})"
    extra = {**extra, "n_items": len(rows), "label": spec.label_name, "label_lower_better": spec.lower_better}
    write_summary(run_dir, summary, plain(cfg), extra)
    atomic_write_text(run_dir / "table.md", summary_table(summary, title))
    plots = {"scatter": scatter_plot(rows, summary, spec.label_name, run_dir / "scatter.png")}
    if module.metrics:  # the first deep head: where it disagrees most with the labels (images as stored on disk)
        head, head_metric = next(iter(module.metrics.items()))
        worst = hardest_pairs(rows, head, head_metric.lower_better, spec.lower_better)
        # their quality maps where the head has them and the files are what was scored (no transform, same sizes)
        mappable = (head_metric.distance.name in MAP_DISTANCES and head_metric.window_output == "score"
                    and cfg.transform.name == "none" and all(_same_size(p["ref"], p["dis"]) for p in worst))
        maps = [head_metric.map(p["ref"], p["dis"]) for p in worst] if worst and mappable else None
        if worst:
            plots["hardest_pairs"] = hardest_pairs_plot(worst, head, len(rows), spec.label_name,
                                                        run_dir / "hardest_pairs.png", maps)
    logger = build_logger(cfg.logger, run_dir)
    if logger is not None:
        tags = [cfg.backbone.name, cfg.data.name, cfg.transform.name, str(cfg.preset),
                "trained" if cfg.trained else "zero-shot"]
        describe_run(logger, f"{cfg.backbone.name}/{cfg.data.name}/{cfg.transform.name}", tags, plain(cfg))
        log_evaluation(logger, rows, summary, plots, extra)
    print(summary_table(summary, title))
    return {"config": plain(cfg), "metrics": summary, **extra}
