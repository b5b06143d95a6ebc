"""The configuration of evaluate.py and train.py: the typed schema (``schema``), its Hydra registration (``store``),
loading and checks (``load``), the command-line check (``command_line``) and the error wording (``messages``).

``compose_config(entry, overrides)`` gives what an entry point runs: schema objects, checked once, at load.
"""
from .command_line import check_command_line, compose_config
from .load import CONFIG_DIR, dataset_config, load, saved_config
from .schema import (
    Align,
    BackboneConfig,
    DataConfig,
    EvaluateConfig,
    Exif,
    OnBadImage,
    Precision,
    Preset,
    TrainConfig,
    TransformConfig,
    Weighting,
    plain,
)
from .store import register_configs

__all__ = [
    "Align", "BackboneConfig", "CONFIG_DIR", "DataConfig", "EvaluateConfig", "Exif", "OnBadImage", "Precision",
    "Preset", "TrainConfig", "TransformConfig", "Weighting", "check_command_line", "compose_config", "dataset_config",
    "load", "plain", "register_configs", "saved_config",
]
