"""The configuration schema of evaluate.py and train.py: dataclasses with one Enum per choice.

Hydra composes ``configs/<entry>.yaml`` against these classes (an unknown key or a value of the wrong type fails at
load), and ``zsiqa.config.load`` turns the result into these objects: the engine, the reports and the data modules
read typed attributes, never string keys. ``logger``, ``trainer`` and ``callbacks`` are Lightning objects declared
with ``_target_`` (``configs/logger/``, ``configs/trainer/``, ``configs/callbacks/``) and built by
``zsiqa.engine.build``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from ..choices import Align, Exif, OnBadImage, Precision, Preset, Weighting
from ..transforms import transform_label

PAPER_PROTOCOL = ("tra", "sca", "rot")  # the paper's robustness transforms: amount 1 (1 %, 1 degree) by default


@dataclass
class BackboneConfig:
    """``backbone=NAME`` (a registered name) or ``backbone.name=timm:<model>`` / ``open_clip:<arch>:<tag>``."""

    name: str = MISSING  # a registered name (`zsiqa list`), timm:<model> or open_clip:<arch>:<tag>
    pretrained: bool = True  # false = random init (smoke tests)
    weights: Optional[str] = None  # a local checkpoint file (no download)


@dataclass
class DataConfig:
    """One dataset: ``configs/data/<name>.yaml`` sets its name and default folder."""

    name: str = MISSING
    root: Optional[str] = None  # the dataset folder; each YAML defaults it to $ZSIQA_DATA/<folder>
    limit: Optional[int] = None  # N pairs spread over the references (quick checks)
    strict: bool = True  # false accepts a partial copy (counts not checked; listed files must exist)
    label: Optional[str] = None  # LIVE: dmos_realigned (default) or dmos
    on_bad_image: OnBadImage = OnBadImage.error
    exif: Exif = Exif.auto


@dataclass
class TransformConfig:
    """``transform=NAME`` with ``transform.amount`` in the unit of ``zsiqa.transforms.TRANSFORMS[NAME]``."""

    name: str = "none"  # none, tra, sca, rot (the paper's protocol) or a geometric transform of zsiqa.transforms
    amount: float = MISSING  # in the transform's unit (% of the size, degrees, px); the paper's three default to 1

    @property
    def label(self) -> str:
        """``none`` or ``NAME@AMOUNT``, as run folders and tables show it."""
        return transform_label(self.name, self.amount)


@dataclass
class RunConfig:
    """``run.*``: where results go and how the backbone runs (what evaluate.py and train.py share)."""

    out: str = "runs"
    name: Optional[str] = None
    accelerator: str = "auto"
    devices: int = 1
    batch_size: int = 16
    batch_windows: Optional[int] = None
    max_windows_per_batch: int = 64  # bound on windows per backbone call (memory on huge images)
    max_image_side: Optional[int] = 4096  # whole-image backbones refuse larger images; null = no bound
    num_workers: int = 2
    precision: Optional[Precision] = None
    resume: bool = True
    compile: bool = False


@dataclass
class EvaluateRunConfig(RunConfig):
    ref_cache: int = 4  # reference images whose features are kept (work is ordered by reference)
    seed: int = 0  # the global RNG (the paper's swd draws from it)


@dataclass
class EvaluateConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    distance: List[str] = field(default_factory=lambda: ["l2", "cos", "skld", "jsd", "wsd"])
    baselines: List[str] = field(default_factory=lambda: ["psnr", "ssim", "ms_ssim"])
    preset: Preset = Preset.paper
    align: Align = Align.auto
    trained: Optional[str] = None  # a learned-weights file from train.py (<run>/trained.pt)
    data: DataConfig = field(default_factory=DataConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    logger: Dict[str, Any] = field(default_factory=dict)  # configs/logger/<name>.yaml: a Lightning logger
    trainer: Dict[str, Any] = field(default_factory=dict)  # configs/trainer/predict.yaml: the scoring Trainer
    run: EvaluateRunConfig = field(default_factory=EvaluateRunConfig)


@dataclass
class SplitConfig:
    val_fraction: float = 0.3
    seed: int = 0


@dataclass
class OptimConfig:
    lr: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 64


@dataclass
class TrainRunConfig(RunConfig):
    out: str = "runs/train"
    cache_dir: Optional[str] = None
    num_workers: int = 0


@dataclass
class TrainConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    distance: str = "l2"
    preset: Preset = Preset.paper
    weighting: Weighting = Weighting.layer
    loss: str = "fidelity"
    data: DataConfig = field(default_factory=DataConfig)
    test: List[Any] = field(default_factory=lambda: ["demo"])  # names from configs/data/, or data mappings
    transform: TransformConfig = field(default_factory=TransformConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logger: Dict[str, Any] = field(default_factory=dict)  # configs/logger/<name>.yaml
    trainer: Dict[str, Any] = field(default_factory=dict)  # configs/trainer/fit.yaml: the Trainer that fits
    callbacks: Dict[str, Any] = field(default_factory=dict)  # configs/callbacks/fit.yaml: name -> callback
    predict_trainer: Dict[str, Any] = field(default_factory=dict)  # configs/trainer/predict.yaml: computes terms
    run: TrainRunConfig = field(default_factory=TrainRunConfig)


SCHEMAS = {"evaluate": EvaluateConfig, "train": TrainConfig}


def plain(obj: Any) -> Any:
    """A config object as plain dicts, lists and strings (for YAML, JSON, hashes and W&B)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
