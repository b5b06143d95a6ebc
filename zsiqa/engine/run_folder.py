"""Run folders: the one check that a folder holds results of this config."""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from ..errors import ConfigError


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
