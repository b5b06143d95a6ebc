"""Per-image results: every rank appends rows to its own part file as it goes; the parts are merged at the end.

Nothing computed is lost: an interrupted run leaves complete rows in ``parts/``, and a rerun skips their indices.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ZsiqaError, writing
from ..files import atomic_write

try:
    import fcntl
except ImportError:  # Windows has no flock: there the same command run twice at once scores twice (rows de-duplicated)
    fcntl = None

ITEM_COLUMNS = ["index", "ref", "dis", "label", "dist_type", "level", "ref_id", "transform"]
ERROR_COLUMN = "error"  # last column: why a pair has no scores (data.on_bad_image=skip), empty otherwise


class ScoreWriter:
    """Appends rows to ``<run>/parts/rank<r>.csv`` after every batch, holding a lock on it while open."""

    def __init__(self, run_dir: Path, rank: int, score_columns: list[str]) -> None:
        self.path = Path(run_dir) / "parts" / f"rank{rank}.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = ITEM_COLUMNS + score_columns + [ERROR_COLUMN]
        # Unbuffered: each batch's rows reach the file in write(), and a failed write (a full disk) leaves nothing
        # buffered for the interpreter to retry, and fail on, at exit.
        self._file = open(self.path, "ab", buffering=0)
        try:
            _lock(self._file.fileno(), self.path)  # before touching rows another process may be writing
            _drop_partial_line(self.path)
            if self.path.stat().st_size == 0:
                self._append(lambda writer: writer.writeheader())
            else:
                _check_header(self.path, self.columns)
        except BaseException:  # cleanup only: the file (and its lock) closed, the same error raised
            self._file.close()
            raise

    def write(self, rows: Iterable[dict]) -> None:
        self._append(lambda writer: writer.writerows(rows))

    def _append(self, fill: Callable[[csv.DictWriter], object]) -> None:
        text = io.StringIO(newline="")
        fill(csv.DictWriter(text, fieldnames=self.columns))
        data = memoryview(text.getvalue().encode())
        with writing(self.path):
            while data:  # a raw write may take only part of the bytes
                data = data[self._file.write(data):]

    def close(self) -> None:
        self._file.close()


def _lock(fd: int, path: Path) -> None:
    """One process per part file: the same command started twice on one folder would score every pair twice and
    race on the merge."""
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ZsiqaError(f"{path}: another process is scoring into this run folder (the same command started twice?); "
                         "wait for it to finish, or give this run its own folder (run.name=...)") from None


def _complete_lines(text: str) -> str:
    """An interruption can leave half a row at the end of a file: drop it (its pair is computed again)."""
    return text if not text or text.endswith("\n") else text[: text.rfind("\n") + 1]


def _drop_partial_line(path: Path) -> None:
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if _complete_lines(text) != text:
            path.write_text(_complete_lines(text), encoding="utf-8")


def _check_header(path: Path, columns: list[str]) -> None:
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    if header != columns:
        raise ValueError(f"{path}: columns {header} differ from this run's {columns}; use a new run folder (run.name=...)")


def read_rows(run_dir: Path) -> dict[int, dict]:
    """All complete rows of a run (merged ``scores.csv`` and unmerged parts), keyed by item index."""
    run_dir = Path(run_dir)
    paths = [run_dir / "scores.csv", *sorted((run_dir / "parts").glob("rank*.csv"))]
    rows: dict[int, dict] = {}
    for path in paths:
        if not path.exists():
            continue
        text = _complete_lines(path.read_text(encoding="utf-8"))
        for line_no, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"{path}:{line_no}: row has the wrong number of fields; delete the line or the run folder")
            try:
                rows.setdefault(int(row["index"]), row)
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}:{line_no}: malformed row ({e}); delete the line or the run folder") from e
    return rows


def merge_parts(run_dir: Path, columns: list[str]) -> Path:
    """Write all rows, sorted by index and de-duplicated, to ``scores.csv``; remove the part files."""
    run_dir = Path(run_dir)
    rows = read_rows(run_dir)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows[i] for i in sorted(rows))

    out = atomic_write(run_dir / "scores.csv", write)
    parts = run_dir / "parts"
    if parts.is_dir():
        for part in parts.glob("rank*.csv"):
            part.unlink()
        parts.rmdir()
    return out
