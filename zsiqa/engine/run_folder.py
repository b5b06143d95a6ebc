"""Run folders: what identifies one (every key of a config but those that cannot change its results) and the one
check that a folder holds results of this config."""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from ..errors import ConfigError


def identity(values: dict, not_result_keys: Iterable[str]) -> dict:
    """A config's plain values as dotted keys, without ``not_result_keys`` (and the keys below them): what a run
    folder's hash covers, so two configurations share a folder only when their results are the same."""
    excluded = tuple(not_result_keys)
    return {k: v for k, v in _flatten(values).items() if not any(k == n or k.startswith(n + ".") for n in excluded)}


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in values.items():
        flat.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return flat


def changed_keys(saved: Mapping, now: Mapping, keys: Iterable[str]) -> list[str]:
    """The ``keys`` whose values differ between a saved config and this one."""
    return [k for k in keys if saved.get(k) != now.get(k)]


def refuse_to_resume(run_dir: str | os.PathLike, holds: str, differences: list[str]) -> None:
    """Raise a ConfigError when ``differences`` is not empty: ``run_dir`` holds ``holds`` (results, checkpoints)
    computed with other settings, which this run must neither mix with nor overwrite silently."""
    if differences:
        raise ConfigError(
            f"{run_dir} holds {holds} of a different configuration ({'; '.join(differences)} differ); "
            "set run.name=<new folder> or run.resume=false, or delete the folder"
        )
