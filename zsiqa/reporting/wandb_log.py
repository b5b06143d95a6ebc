"""Logging a run's results through its Lightning logger (``configs/logger/``), on process 0.

W&B runs are grouped (``logger.group``: the experiment or the dataset) and named and tagged (backbone, dataset,
transform, preset, zero-shot / trained) so the W&B UI compares them directly; without a login they are written
offline (``wandb sync`` uploads them later). Other loggers (CSV) keep the config and the metrics.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any


def wandb_mode(requested: str | None) -> str:
    """Explicit mode, else $WANDB_MODE, else online when an API key is configured, else offline."""
    if requested:
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        rc = netrc.netrc()
    except (FileNotFoundError, netrc.NetrcParseError):
        return "offline"
    return "online" if rc.authenticators("api.wandb.ai") else "offline"


def wandb_logger(save_dir: str, project: str = "zsiqa", entity: str | None = None, group: str | None = None,
                 mode: str | None = None):
    """``configs/logger/wandb.yaml``: Lightning's WandbLogger, offline when not logged in (``wandb_mode``)."""
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(project=project, entity=entity, group=group, save_dir=save_dir, mode=wandb_mode(mode),
                       reinit="finish_previous")


def describe_run(logger: Any, name: str, tags: list[str], config: dict) -> None:
    """The run's config for every logger; its name and tags where the logger shows them (W&B)."""
    logger.log_hyperparams(config)
    if _is_wandb(logger):
        logger.experiment.name = name
        logger.experiment.tags = tags


def log_evaluation(logger: Any, rows: list[dict], summary: dict, plot: Path, extra: dict) -> None:
    """Summary metrics (``<metric>/srcc`` ..., intervals as ``<metric>/srcc_ci_lo`` / ``_hi``); on W&B also the
    per-image table and the scatter plot."""
    metrics = {f"{m}/{k}": v for m, s in summary.items() for k, v in s.items() if isinstance(v, (int, float))}
    metrics.update({f"{m}/{k}_{end}": v[i] for m, s in summary.items() for k, v in s.items() if k.endswith("_ci")
                    for i, end in enumerate(("lo", "hi"))})
    metrics.update({f"run/{k}": v for k, v in extra.items() if isinstance(v, (int, float))})
    logger.log_metrics(metrics)
    if _is_wandb(logger):
        logger.experiment.summary.update(metrics)
        if rows:
            columns = list(rows[0])
            logger.log_table(key="per_image", columns=columns, data=[[r[c] for c in columns] for r in rows])
        logger.log_image(key="scatter", images=[str(plot)])
    finish(logger)


def log_training(logger: Any, summary: dict, plot: Path) -> None:
    """Best-epoch and cross-dataset values; on W&B also the layer weights as a bar chart and the cross-dataset
    table."""
    values = {"best/epoch": summary["best_epoch"], "best/val_srcc": summary["trained"]["srcc"],
              "best/val_plcc": summary["trained"]["plcc"], "best/val_srcc_zero_shot": summary["zero_shot"]["srcc"]}
    for name, r in summary["test"].items():
        for k in ("srcc", "plcc"):
            values[f"test/{name}/{k}"] = r["trained"][k]
            values[f"test/{name}/{k}_zero_shot"] = r["zero_shot"][k]
    if _is_wandb(logger):
        import wandb

        bars = wandb.Table(data=[[f"layer {i}", w] for i, w in enumerate(summary["layer_weights"])],
                           columns=["layer", "weight"])
        logger.experiment.log({"layer_weights": wandb.plot.bar(bars, "layer", "weight", title="learned layer weights"),
                               "layer_weights_plot": wandb.Image(str(plot))})
        columns = ["dataset", "n", "in_domain", "srcc_zero_shot", "plcc_zero_shot", "srcc", "plcc"]
        rows = [[name, r["trained"]["n"], r["in_domain"], r["zero_shot"]["srcc"], r["zero_shot"]["plcc"],
                 r["trained"]["srcc"], r["trained"]["plcc"]] for name, r in summary["test"].items()]
        logger.log_table(key="cross_dataset", columns=columns, data=rows)
        logger.experiment.summary.update(values)
    else:
        logger.log_metrics(values)
    finish(logger)


def finish(logger: Any) -> None:
    """Write out what the logger holds (W&B: close the run)."""
    logger.save()
    if _is_wandb(logger):
        logger.experiment.finish()


def _is_wandb(logger: Any) -> bool:
    from lightning.pytorch.loggers import WandbLogger

    return isinstance(logger, WandbLogger)
