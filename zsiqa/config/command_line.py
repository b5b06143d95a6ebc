"""A command line of evaluate.py / train.py checked before anything runs: every cell of a ``-m`` sweep is composed,
loaded and checked, so a bad key, type, option or name fails at once, as one line, before any cell starts."""
from __future__ import annotations

import itertools

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..data import data_root
from ..errors import ConfigError
from ..files import check_writable_folder
from .load import CONFIG_DIR, load
from .messages import did_you_mean, one_line
from .schema import EvaluateConfig, TrainConfig
from .store import register_configs

GROUPS = ("backbone", "data", "transform", "logger", "trainer", "callbacks", "experiment")
HYDRA_FLAGS = ("-m", "--multirun")  # the only flags checked here; Hydra handles --help, --cfg, --info ... itself


def compose_config(entry: str, overrides: list[str] = ()) -> EvaluateConfig | TrainConfig:
    """The loaded config of ``configs/<entry>.yaml`` with ``overrides`` (what the entry point runs)."""
    return load(entry, compose_hydra(entry, list(overrides)))


def check_command_line(entry: str, argv: list[str]) -> None:
    """Validate ``argv`` of evaluate.py / train.py: every cell of a sweep, before Hydra runs any."""
    if any(a.startswith("-") and a not in HYDRA_FLAGS for a in argv):
        return  # --help, --cfg, --info ...: Hydra's own business
    multirun = any(a in HYDRA_FLAGS for a in argv)
    args = [a for a in argv if a not in HYDRA_FLAGS]
    overrides = _parse(args)
    sweeps = [o for o in overrides if o.is_sweep_override()]
    if sweeps and not multirun:
        o = sweeps[0]
        raise ConfigError(f"{o.input_line}: a comma list is a sweep: add -m to run one job per value, or write "
                          f"{o.get_key_element()}=[{','.join(o.sweep_string_iterator())}] for a list value")
    first = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else o.input_line
             for o in overrides]
    groups = [line for line, o in zip(first, overrides) if _is_group(o.get_key_element())]
    _check_keys(compose_hydra(entry, groups), [o for o in overrides if not _is_group(o.get_key_element())])
    base = compose_hydra(entry, first)
    params = [f"{k}={v}" for k, v in base.hydra.sweeper.params.items()] if base.hydra.sweeper.get("params") else []
    if params and not multirun:
        raise ConfigError(f"experiment={base.hydra.runtime.choices.get('experiment')} is a sweep over "
                          f"{', '.join(base.hydra.sweeper.params)}: add -m")
    if not multirun:
        _check_cell(entry, base)
        return
    for cell in sweep_cells(params + args):
        hydra_cfg = compose_hydra(entry, cell)
        cfg = _check_cell(entry, hydra_cfg)
        if cfg.run.devices > 1 and not hydra_cfg.hydra.launcher.get("_target_", "").endswith("SlurmLauncher"):
            raise ConfigError(
                f"run.devices={cfg.run.devices} in a local sweep (-m): Lightning cannot start DDP processes inside a "
                "Hydra multirun (Lightning #11300); sweep with run.devices=1, run one command per configuration "
                "for several devices, or use hydra/launcher=slurm (each cell gets run.devices GPUs as tasks)")


def sweep_cells(args: list[str]) -> list[list[str]]:
    """The cells of a sweep: the cartesian product of its comma lists, in order; a later value of a key replaces an
    earlier one (the command line over an experiment's ``hydra.sweeper.params``)."""
    by_key: dict[str, list[str]] = {}
    for o in _parse(args):
        key = o.get_key_element()
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.input_line.split("=", 1)[1]]
        by_key[key] = [f"{key}={v}" for v in values]
    return [list(cell) for cell in itertools.product(*by_key.values())]


def compose_hydra(entry: str, overrides: list[str]) -> DictConfig:
    """Hydra's compose of ``configs/<entry>.yaml`` with the hydra node (for sweep parameters and the launcher)."""
    register_configs()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose(entry, overrides, return_hydra_config=True)
    except MissingConfigException as e:
        raise ConfigError(_missing_option(e, overrides)) from None
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(one_line(e.__cause__ or e, e)) from None


def _parse(args: list[str]) -> list:
    parser = OverridesParser.create()
    overrides = []
    for arg in args:
        try:
            overrides += parser.parse_overrides([arg])
        except OverrideParseException as e:
            raise ConfigError(f"{arg}: not a key=value override ({one_line(e)}); e.g. run.batch_size=32, "
                              "distance=[l2,cos], -m transform=none,tra") from None
    return overrides


def _check_cell(entry: str, hydra_cfg: DictConfig) -> EvaluateConfig | TrainConfig:
    """``load``, the dataset folders exist and the output folders can be written: a bad one fails before any job
    of a sweep starts, not after its scoring."""
    cfg = load(entry, hydra_cfg)
    for data in [cfg.data, *getattr(cfg, "test", [])]:
        data_root(data)
    for key, folder in (("run.out", cfg.run.out), ("run.cache_dir", getattr(cfg.run, "cache_dir", None))):
        if folder:
            check_writable_folder(folder, key)
    return cfg


def _missing_option(e: Exception, overrides: list[str]) -> str:
    """``transform=trax: no such option (did you mean tra?); choose one of ...``."""
    missing = getattr(e, "missing_cfg_file", None) or ""
    group, _, name = missing.rpartition("/")
    options = list(getattr(e, "options", None) or _options(group))
    line = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == group), f"{group}={name}")
    if not group or not options:
        return one_line(e)
    return f"{line}: no such option{did_you_mean(name, options)}; choose one of {', '.join(options)}"


def _check_keys(cfg: DictConfig, overrides: list) -> None:
    """Every overridden key exists in the schema; else name the valid keys of its section and the closest key.
    ``+key=...`` adds a key (a callback, a Trainer argument): its target's signature checks it at load."""
    flat = _leaf_keys(cfg)
    for o in overrides:
        key = o.get_key_element()
        if key.startswith(("+", "hydra.")) or "@" in key:
            continue
        key = key.lstrip("~")
        node, parts = cfg, key.split(".")
        for depth, part in enumerate(parts):
            section = ".".join(parts[:depth])
            if not isinstance(node, DictConfig):
                raise ConfigError(f"{o.input_line}: {section} is a value, not a section{did_you_mean(key, flat)}")
            if part not in node.keys():
                valid = sorted(str(k) for k in node.keys() if k != "hydra")
                where = f"valid keys of {section}" if section else "valid keys"
                add = (f"; +callbacks.{part}._target_=... adds a callback" if section == "callbacks" else
                       f"; +{key}=... adds it" if section.split(".")[0] in ("trainer", "callbacks", "logger") else "")
                raise ConfigError(f"{o.input_line}: unknown key {key}{did_you_mean(key, flat)}; {where}: "
                                  f"{', '.join(valid)}{add}")
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
    stored = ConfigStore.instance().repo.get(group, {}) if "/" not in group else {}
    return sorted(set(files) | {k.removesuffix(".yaml") for k, v in stored.items() if not isinstance(v, dict)})
