"""The configuration schema of evaluate.py and train.py (Hydra structured configs) and the checks around it.

``configs/evaluate.yaml`` and ``configs/train.yaml`` name one option per group (``backbone``, ``data``, ``transform``,
``logger``, then ``experiment`` merged last); the dataclasses below, stored in Hydra's ConfigStore, are the schema, so
an unknown key or a value of the wrong type fails before anything runs. Backbone and transform options come from the
registries (one ConfigStore node per registered name, no YAML file each); datasets, loggers and experiments are YAML
files in ``configs/``. ``check_command_line`` validates a command line (every cell of a ``-m`` sweep) and turns
Hydra's and OmegaConf's errors into one ``ConfigError`` line with the valid keys and a close match.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from .errors import ConfigError, MissingFileError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
GROUPS = ("backbone", "data", "transform", "logger", "experiment")
PAPER_PROTOCOL = ("tra", "sca", "rot")  # the paper's robustness transforms: amount 1 (1 %, 1 degree) by default
CHOICES = {
    "preset": ("paper", "fixed"),
    "align": ("auto", "error", "resize"),
    "head_type": ("layer", "channel"),
    "data.on_bad_image": ("error", "skip"),
    "data.exif": ("auto", "apply", "ignore"),
    "logger.name": ("csv", "wandb"),
    "run.precision": (None, "fp32", "bf16", "fp16"),
}
HYDRA_FLAGS = ("-m", "--multirun")  # the only flags checked here; Hydra handles --help, --cfg, --info ... itself


@dataclass
class BackboneConfig:
    """``backbone=NAME`` (a registered name) or ``backbone.name=timm:<model>`` / ``open_clip:<arch>:<tag>``."""

    name: str = MISSING
    pretrained: bool = True  # false = random init (smoke tests)
    weights: Optional[str] = None  # a local checkpoint file (no download)


@dataclass
class DataConfig:
    """One dataset: ``configs/data/<name>.yaml`` sets its name and default folder."""

    name: str = MISSING
    root: Optional[str] = None  # the dataset folder; each YAML defaults it to $ZSIQA_DATA/<folder>
    limit: Optional[int] = None  # the first N pairs only (quick checks)
    strict: bool = True  # false accepts a partial copy (counts not checked; listed files must exist)
    label: Optional[str] = None  # LIVE: dmos_realigned (default) or dmos
    on_bad_image: str = "error"  # error stops with the file named; skip records the pair as failed
    exif: str = "auto"  # apply / ignore EXIF orientation; auto = ignore under preset=paper, apply under fixed


@dataclass
class TransformConfig:
    """``transform=NAME`` with ``transform.amount`` in the unit of ``zsiqa.transforms.TRANSFORMS[NAME]``."""

    name: str = "none"
    amount: float = MISSING


@dataclass
class LoggerConfig:
    name: str = "csv"
    project: str = "zsiqa"
    entity: Optional[str] = None
    group: Optional[str] = None  # null = the dataset
    mode: Optional[str] = None  # null = online if logged in, else offline; or online, offline, disabled


@dataclass
class RunConfig:
    """``run.*``: where results go and how the backbone runs (what evaluate.py and train.py share)."""

    out: str = "runs"
    name: Optional[str] = None
    accelerator: str = "auto"
    devices: int = 1
    batch_size: int = 16
    batch_windows: Optional[int] = None
    max_windows_per_batch: int = 64
    max_image_side: Optional[int] = 4096  # whole-image backbones refuse larger images; null = no bound
    num_workers: int = 2
    precision: Optional[str] = None
    resume: bool = True
    compile: bool = False


@dataclass
class EvaluateRunConfig(RunConfig):
    ref_cache: int = 4
    seed: int = 0


@dataclass
class EvaluateConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    distance: List[str] = field(default_factory=lambda: ["l2", "cos", "skld", "jsd", "wsd"])
    baselines: List[str] = field(default_factory=lambda: ["psnr", "ssim", "ms_ssim"])
    preset: str = "paper"
    align: str = "auto"
    head: Optional[str] = None
    data: DataConfig = field(default_factory=DataConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
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
    max_epochs: int = 30
    patience: int = 8


@dataclass
class TrainRunConfig(RunConfig):
    out: str = "runs/train"
    cache_dir: Optional[str] = None
    num_workers: int = 0


@dataclass
class TrainConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    distance: str = "l2"
    preset: str = "paper"
    head_type: str = "layer"
    loss: str = "fidelity"
    data: DataConfig = field(default_factory=DataConfig)
    test: List[Any] = field(default_factory=lambda: ["demo"])  # names from configs/data/, or data mappings
    transform: TransformConfig = field(default_factory=TransformConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: TrainRunConfig = field(default_factory=TrainRunConfig)


def register_configs() -> None:
    """Store the schemas and one node per registered backbone and transform in Hydra's ConfigStore (idempotent:
    call it again after registering a backbone)."""
    from hydra.core.config_store import ConfigStore

    from .backbones import list_backbones
    from .transforms import TRANSFORMS

    cs = ConfigStore.instance()
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="train_schema", node=TrainConfig)
    for name in list_backbones():
        cs.store(group="backbone", name=name, node=BackboneConfig(name=name))
    cs.store(group="transform", name="none", node=TransformConfig("none", 0.0))
    for name in TRANSFORMS:
        cs.store(group="transform", name=name, node=TransformConfig(name, 1.0 if name in PAPER_PROTOCOL else MISSING))


def to_container(cfg: Any) -> Any:
    """A config as plain dicts and lists with every interpolation resolved (for YAML, JSON and W&B)."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def dataset_config(entry: Any) -> DictConfig:
    """A dataset entry of ``test=[...]``: a name from ``configs/data/`` or a mapping of ``DataConfig`` keys."""
    if isinstance(entry, str):
        path = CONFIG_DIR / "data" / f"{entry}.yaml"
        if not path.is_file():
            raise ConfigError(f"test: unknown dataset {entry!r}{_did_you_mean(entry, _options('data'))}; "
                              f"choose from {', '.join(_options('data'))}")
        entry = OmegaConf.load(path)
    return OmegaConf.merge(OmegaConf.structured(DataConfig), entry)


def compose_config(entry: str, overrides: list[str] = ()) -> DictConfig:
    """The validated config of ``configs/<entry>.yaml`` with ``overrides`` (what the entry point runs), composed with
    Hydra's compose API; errors are one-line ``ConfigError``s."""
    cfg = _without_hydra(_compose(entry, list(overrides)))
    validate(entry, cfg)
    return cfg


def check_command_line(entry: str, argv: list[str]) -> None:
    """Validate a command line of evaluate.py / train.py before Hydra runs it: every cell of a ``-m`` sweep is
    composed and checked, so a bad key, type, option or name fails at once, as one line, before any cell starts."""
    if any(a.startswith("-") and a not in HYDRA_FLAGS for a in argv):
        return  # --help, --cfg, --info ...: Hydra's own business
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    multirun = any(a in HYDRA_FLAGS for a in argv)
    args = [a for a in argv if a not in HYDRA_FLAGS]
    parser = OverridesParser.create()
    overrides = []
    for arg in args:
        try:
            overrides += parser.parse_overrides([arg])
        except OverrideParseException as e:
            raise ConfigError(f"{arg}: not a key=value override ({_one_line(e)}); e.g. run.batch_size=32, "
                              "distance=[l2,cos], -m transform=none,tra") from None
    sweeps = [o for o in overrides if o.is_sweep_override()]
    if sweeps and not multirun:
        o = sweeps[0]
        raise ConfigError(f"{o.input_line}: a comma list is a sweep: add -m to run one job per value, or write "
                          f"{o.get_key_element()}=[{','.join(o.sweep_string_iterator())}] for a list value")
    first = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
             for o in overrides]
    groups = [line for line, o in zip(first, overrides) if _is_group(o.get_key_element())]
    _check_keys(_compose(entry, groups), [o for o in overrides if not _is_group(o.get_key_element())])
    base = _compose(entry, first)
    params = [f"{k}={v}" for k, v in base.hydra.sweeper.params.items()] if base.hydra.sweeper.get("params") else []
    if params and not multirun:
        raise ConfigError(f"experiment={base.hydra.runtime.choices.get('experiment')} is a sweep over "
                          f"{', '.join(base.hydra.sweeper.params)}: add -m")
    if not multirun:
        _check_cell(entry, _without_hydra(base))
        return
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    (cells,) = BasicSweeper.split_arguments(parser.parse_overrides(params + args), None)
    for cell in cells:
        cfg = _compose(entry, cell)
        launcher = cfg.hydra.launcher.get("_target_", "")
        cfg = _without_hydra(cfg)
        _check_cell(entry, cfg)
        if cfg.run.devices > 1 and not launcher.endswith("SlurmLauncher"):
            raise ConfigError(
                f"run.devices={cfg.run.devices} in a local sweep (-m): Lightning cannot start DDP processes inside a "
                "Hydra multirun (Lightning #11300); sweep with run.devices=1, run one command per configuration "
                "for several devices, or use hydra/launcher=slurm (each cell gets run.devices GPUs as tasks)")


def _check_cell(entry: str, cfg: DictConfig) -> None:
    """``validate``, the dataset folders exist and the output folders can be written: a bad one fails before any job
    of a sweep starts, not after its scoring."""
    from .data import data_root
    from .files import check_writable_folder

    validate(entry, cfg)
    for data in [cfg.data, *(dataset_config(t) for t in cfg.get("test", []))]:
        data_root(data)
    for key in ("run.out", "run.cache_dir"):
        if folder := OmegaConf.select(cfg, key):
            check_writable_folder(folder, key)


def validate(entry: str, cfg: DictConfig) -> None:
    """The checks a schema cannot express: choices, registered names, transform amounts, files."""
    from .baselines import BASELINES
    from .data import DATASETS
    from .distances import get_distance, list_distances
    from .presets import resolve_distance
    from .transforms import TRANSFORMS, make_transform

    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key, default="<absent>")
        if value != "<absent>" and value not in allowed:
            shown = ", ".join("null" if a is None else a for a in allowed)
            raise ConfigError(f"{key}={value}: choose one of {shown}{_did_you_mean(str(value), allowed)}")
    if ":" not in cfg.backbone.name:  # timm:... / open_clip:... names are checked when the backbone is built
        from .backbones import list_backbones

        names = list_backbones()
        if cfg.backbone.name not in names:
            raise ConfigError(f"backbone.name={cfg.backbone.name}: unknown backbone{_did_you_mean(cfg.backbone.name, names)}; "
                              f"registered: {', '.join(names)}, or timm:<model> / open_clip:<arch>:<tag>")
    if cfg.data.name not in DATASETS:
        raise ConfigError(f"data.name={cfg.data.name}: unknown dataset; choose one of {', '.join(sorted(DATASETS))}")
    distances = cfg.distance if entry == "evaluate" else [cfg.distance]
    for name in distances:
        if name not in list_distances():
            raise ConfigError(f"distance: unknown distance {name!r}{_did_you_mean(name, list_distances())}; "
                              f"available: {', '.join(list_distances())}")
    if entry == "evaluate":
        for name in cfg.baselines:
            if name not in BASELINES:
                raise ConfigError(f"baselines: unknown baseline {name!r}{_did_you_mean(name, BASELINES)}; "
                                  f"available: {', '.join(BASELINES)}")
        if cfg.head is not None and not Path(cfg.head).expanduser().is_file():
            raise MissingFileError(f"head={cfg.head}: no such file (train.py writes <run folder>/head.pt)")
    else:
        head = get_distance(resolve_distance(cfg.distance, cfg.preset))
        if head.layer_terms is None or (cfg.head_type == "channel" and head.channel_terms is None):
            raise ConfigError(f"distance={cfg.distance}: train.py learns weights on per-layer terms, which only l2, cos "
                              "and cos_channel have")
        from .engine.mos_objectives import MOS_LOSSES as LOSSES

        if cfg.loss not in LOSSES:
            raise ConfigError(f"loss={cfg.loss}: choose one of {', '.join(LOSSES)}{_did_you_mean(cfg.loss, LOSSES)}")
        for entry_ in cfg.test:
            dataset_config(entry_)
    t = cfg.transform
    if t.name != "none" and t.name not in TRANSFORMS:
        raise ConfigError(f"transform.name={t.name}: unknown transform; choose one of none, {', '.join(TRANSFORMS)}")
    try:
        amount = t.amount
    except MissingMandatoryValue:
        raise ConfigError(f"transform={t.name} needs an amount: add transform.amount=AMOUNT (unit: "
                          f"{TRANSFORMS[t.name].unit}); only none, {', '.join(PAPER_PROTOCOL)} have a default") from None
    if t.name != "none":
        try:
            make_transform(t.name, amount, cfg.preset)
        except ValueError as e:
            raise ConfigError(f"transform.amount={amount:g}: {e}") from None


# --------------------------------------------------------------------------------------------- error messages


def _compose(entry: str, overrides: list[str]) -> DictConfig:
    """Hydra's compose of ``configs/<entry>.yaml`` with the hydra node (for sweep parameters and the launcher)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException

    register_configs()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose(entry, overrides, return_hydra_config=True)
    except MissingConfigException as e:
        raise ConfigError(_missing_option(e, overrides)) from None
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_one_line(e.__cause__ or e, e)) from None


def _without_hydra(cfg: DictConfig) -> DictConfig:
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _missing_option(e: Exception, overrides: list[str]) -> str:
    """``transform=trax: no such option (did you mean tra?); choose one of ...``."""
    missing = getattr(e, "missing_cfg_file", None) or ""
    group, _, name = missing.rpartition("/")
    options = list(getattr(e, "options", None) or _options(group))
    line = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == group), f"{group}={name}")
    if not group or not options:
        return _one_line(e)
    return f"{line}: no such option{_did_you_mean(name, options)}; choose one of {', '.join(options)}"


def _check_keys(cfg: DictConfig, overrides: list) -> None:
    """Every overridden key exists in the schema; else name the valid keys of its section and the closest key."""
    flat = _leaf_keys(cfg)
    for o in overrides:
        key = o.get_key_element().lstrip("+~")
        if key.startswith("hydra.") or "@" in key:
            continue
        node, parts = cfg, key.split(".")
        for depth, part in enumerate(parts):
            section = ".".join(parts[:depth])
            if not isinstance(node, DictConfig):
                raise ConfigError(f"{o.input_line}: {section} is a value, not a section{_did_you_mean(key, flat)}")
            if part not in node.keys():
                valid = sorted(str(k) for k in node.keys() if k != "hydra")
                where = f"valid keys of {section}" if section else "valid keys"
                raise ConfigError(f"{o.input_line}: unknown key {key}{_did_you_mean(key, flat)}; {where}: {', '.join(valid)}")
            node = None if OmegaConf.is_missing(node, part) else node[part]


def _leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for k in cfg.keys():
        if k == "hydra":
            continue
        node = None if OmegaConf.is_missing(cfg, k) else cfg[k]
        keys += _leaf_keys(node, f"{prefix}{k}.") if isinstance(node, DictConfig) else [f"{prefix}{k}"]
    return keys


def _is_group(key: str) -> bool:
    return key.lstrip("+~").split("@")[0] in GROUPS or key.lstrip("+~").startswith("hydra/")


def _options(group: str) -> list[str]:
    folder = CONFIG_DIR / group
    files = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    from hydra.core.config_store import ConfigStore

    stored = ConfigStore.instance().repo.get(group, {}) if "/" not in group else {}
    return sorted(set(files) | {k.removesuffix(".yaml") for k, v in stored.items() if not isinstance(v, dict)})


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices if c is not None], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _one_line(e: BaseException, outer: BaseException | None = None) -> str:
    """An OmegaConf / Hydra message as one line: its first line plus the key it concerns."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    full_key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), "")
    text = next((ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "reference_type="))), str(e))
    if outer is not None and outer is not e:
        first = str(outer).splitlines()[0]
        if first.startswith("Error merging override "):
            return f"{first.removeprefix('Error merging override ')}: {text}"
    return f"{full_key}: {text}" if full_key and full_key not in text else text

