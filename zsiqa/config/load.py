"""Loading a composed config into the typed schema, and the checks a schema cannot express (run once, at load)."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from ..backbones import list_backbones
from ..baselines import check_baseline
from ..data import DATASETS
from ..distances import get_distance, list_distances
from ..errors import ConfigError, MissingFileError
from ..losses import MOS_LOSSES
from ..presets import resolve_distance
from ..transforms import TRANSFORMS, make_transform
from .messages import did_you_mean, one_line
from .schema import PAPER_PROTOCOL, SCHEMAS, DataConfig, EvaluateConfig, TrainConfig, Weighting

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs"


def load(entry: str, cfg: DictConfig) -> EvaluateConfig | TrainConfig:
    """The composed config of ``entry`` ("evaluate" or "train") as schema objects, checked: a bad value is one
    ``ConfigError`` line naming the key and the fix."""
    cfg = OmegaConf.merge(OmegaConf.structured(SCHEMAS[entry]), cfg)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    name = cfg.transform.name
    if OmegaConf.is_missing(cfg.transform, "amount"):
        unit = TRANSFORMS[name].unit if name in TRANSFORMS else "see zsiqa.transforms"
        raise ConfigError(f"transform={name} needs an amount: add transform.amount=AMOUNT (unit: {unit}); only none, "
                          f"{', '.join(PAPER_PROTOCOL)} have a default")
    try:
        typed = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        raise ConfigError(f"{one_line(e)}: give it a value") from None
    except OmegaConfBaseException as e:
        raise ConfigError(one_line(e)) from None
    if isinstance(typed, TrainConfig):
        typed.test = [dataset_config(t) for t in typed.test]
    check(typed)
    return typed


def saved_config(entry: str, values: dict) -> EvaluateConfig | TrainConfig:
    """A config a run saved (``config.yaml``, ``summary.json``'s ``config``) as schema objects, unchecked: keys this
    version does not have are left out."""
    known = {f.name for f in dataclasses.fields(SCHEMAS[entry])}
    cfg = OmegaConf.merge(OmegaConf.structured(SCHEMAS[entry]), {k: v for k, v in values.items() if k in known})
    return OmegaConf.to_object(cfg)


def dataset_config(entry: Any) -> DataConfig:
    """A dataset entry of ``test=[...]``: a name from ``configs/data/`` or a mapping of ``DataConfig`` keys."""
    if isinstance(entry, DataConfig):
        return entry
    if isinstance(entry, str):
        path = CONFIG_DIR / "data" / f"{entry}.yaml"
        if not path.is_file():
            options = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))
            raise ConfigError(f"test: unknown dataset {entry!r}{did_you_mean(entry, options)}; "
                              f"choose from {', '.join(options)}")
        entry = OmegaConf.load(path)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), entry))
    except OmegaConfBaseException as e:
        raise ConfigError(f"test: {one_line(e)}") from None


def check(cfg: EvaluateConfig | TrainConfig) -> None:
    """The checks a schema cannot express: registered names, transform amounts, files, Lightning targets."""
    name = cfg.backbone.name
    if ":" not in name and name not in list_backbones():  # timm:... / open_clip:... are checked when built
        raise ConfigError(f"backbone.name={name}: unknown backbone{did_you_mean(name, list_backbones())}; "
                          f"registered: {', '.join(list_backbones())}, or timm:<model> / open_clip:<arch>:<tag>")
    for data in [cfg.data, *getattr(cfg, "test", [])]:
        if data.name not in DATASETS:
            raise ConfigError(f"data.name={data.name}: unknown dataset; choose one of {', '.join(sorted(DATASETS))}")
    distances = cfg.distance if isinstance(cfg, EvaluateConfig) else [cfg.distance]
    for d in distances:
        if d not in list_distances():
            raise ConfigError(f"distance: unknown distance {d!r}{did_you_mean(d, list_distances())}; "
                              f"available: {', '.join(list_distances())}")
    if isinstance(cfg, EvaluateConfig):
        for b in cfg.baselines:
            check_baseline(b)
        if cfg.trained is not None and not Path(cfg.trained).expanduser().is_file():
            raise MissingFileError(f"trained={cfg.trained}: no such file (train.py writes <run folder>/trained.pt)")
    else:
        head = get_distance(resolve_distance(cfg.distance, cfg.preset))
        if head.layer_terms is None or (cfg.weighting is Weighting.channel and head.channel_terms is None):
            raise ConfigError(f"distance={cfg.distance}: train.py learns weights on per-layer terms, which only l2, cos "
                              "and cos_channel have")
        if cfg.loss not in MOS_LOSSES:
            raise ConfigError(f"loss={cfg.loss}: choose one of {', '.join(MOS_LOSSES)}"
                              f"{did_you_mean(cfg.loss, MOS_LOSSES)}")
    t = cfg.transform
    if t.name != "none":
        if t.name not in TRANSFORMS:
            raise ConfigError(f"transform.name={t.name}: unknown transform; choose one of none, {', '.join(TRANSFORMS)}")
        try:
            make_transform(t.name, t.amount, cfg.preset)
        except ValueError as e:
            raise ConfigError(f"transform.amount={t.amount:g}: {e}") from None
    if "_target_" in cfg.logger:  # logger=none may hold an experiment's logger.group, for logger=wandb
        check_target("logger", cfg.logger)
    for key in ("trainer", "predict_trainer"):
        if hasattr(cfg, key):
            check_target(key, getattr(cfg, key))
    for key, node in getattr(cfg, "callbacks", {}).items():
        check_target(f"callbacks.{key}", node)


def check_target(key: str, node: Any) -> None:
    """``node`` names an importable ``_target_`` whose signature takes its other keys (what instantiate will do)."""
    if not isinstance(node, dict) or "_target_" not in node:
        raise ConfigError(f"{key}: expected a mapping with _target_ (a class or function to build), got {node!r}")
    target = locate(node["_target_"], f"{key}._target_")
    params = inspect.signature(target).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for arg in node:
        if arg != "_target_" and not arg.startswith("_") and arg not in params:
            raise ConfigError(f"{key}.{arg}: {node['_target_']} takes no argument {arg!r}"
                              f"{did_you_mean(arg, params)}")


def locate(path: str, key: str) -> Any:
    """The object a dotted ``_target_`` path names (``lightning.Trainer``), or a ``ConfigError`` naming ``key``."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        try:
            for part in parts[i:]:
                obj = getattr(obj, part)
        except AttributeError:
            break
        return obj
    raise ConfigError(f"{key}={path}: no such class or function (a dotted path such as lightning.Trainer)")
