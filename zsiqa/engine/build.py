"""The one place where a config becomes objects, for both entry points: the metrics (one shared backbone), the data
modules, and the Lightning objects declared in ``configs/trainer/``, ``configs/callbacks/``, ``configs/logger/``."""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from ..backbones import Backbone, create_backbone
from ..choices import Align
from ..config import CONFIG_DIR, DataConfig, EvaluateConfig, TrainConfig
from ..data import PairItem, data_root
from ..data.datamodule import FRDataModule, WindowCount
from ..distances import get_distance
from ..images import resolve_exif
from ..learned_weights import load_trained_metric
from ..metric import FRMetric
from ..presets import resolve_distance
from ..transforms import TRANSFORMS, make_transform
from ..windows import window_starts

Config = EvaluateConfig | TrainConfig


def compile_backbone(backbone: Backbone) -> Backbone:
    """``run.compile=true``: the backbone's ``taps`` and ``embed`` through ``torch.compile`` (same weights, same
    fingerprint; scores equal eager ones up to floating-point reordering)."""
    backbone.taps = torch.compile(backbone.taps)
    backbone.embed = torch.compile(backbone.embed)
    return backbone


def build_metrics(cfg: Config, device: str | torch.device) -> dict[str, FRMetric]:
    """One FRMetric per distance of ``cfg`` (and its trained weights), all sharing one backbone: features are
    computed once. Built on ``device`` (the paper's precision depends on it), in eval mode."""
    distances = cfg.distance if isinstance(cfg, EvaluateConfig) else [cfg.distance]
    trained = getattr(cfg, "trained", None)
    if not distances and not trained:
        return {}
    b = cfg.backbone
    backbone = create_backbone(b.name, pretrained=b.pretrained, weights=b.weights)
    metrics = {}
    for name in distances:
        name = resolve_distance(name, cfg.preset)
        metrics[name] = FRMetric(backbone, get_distance(name), preset=cfg.preset, precision=cfg.run.precision,
                                 max_windows_per_batch=cfg.run.max_windows_per_batch,
                                 max_image_side=cfg.run.max_image_side)
    if trained:
        metrics.update(load_trained_metric(trained, backbone))
    if cfg.run.compile:
        compile_backbone(backbone)
    return {k: m.to(device).eval() for k, m in metrics.items()}


def align_policy(cfg: Config) -> Align:
    """``align=auto``: resize the distorted image to the reference only for transforms that change its size."""
    align = getattr(cfg, "align", Align.auto)
    if align is Align.auto:
        name = cfg.transform.name
        return Align.resize if name != "none" and TRANSFORMS[name].changes_size else Align.error
    return align


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


def build_datamodule(data: DataConfig, cfg: Config, skip: set[int] | frozenset = frozenset(),
                     windows_of: WindowCount | None = None) -> FRDataModule:
    """The data module of ``data`` with the run's transform, batch size (``run.batch_size``, or
    ``run.batch_windows`` windows counted by ``windows_of``) and workers."""
    t, run = cfg.transform, cfg.run
    return FRDataModule(
        data.name, data_root(data), limit=data.limit,
        pair_transform=None if t.name == "none" else make_transform(t.name, t.amount, cfg.preset),
        batch_size=run.batch_size, num_workers=run.num_workers, skip=skip, batch_windows=run.batch_windows,
        windows_of=windows_of, strict=data.strict, exif=resolve_exif(data.exif, cfg.preset).value,
        on_bad_image=data.on_bad_image, **({"label": data.label} if data.label else {}),
    )


def build_trainer(node: dict[str, Any], callbacks: Sequence[L.Callback] = (), **extra: Any) -> L.Trainer:
    """The Trainer that ``configs/trainer/<name>.yaml`` declares, with the run's callbacks and the ``extra``
    arguments the run decides (its logger, its folder). Says on which device it runs, once per device setting (one
    line instead of Lightning's banners, which the entry points drop)."""
    trainer = instantiate(node, callbacks=list(callbacks), **extra)
    device = f"{trainer.strategy.root_device.type} x {trainer.world_size}"
    if trainer.is_global_zero and device not in _DEVICES_SAID:
        _DEVICES_SAID.add(device)
        print(f"device: {trainer.strategy.root_device.type}" + (f" ({trainer.world_size} processes)"
                                                                if trainer.world_size > 1 else ""), file=sys.stderr)
    return trainer


_DEVICES_SAID: set[str] = set()


def predict_trainer_node(accelerator: str = "cpu", devices: int = 1) -> dict[str, Any]:
    """``configs/trainer/predict.yaml`` (the Trainer that runs the backbone: exact shards, no logger or checkpoints)
    for ``accelerator`` and ``devices``, for callers without a run config (``compute_terms``)."""
    node = OmegaConf.merge({"run": {"accelerator": accelerator, "devices": devices}},
                           {"trainer": OmegaConf.load(CONFIG_DIR / "trainer" / "predict.yaml")})
    return OmegaConf.to_container(node, resolve=True)["trainer"]


def build_callbacks(nodes: dict[str, Any], run_dir: Path) -> list[L.Callback]:
    """``configs/callbacks/<name>.yaml`` (and ``+callbacks.NAME=...``), in their order; a ``dirpath: null`` (the
    checkpoint callbacks) becomes the run's ``checkpoints`` folder."""
    callbacks = []
    for node in nodes.values():
        here = "dirpath" in node and node["dirpath"] is None
        callbacks.append(instantiate(node, **({"dirpath": str(run_dir / "checkpoints")} if here else {})))
    return callbacks


def build_logger(node: dict[str, Any], run_dir: Path) -> Any:
    """The logger that ``configs/logger/<name>.yaml`` declares, writing under ``run_dir``; None for ``logger=none``
    (whose mapping may still hold an experiment's ``logger.group``, kept for when ``logger=wandb`` is chosen)."""
    return instantiate(node, save_dir=str(run_dir)) if "_target_" in node else None
