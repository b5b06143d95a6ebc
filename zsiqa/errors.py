"""Expected failures and the one error boundary of every entry point.

An expected failure (bad input, bad config, missing data, unavailable weights, a full disk) is a ``ZsiqaError``: its
message names the file, line or argument and the fix, and the entry points print it as one line instead of a
traceback. Anything else is a bug and keeps its traceback. ``ZSIQA_DEBUG=1`` (or ``--debug`` where an entry point
offers it) shows the traceback of expected failures too. The classes also derive from the built-in exception a caller
would expect (``ValueError``, ``FileNotFoundError``, ``OSError``, ``RuntimeError``), so ``except ValueError`` keeps
working.
"""
from __future__ import annotations

import difflib
import errno
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Callable


def did_you_mean(word: str, choices: Iterable) -> str:
    """`` (did you mean X?)`` for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, [str(c) for c in choices if c is not None], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def choose_one(key: str, value: object, allowed: Iterable) -> str:
    """``key=value: choose one of a, b (did you mean b?)``."""
    allowed = [str(a) for a in allowed]
    return f"{key}={value}: choose one of {', '.join(allowed)}{did_you_mean(str(value), allowed)}"


def first_and_count(names: Iterable, noun: str = "file") -> str:
    """``a.png``, ``a.png (and 1 other file)`` or ``a.png (and 15 other files)``: long errors name the first one and
    a count, never every one."""
    names = [str(n) for n in names]
    others = len(names) - 1
    return names[0] + (f" (and {others} other {noun}{'s' if others > 1 else ''})" if others else "") if names else ""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (long library errors quoted in one-line messages)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


class ZsiqaError(Exception):
    """An expected failure with a message meant for the user; ``exit_code`` is what the entry point returns."""

    exit_code = 1


class InputError(ZsiqaError, ValueError):
    """A bad image, tensor or argument given to the API or the command line."""


class ConfigError(ZsiqaError, ValueError):
    """A bad configuration: unknown key, wrong type, unknown option (a usage error: exit code 2)."""

    exit_code = 2


class DataError(ZsiqaError, ValueError):
    """A dataset folder or label file that cannot be read as its layout defines it (named file and line)."""


class MissingFileError(ZsiqaError, FileNotFoundError):
    """A file or folder that should exist does not (an image, a label file, a checkpoint)."""


class CorruptFileError(InputError):
    """A file zsiqa wrote or was given that cannot be read back whole (truncated, garbage) or holds more than tensors
    (a pickle that could run code): the message names the file. Caches and parts catch it and recompute."""


class DiskFullError(ZsiqaError, OSError):
    """A write that failed for lack of space (or quota): the message names the file; a rerun resumes."""


class WeightsUnavailableError(ZsiqaError, RuntimeError):
    """Pretrained weights that cannot be had offline: the message names the backbone, the file and the fixes."""


_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


def out_of_space(error: BaseException, path: str | os.PathLike | None = None) -> DiskFullError | None:
    """The clean error for a write (to ``path``, else the file the ``OSError`` names: a copy's destination) that
    failed because the disk or the user's quota is full, else None. torch's writer reports the ``OSError`` only as
    the context of its own ``RuntimeError``, so the chain is searched."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__context__
    if cause is None or cause.errno not in _OUT_OF_SPACE:
        return None
    where = path or cause.filename2 or cause.filename
    return DiskFullError(f"{f'{where}: ' if where else ''}{cause.strerror} (a write failed). Free some space on that "
                         "disk, or write the run elsewhere (run.out=...), and run the same command again: it resumes "
                         "from what was already written")


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Around a write to ``path``: a full disk becomes a ``DiskFullError`` naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        full = out_of_space(e, path)
        if full is None:
            raise
        raise full from e


def debug_enabled() -> bool:
    """True when ``ZSIQA_DEBUG`` is set to anything but ``""`` / ``0``: expected failures show their traceback."""
    return os.environ.get("ZSIQA_DEBUG", "") not in ("", "0")


def run_entry_point(main: Callable[[], int | None], prog: str, debug: bool = False) -> int:
    """Call ``main()``; an expected failure prints ``prog: error: <message>`` on stderr and returns its exit code.

    Unexpected exceptions propagate with their traceback (they are bugs). With ``debug`` (or ``ZSIQA_DEBUG=1``)
    expected failures propagate too.
    """
    try:
        return int(main() or 0)
    except (ZsiqaError, OSError) as e:
        error = e if isinstance(e, ZsiqaError) else out_of_space(e)
        if error is None or debug or debug_enabled():
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


__all__ = [
    "ConfigError", "CorruptFileError", "DataError", "DiskFullError", "InputError", "MissingFileError", "WeightsUnavailableError", "ZsiqaError",
    "debug_enabled", "first_and_count", "out_of_space", "run_entry_point", "writing",
]
