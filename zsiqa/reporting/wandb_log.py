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


def log_evaluation(logger: Any, rows: list[dict], summary: dict, plots: dict[str, Path], extra: dict) -> None:
    """Summary metrics (``<metric>/srcc`` ..., intervals as ``<metric>/srcc_ci_lo`` / ``_hi``, per distortion type
    ``<metric>/<type>/srcc`` ...); on W&B also the per-image table, the per-type table with a bar chart of its SRCC,
    and the ``plots`` (key -> image file: the scatter plot, the hardest pairs)."""
    metrics = {}
    for m, s in summary.items():
        metrics |= _scalars(f"{m}/", s)
        for t, st in s.get("by_type", {}).items():
            metrics |= _scalars(f"{m}/{t}/", st)
    metrics.update({f"run/{k}": v for k, v in extra.items() if isinstance(v, (int, float))})
    logger.log_metrics(metrics)
    if _is_wandb(logger):
        import wandb

        logger.experiment.summary.update(metrics)
        if rows:
            columns = list(rows[0])
            logger.log_table(key="per_image", columns=columns, data=[[r[c] for c in columns] for r in rows])
        columns = ["metric", "dist_type", "n", *(f"{k}{end}" for k in ("srcc", "plcc", "krcc")
                                                  for end in ("", "_ci_lo", "_ci_hi"))]
        data = [[m, t, st["n"], *(v for k in ("srcc", "plcc", "krcc") for v in (st[k], *(st.get(f"{k}_ci") or [None] * 2)))]
                for m, s in summary.items() for t, st in s.get("by_type", {}).items()]
        if data:
            table = wandb.Table(columns=["label", *columns], data=[[f"{r[0]} {r[1]}", *r] for r in data])
            logger.experiment.log({"per_type": table,
                                   "per_type_srcc": wandb.plot.bar(table, "label", "srcc", title="SRCC by distortion type")})
        for key, plot in plots.items():
            logger.log_image(key=key, images=[str(plot)])
    finish(logger)


def _scalars(prefix: str, s: dict) -> dict:
    """The numbers of one summary entry, with each defined interval as ``<key>_ci_lo`` / ``_hi``."""
    out = {f"{prefix}{k}": v for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k, v in s.items():
        if k.endswith("_ci") and v is not None and None not in v:
            out |= {f"{prefix}{k}_lo": v[0], f"{prefix}{k}_hi": v[1]}
    return out


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
