"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one. A write that
fails for lack of space is a ``DiskFullError`` naming the file, not a traceback."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from .errors import ConfigError, writing


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


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a temporary file beside ``path``, which then replaces ``path`` in one step. A failed
    write leaves no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
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
