"""A sweep's results in one paper-shaped table: every run's ``summary.json`` gathered into ``grid.md`` and ``grid.csv``.

Works whatever ran the cells (one process, local processes, SLURM jobs): a sweep folder holds one folder per job with
a link ``run`` to the job's run folder, and ``gather(folder)`` reads every ``summary.json`` found under ``folder``
(following links). ``GatherSweep`` does it when a Hydra multirun ends; ``zsiqa gather DIR`` does it any time later.
Every job folder also holds ``cell.json`` (its overrides and status: running, done or failed with the error line):
failed and unfinished cells are listed under the table, and a sweep with any exits non-zero after writing it.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..config import EvaluateConfig, saved_config
from ..errors import MissingFileError
from ..files import atomic_write_text
from .markdown import fmt, with_interval

CELL_FILE = "cell.json"


def record_cell(job_dir: str | os.PathLike, overrides: list[str], status: str, error: str | None = None) -> None:
    """Write ``<job>/cell.json``: the cell's overrides and its status (running, done, failed) with the error line."""
    record = {"overrides": overrides, "status": status, **({"error": error} if error else {})}
    atomic_write_text(Path(job_dir) / CELL_FILE, json.dumps(record, indent=1))


def find_cells(folder: str | os.PathLike) -> list[dict]:
    """The ``cell.json`` records of the jobs under ``folder`` (run folders behind links not entered), in path order."""
    cells = []
    for parent, _, files in sorted(os.walk(folder)):
        if CELL_FILE in files:
            path = Path(parent) / CELL_FILE
            try:
                cell = json.loads(path.read_text())
            except ValueError:
                cell = {"overrides": [], "status": "failed", "error": f"{path}: unreadable"}
            cells.append({**cell, "job": path.parent.name})
    return cells


def find_unfinished(folder: str | os.PathLike) -> list[dict]:
    """The cells under ``folder`` that failed or never finished (killed)."""
    return [c for c in find_cells(folder) if c.get("status") != "done"]


def failed_lines(cells: list[dict]) -> list[str]:
    """One Markdown line per failed or unfinished cell."""
    return [f"- job {c['job']} `{' '.join(c.get('overrides', []))}`: "
            + (f"failed: {c['error']}" if c.get("status") == "failed" else "unfinished (interrupted)") for c in cells]


def find_summaries(folder: str | os.PathLike) -> list[dict]:
    """The evaluation summaries under ``folder`` (links followed, each run once), in path order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"no sweep folder {folder}")
    seen: dict[Path, dict] = {}
    for parent, _, files in sorted(os.walk(folder, followlinks=True)):
        if "summary.json" in files:
            path = (Path(parent) / "summary.json").resolve()
            summary = json.loads(path.read_text())
            if "metrics" in summary and path not in seen:  # evaluation runs (train.py summaries have no metrics)
                seen[path] = summary
    return list(seen.values())


def _column(cfg: EvaluateConfig) -> str:
    label = cfg.transform.label
    return cfg.data.name + ("" if label == "none" else f" {label}")


def _row_name(metric: str, cfg: EvaluateConfig) -> str:
    return metric if metric in cfg.baselines else f"{cfg.backbone.name} {metric}"


def grid_rows(summaries: list[dict]) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """Columns (dataset x transform) and rows (backbone metric, or baseline): each cell the metric's summary."""
    cols: list[str] = []
    table: dict[str, dict[str, dict]] = {}
    for s in summaries:
        cfg = saved_config("evaluate", s["config"])
        col = _column(cfg)
        if col not in cols:
            cols.append(col)
        for metric, m in s["metrics"].items():
            table.setdefault(_row_name(metric, cfg), {})[col] = m
    return cols, table


def grid_markdown(summaries: list[dict]) -> str:
    """Paper-style table: one row per (backbone, metric), one column pair (PLCC, SRCC) per dataset x transform, each
    value with its reference-bootstrap interval; then SRCC per distortion type, one table per dataset x transform."""
    cols, table = grid_rows(summaries)
    lines = ["| metric | " + " | ".join(f"{c} PLCC | {c} SRCC" for c in cols) + " |", "|---|" + "---|---|" * len(cols)]
    for row, vals in table.items():
        cells = [f"{with_interval(vals[c], 'plcc', 3)} | {with_interval(vals[c], 'srcc', 3)}" if c in vals else "– | –" for c in cols]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    for c in cols:
        types = list(dict.fromkeys(t for vals in table.values() for t in vals.get(c, {}).get("by_type", {})))
        if len(types) < 2:
            continue
        lines += ["", f"SRCC by distortion type, {c} (intervals in grid.csv):", "",
                  "| metric | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
        for row, vals in table.items():
            by_type = vals.get(c, {}).get("by_type", {})
            lines.append(f"| {row} | " + " | ".join(fmt(by_type.get(t, {}).get("srcc"), 3) for t in types) + " |")
    return "\n".join(lines) + "\n"


GRID_COLUMNS = ["backbone", "data", "transform", "preset", "metric", "dist_type", "n", "plcc", "plcc_ci_lo",
                "plcc_ci_hi", "srcc", "srcc_ci_lo", "srcc_ci_hi", "krcc", "krcc_ci_lo", "krcc_ci_hi", "plcc_fit",
                "n_scored", "run_dir", "status", "error", "overrides"]


def _ci_fields(m: dict) -> dict:
    out = {}
    for key in ("plcc", "srcc", "krcc"):
        ci = m.get(f"{key}_ci") or [None, None]
        out |= {key: m.get(key), f"{key}_ci_lo": ci[0], f"{key}_ci_hi": ci[1]}
    return out


def grid_csv(summaries: list[dict], unfinished: list[dict] = ()) -> str:
    """One line per run and metric (``dist_type`` all) and per run, metric and distortion type: the run's settings,
    the correlations and their intervals; then one line per failed or unfinished cell."""
    out = io.StringIO()
    writer = csv.DictWriter(out, GRID_COLUMNS, restval="")
    writer.writeheader()
    for s in summaries:
        cfg = saved_config("evaluate", s["config"])
        run = {"backbone": cfg.backbone.name, "data": cfg.data.name, "transform": cfg.transform.label,
               "preset": cfg.preset, "run_dir": s.get("run_dir", ""), "status": "done"}
        for metric, m in s["metrics"].items():
            writer.writerow(run | {"metric": metric, "dist_type": "all", "n": m.get("n_scored"), **_ci_fields(m),
                                   "plcc_fit": m.get("plcc_fit"), "n_scored": m.get("n_scored")})
            for t, mt in m.get("by_type", {}).items():
                writer.writerow(run | {"metric": metric, "dist_type": t, "n": mt.get("n"), **_ci_fields(mt)})
    for c in unfinished:
        writer.writerow({"status": c.get("status"), "error": c.get("error", "unfinished"),
                         "overrides": " ".join(c.get("overrides", []))})
    return out.getvalue()


def write_grid(folder: str | os.PathLike, summaries: list[dict], unfinished: list[dict] = ()) -> tuple[Path, str]:
    """Write ``grid.md`` and ``grid.csv`` of ``summaries`` (and the ``unfinished`` cells: listed under the table, one
    row each in the CSV) into ``folder``; returns the table's path and text."""
    text = grid_markdown(summaries) if summaries else "No cell finished.\n"
    if unfinished:
        text += f"\n{len(unfinished)} cell(s) failed or unfinished (rerun the sweep: finished cells are skipped):\n"
        text += "\n".join(failed_lines(list(unfinished))) + "\n"
    path = atomic_write_text(Path(folder) / "grid.md", text)
    atomic_write_text(path.with_suffix(".csv"), grid_csv(summaries, list(unfinished)))
    return path, text


def gather(folder: str | os.PathLike) -> tuple[Path, str, int]:
    """``write_grid`` of every evaluation run under ``folder`` (a sweep folder, or any folder of run folders) and of
    its failed or unfinished cells; returns the table's path, its text and the number of such cells."""
    summaries = find_summaries(folder)
    unfinished = find_unfinished(folder)
    if not summaries and not unfinished:
        raise MissingFileError(f"{folder}: no summary.json of an evaluation run under it (a sweep folder links each "
                               "job's run folder as <job>/run)")
    path, text = write_grid(folder, summaries, unfinished)
    return path, text, len(unfinished)


class GatherSweep(Callback):
    """Hydra callback: when a multirun ends, gather its jobs' results into ``<sweep dir>/grid.md`` and ``grid.csv``."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(config.hydra.sweep.dir)
        if not folder.is_dir():
            return
        summaries, unfinished = find_summaries(folder), find_unfinished(folder)
        path, text = write_grid(folder, summaries, unfinished)
        print(f"\nSweep ({len(summaries)} runs) -> {path}\n{text}")
        if unfinished:  # after the table: the sweep's exit code says that some cells need a rerun
            print(f"sweep: error: {len(unfinished)} of {len(find_cells(folder))} cells failed or did not finish; see {path}",
                  file=sys.stderr)
            sys.exit(1)
