"""YAML configs from ``configs/`` with ``key=value`` command-line overrides and grids.

A top-level config names one entry per *group* (``backbone``, ``data``, ``transform``, ``logger``); each name resolves to
``configs/<group>/<name>.yaml`` (a backbone or transform without a file is just ``{name: <name>}``). A comma list in a
group (``backbone=dino_vitb16,clip_vitb32``) makes a grid; ``experiment=<name>`` applies
``configs/experiment/<name>.yaml`` first. Dotted keys override inside groups (``data.root=/data/tid2013``);
``transform=rotate@5`` sets a transform's amount inline.
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
GROUPS = ("backbone", "data", "transform", "logger")
FREE_GROUPS = ("backbone", "transform")  # names without a YAML file are allowed (any registered backbone / transform)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else None


def _split(value: Any) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.startswith("["):  # YAML list syntax: baselines=[] or distance=[l2,cos]
        parsed = _parse_value(value)
        if not isinstance(parsed, list):
            raise ValueError(f"cannot read {value!r} as a list")
        return parsed
    if isinstance(value, str) and "," in value:
        return [_parse_value(v.strip()) for v in value.split(",")]
    return [value]


def parse_overrides(args: list[str]) -> dict[str, str]:
    """``["a.b=1", "c=x,y"]`` -> ``{"a.b": "1", "c": "x,y"}`` with a clear error for anything else."""
    out: dict[str, str] = {}
    for arg in args:
        if "=" not in arg or arg.startswith("="):
            raise ValueError(f"bad argument {arg!r}: expected key=value (e.g. backbone=dino_vitb16 data.root=/data/LIVE)")
        key, value = arg.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _set_dotted(cfg: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = cfg
    for p in parents:
        if not isinstance(node.get(p), dict):
            raise ValueError(f"override {key!r}: {p!r} is not a section of the config")
        node = node[p]
    node[last] = value


def resolve_group(group: str, name: Any, config_dir: Path) -> dict:
    if isinstance(name, dict):
        return name
    if group == "transform" and isinstance(name, str) and "@" in name:  # rotate@5 = rotate by 5 degrees
        tname, amount = name.split("@", 1)
        return {**resolve_group(group, tname, config_dir), "amount": _parse_value(amount)}
    path = config_dir / group / f"{name}.yaml"
    if path.is_file():
        entry = _read_yaml(path)
        entry.setdefault("name", name)
        return entry
    if group in FREE_GROUPS:
        return {"name": name}
    choices = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
    raise ValueError(f"{group}={name!r}: no {path}; choose one of {', '.join(choices)}")


def load_grid(main: str, args: list[str], config_dir: Path = CONFIG_DIR) -> list[dict]:
    """Resolve ``configs/<main>.yaml`` + overrides into one fully resolved config per grid cell."""
    base = _read_yaml(config_dir / f"{main}.yaml")
    overrides = parse_overrides(args)
    if "experiment" in overrides:
        exp = overrides.pop("experiment")
        for key, value in _read_yaml(config_dir / "experiment" / f"{exp}.yaml").items():
            base[key] = value
        base["experiment"] = exp
    top = {k: v for k, v in overrides.items() if "." not in k}
    dotted = {k: v for k, v in overrides.items() if "." in k}
    for key, value in top.items():
        if key not in base:
            raise ValueError(f"unknown option {key!r}; known: {', '.join(sorted(base))}")
        base[key] = _split(value) if isinstance(base[key], list) or key in GROUPS else _parse_value(value)
    axes = [g for g in GROUPS if g in base]
    dotted_values = {k: _split(v) for k, v in dotted.items()}  # a comma list in a dotted key is a grid axis too
    cells = []
    for combo in itertools.product(*[_split(base[g]) for g in axes], *dotted_values.values()):
        cfg = copy.deepcopy(base)
        for group, name in zip(axes, combo):
            cfg[group] = resolve_group(group, name, config_dir)
        for key, value in zip(dotted_values, combo[len(axes):]):
            _set_dotted(cfg, key, _parse_value(value) if isinstance(value, str) else value)
        t = cfg.get("transform")
        if isinstance(t, dict) and "amount" not in t:
            raise ValueError(f"transform={t['name']!r} needs an amount: transform={t['name']}@AMOUNT or transform.amount=... "
                             "(units in zsiqa/transforms.py, e.g. rotate@5 = 5 degrees); only none, tra, sca and rot have "
                             "a default (configs/transform/)")
        cells.append(cfg)
    return cells
