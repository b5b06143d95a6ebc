"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one. A write that
fails for lack of space is a ``DiskFullError`` naming the file, not a traceback. ``load_tensors`` is the one way zsiqa
reads a torch file back: tensors only (no code runs), and a truncated or hostile file is one line naming it."""
from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import torch

from .errors import ConfigError, CorruptFileError, writing


def check_writable_folder(folder: str | os.PathLike, setting: str) -> None:
    """An output folder the run cannot write fails at once, as one line naming ``setting``, not after the run's work.
    Creates nothing: a scratch file is written and removed in the nearest folder that exists."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{setting}={folder}: {existing} is a file, not a folder; choose a folder you can write")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".zsiqa-write-check-"):
            pass
    except OSError as e:
        raise ConfigError(f"{setting}={folder}: cannot write in {existing} ({e.strerror}); choose a folder you can "
                          "write") from None


def temp_path(path: Path) -> Path:
    """The temporary file beside ``path`` that an atomic write fills: a unique name, so two processes writing the
    same file (two runs sharing a cache) never write into one temporary file."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a temporary file beside ``path``, which then replaces ``path`` in one step. A failed
    write leaves no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with writing(path):
            write(tmp)
    except BaseException:  # cleanup only, then the same error (a full disk: a DiskFullError naming ``path``)
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_savefig(path: str | os.PathLike, fig, dpi: int = 110) -> Path:
    """``fig.savefig`` to ``path`` (its format from the suffix) atomically, then close ``fig`` (pyplot keeps every
    figure alive until it is closed), also when the write fails."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or None))
    finally:
        plt.close(fig)


def atomic_save(path: str | os.PathLike, obj: object) -> Path:
    """``torch.save(obj)`` to ``path`` atomically. Through a Python file object: given a file name, torch's own writer
    hides a full disk's ``OSError`` (and ``torch.jit.save`` aborts the process)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    return atomic_write(path, write)


UNSUPPORTED_GLOBAL = r"Unsupported globals?: (?:GLOBAL )?([\w.]+)"  # torch's (and timm's) words for a refused object


def load_tensors(path: str | os.PathLike, what: str = "file") -> object:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors, numbers, strings and containers only, so no code
    in the file ever runs. A truncated, garbage or hostile file raises ``CorruptFileError`` naming ``path``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        if re.search(UNSUPPORTED_GLOBAL, str(e)):
            raise refused_pickle(path, e, what) from None
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        first = next((line.split("error:", 1)[1].strip() or "not a torch file" for line in lines
                      if "WeightsUnpickler error:" in line), lines[0] if lines else type(e).__name__)
        raise CorruptFileError(f"{path}: not a readable {what} (truncated or corrupt: {first.split('. ')[0]})") from None


def refused_pickle(path: str | os.PathLike, error: Exception, what: str = "file") -> CorruptFileError:
    """The one line for a file that ``torch.load(weights_only=True)`` refused (here, or inside timm / open_clip)."""
    found = re.search(UNSUPPORTED_GLOBAL, str(error))
    detail = f"GLOBAL {found.group(1)}" if found else ""
    return CorruptFileError(
        f"{path}: refused: this {what} holds {'Python objects (' + detail + ')' if detail else 'data'} that are not "
        "plain tensors; zsiqa loads only tensors (torch.load weights_only=True), never code from a file. Use a file "
        "of tensors (a state dict, or .safetensors) from a source you trust")


def move_aside(path: str | os.PathLike) -> Path:
    """Rename a corrupt file (or folder) to ``<name>.corrupt`` (replacing an older one), kept for inspection; returns
    the new path."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(path, target)
    return target


def is_refused_pickle(error: Exception) -> bool:
    """Whether ``error`` is torch's refusal of a pickled Python object (timm re-raises it as a RuntimeError)."""
    return re.search(UNSUPPORTED_GLOBAL, str(error)) is not None


def json_safe(value):
    """``value`` with every NaN or infinite float as None: strict JSON (``NaN`` is not JSON; readers such as
    ``jq`` or JavaScript refuse it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike, value, indent: int = 1) -> Path:
    """``value`` as strict JSON (``json_safe``: NaN and infinities as null), written atomically; other objects as
    their ``str``."""
    return atomic_write_text(path, json.dumps(json_safe(value), indent=indent, default=str, allow_nan=False))
