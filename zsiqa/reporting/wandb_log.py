"""Weights & Biases logging through Lightning's WandbLogger (process 0 only).

Runs are grouped (logger.group, which experiments set, or the dataset) and tagged (backbone, dataset, transform, preset, zero-shot/trained) so the
W&B UI compares them directly. Without a login the run is written offline (``wandb sync`` uploads it later).
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path

from ..config import to_container


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


def make_logger(cfg: dict, run_dir: Path, job_type: str, name: str, tags: list[str]):
    from lightning.pytorch.loggers import WandbLogger

    lcfg = cfg["logger"]
    group = lcfg.get("group") or cfg["data"]["name"]
    return WandbLogger(
        project=lcfg.get("project", "zsiqa"), entity=lcfg.get("entity"), name=name, group=group, job_type=job_type,
        tags=tags, save_dir=str(run_dir), mode=wandb_mode(lcfg.get("mode")), config=to_container(cfg), reinit="finish_previous",
    )


def log_evaluation(cfg: dict, run_dir: Path, rows: list[dict], summary: dict, plot: Path, extra: dict) -> None:
    """Config, summary metrics (``<metric>/srcc`` ..., intervals as ``<metric>/srcc_ci_lo`` / ``_hi``), the per-image
    table and the scatter plot."""
    tname = cfg["transform"]["name"]
    tags = [cfg["backbone"]["name"], cfg["data"]["name"], tname, cfg["preset"], "trained" if cfg.get("head") else "zero-shot"]
    name = f"{cfg['backbone']['name']}/{cfg['data']['name']}/{tname}"
    logger = make_logger(cfg, run_dir, "evaluate", name, tags)
    metrics = {f"{m}/{k}": v for m, s in summary.items() for k, v in s.items() if isinstance(v, (int, float))}
    metrics.update({f"{m}/{k}_{end}": v[i] for m, s in summary.items() for k, v in s.items() if k.endswith("_ci")
                    for i, end in enumerate(("lo", "hi"))})
    metrics.update({f"run/{k}": v for k, v in extra.items() if isinstance(v, (int, float))})
    logger.log_metrics(metrics)
    logger.experiment.summary.update(metrics)
    if rows:
        columns = list(rows[0])
        logger.log_table(key="per_image", columns=columns, data=[[r[c] for c in columns] for r in rows])
    logger.log_image(key="scatter", images=[str(plot)])
    logger.experiment.finish()
