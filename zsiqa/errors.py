"""Expected failures and the one error boundary of every entry point.

An expected failure (bad input, bad config, missing data, unavailable weights) is a ``ZsiqaError``: its message names
the file, line or argument and the fix, and the entry points print it as one line instead of a traceback. Anything
else is a bug and keeps its traceback. ``ZSIQA_DEBUG=1`` (or ``--debug`` where an entry point offers it) shows the
traceback of expected failures too. The classes also derive from the built-in exception a caller would expect
(``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so ``except ValueError`` keeps working.
"""
from __future__ import annotations

import os
import sys
from typing import Callable


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


class WeightsUnavailableError(ZsiqaError, RuntimeError):
    """Pretrained weights that cannot be had offline: the message names the backbone, the file and the fixes."""


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
    except ZsiqaError as e:
        if debug or debug_enabled():
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


__all__ = [
    "ConfigError", "DataError", "InputError", "MissingFileError", "WeightsUnavailableError", "ZsiqaError",
    "debug_enabled", "run_entry_point",
]
