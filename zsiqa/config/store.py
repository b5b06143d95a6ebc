"""The schemas and the registered backbones and transforms in Hydra's ConfigStore (``backbone=NAME``,
``transform=NAME`` need no YAML file each)."""
from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from ..backbones import list_backbones
from ..transforms import TRANSFORMS
from .schema import PAPER_PROTOCOL, BackboneConfig, EvaluateConfig, TrainConfig, TransformConfig


def register_configs() -> None:
    """Store the schemas and one node per registered backbone and transform (idempotent: call it again after
    registering a backbone)."""
    cs = ConfigStore.instance()
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="train_schema", node=TrainConfig)
    for name in list_backbones():
        cs.store(group="backbone", name=name, node=BackboneConfig(name=name))
    cs.store(group="transform", name="none", node=TransformConfig("none", 0.0))
    for name in TRANSFORMS:
        cs.store(group="transform", name=name, node=TransformConfig(name, 1.0 if name in PAPER_PROTOCOL else MISSING))
