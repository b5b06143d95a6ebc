"""Compare metrics on the same pairs: a leaderboard with reference-clustered intervals and paired significance.

Sources are zsiqa run folders (``scores.csv`` + ``summary.json``) and per-image CSVs (the published ZS-IQA format
``dis,ref,mos,pred`` or any columns). Pairs are matched by the file names (basenames) of the reference and distorted
images, or by the paths as written (``match="path"``, for datasets such as LIVE whose distorted names repeat across
folders); the reference id used for clustering is the reference's file name without extension. Every prediction and
label is turned to higher = better from its declared direction before anything is computed (never ``abs()``).
"""
from __future__ import annotations

import csv
import json
import math
import string
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np

from ..errors import InputError, MissingFileError
from ..files import atomic_savefig, atomic_write, atomic_write_json
from .bootstrap import ReferenceBootstrap, interval_with_estimate, paired_p_value
from .correlations import correlations

LABEL_TOLERANCE = 1e-3  # labels of one pair from two sources may differ by this share of the label range (rounding)


@dataclass
class Source:
    """Predictions of one or more metrics on a set of pairs, all turned to higher = better."""

    origin: str  # the file the pairs were read from, for error messages
    keys: list[tuple[str, str]]  # (ref, dis) match keys, one per pair
    ref_ids: list[str]
    label: np.ndarray
    types: list[str] | None
    preds: dict[str, np.ndarray] = field(default_factory=dict)


def _key(path: str, match: str) -> str:
    return PurePath(path.replace("\\", "/")).name if match == "name" else path.replace("\\", "/")


def _ref_id(ref: str) -> str:
    return PurePath(ref.replace("\\", "/")).stem


def _read_csv(path: Path, needed: list[str]) -> list[dict]:
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; it has {reader.fieldnames}")
        return list(reader)


def _floats(rows: list[dict], column: str, path: Path) -> np.ndarray:
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        try:
            out[i] = float(row[column])
        except (TypeError, ValueError):
            raise InputError(f"{path}:{i + 2}: column {column!r} is {row[column]!r}, not a number") from None
        if not math.isfinite(out[i]):
            raise InputError(f"{path}:{i + 2}: column {column!r} is {row[column]!r}; every pair needs a finite value "
                             "(remove failed pairs from every source, or rerun them)")
    return out


def _sign(lower_better: bool) -> float:
    return -1.0 if lower_better else 1.0


def read_run(run_dir: str | Path, prefix: str | None = None, match: str = "name") -> Source:
    """A zsiqa run folder: every metric column of ``scores.csv``, directions from ``summary.json``.

    Metrics are named ``<prefix>/<column>`` (prefix: the folder name unless given).
    """
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise MissingFileError(f"{summary_path}: not found; {run_dir} is not a finished zsiqa run folder")
    summary = json.loads(summary_path.read_text())
    metrics = {name: bool(s["lower_better"]) for name, s in summary["metrics"].items()}
    path = run_dir / "scores.csv"
    rows = _read_csv(path, ["ref", "dis", "label", "dist_type", *metrics])
    sign = _sign(bool(summary["label_lower_better"]))
    prefix = run_dir.resolve().name if prefix is None else prefix
    return Source(
        origin=str(path),
        keys=[(_key(r["ref"], match), _key(r["dis"], match)) for r in rows],
        ref_ids=[_ref_id(r["ref"]) for r in rows],
        label=sign * _floats(rows, "label", path),
        types=[r["dist_type"] for r in rows],
        preds={f"{prefix}/{m}": _sign(lb) * _floats(rows, m, path) for m, lb in metrics.items()},
    )


def read_predictions(
    path: str | Path,
    name: str,
    pred_lower_better: bool,
    label_lower_better: bool,
    columns: dict[str, str | None] | None = None,
    match: str = "name",
) -> Source:
    """A per-image CSV of one metric. ``columns`` maps ``ref, dis, label, pred, type`` to column names (defaults:
    the published ZS-IQA format ``ref, dis, mos, pred``, no type column)."""
    path = Path(path)
    cols = {"ref": "ref", "dis": "dis", "label": "mos", "pred": "pred", "type": None} | (columns or {})
    rows = _read_csv(path, [c for c in cols.values() if c])
    return Source(
        origin=str(path),
        keys=[(_key(r[cols["ref"]], match), _key(r[cols["dis"]], match)) for r in rows],
        ref_ids=[_ref_id(r[cols["ref"]]) for r in rows],
        label=_sign(label_lower_better) * _floats(rows, cols["label"], path),
        types=[r[cols["type"]] for r in rows] if cols["type"] else None,
        preds={name: _sign(pred_lower_better) * _floats(rows, cols["pred"], path)},
    )


def _sample(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(f"{r}|{d}" for r, d in keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def merge_sources(sources: list[Source]) -> Source:
    """One source holding every metric on the pairs of the first, in its order; any difference is an ``InputError``:
    duplicate keys, pairs present in one source only, labels that disagree, metric names used twice."""
    if not sources:
        raise InputError("nothing to compare: give run folders and/or per-image CSVs")
    for s in sources:
        seen: dict[tuple[str, str], int] = {}
        for i, k in enumerate(s.keys):
            if k in seen:
                raise InputError(f"{s.origin}: pair {k[0]}|{k[1]} appears on lines {seen[k] + 2} and {i + 2}; "
                                 "pairs must be unique (match='path' tells apart images whose names repeat in folders)")
            seen[k] = i
    base = sources[0]
    index = {k: i for i, k in enumerate(base.keys)}
    merged = Source(base.origin, base.keys, base.ref_ids, base.label, base.types, dict(base.preds))
    scale = float(np.ptp(base.label)) or 1.0
    for s in sources[1:]:
        missing, extra = set(base.keys) - set(s.keys), set(s.keys) - set(base.keys)
        if missing or extra:
            raise InputError(
                f"{s.origin} and {base.origin} hold different pairs: {len(missing)} only in {base.origin} "
                f"[{_sample(missing)}], {len(extra)} only in {s.origin} [{_sample(extra)}]"
            )
        order = np.array([index[k] for k in s.keys])
        label = np.empty_like(s.label)
        label[order] = s.label
        off = np.flatnonzero(np.abs(label - base.label) > LABEL_TOLERANCE * scale)
        if off.size:
            shown = ", ".join(f"{base.keys[i][0]}|{base.keys[i][1]}: {base.label[i]:g} vs {label[i]:g}" for i in off[:5])
            raise InputError(
                f"{s.origin} and {base.origin} give different labels (as higher = better) for {off.size} pairs [{shown}]; "
                "check the label column and its declared direction"
            )
        if merged.types is None and s.types is not None:
            merged.types = [s.types[j] for j in np.argsort(order)]
        for name, pred in s.preds.items():
            if name in merged.preds:
                raise InputError(f"metric name {name!r} is used twice ({s.origin}); give the sources distinct names")
            aligned = np.empty_like(pred)
            aligned[order] = pred
            merged.preds[name] = aligned
    merged.preds = _shared_once(merged.preds)
    return merged


def _shared_once(preds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns that several run folders hold with the same values on the same pairs (a baseline such as ``psnr``
    scored in every run) kept once, under the bare column name; columns that differ keep their ``prefix/`` names."""
    by_column: dict[str, list[str]] = {}
    for name in preds:
        by_column.setdefault(name.rpartition("/")[2], []).append(name)
    rename: dict[str, str | None] = {}
    for column, names in by_column.items():
        if len(names) > 1 and "/" in names[0] and column not in preds and all(
                np.array_equal(preds[names[0]], preds[n], equal_nan=True) for n in names[1:]):
            rename[names[0]] = column
            rename.update(dict.fromkeys(names[1:]))
    return {rename.get(n, n): p for n, p in preds.items() if rename.get(n, n) is not None}


def default_prefixes(run_dirs: list[str | Path]) -> list[str]:
    """Short names for run folders given without ``NAME=``: the backbone, then the settings that tell the runs apart
    (dataset, transform, preset, trained weights), and the folder name only when those do not."""
    configs = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "summary.json"
        config = json.loads(path.read_text()).get("config", {}) if path.is_file() else {}
        transform = config.get("transform") or {}
        configs.append({
            "backbone": (config.get("backbone") or {}).get("name", Path(run_dir).name),
            "data": (config.get("data") or {}).get("name"),
            "transform": transform.get("name") if transform.get("name") in (None, "none")
            else f"{transform.get('name')}@{transform.get('amount'):g}",
            "preset": config.get("preset"),
            "trained": f"trained-{Path(config['trained']).parent.name}" if config.get("trained") else None,
        })
    keys = ["backbone"] + [k for k in ("data", "transform", "preset", "trained")
                           if len({c[k] for c in configs}) > 1]
    names = ["_".join(str(c[k]) for k in keys if c[k] not in (None, "none")) for c in configs]
    return [n if names.count(n) == 1 else Path(d).resolve().name for n, d in zip(names, run_dirs)]


def compact_letters(names: list[str], significant: list[tuple[str, str]]) -> dict[str, str]:
    """Compact letter display (insert-and-absorb): two names share a letter iff their difference is not significant,
    as far as letters can express it. ``names`` best first; letters are assigned in that order."""
    columns: list[set[str]] = [set(names)]
    for a, b in significant:
        split = []
        for col in columns:
            if a in col and b in col:
                split += [col - {a}, col - {b}]
            else:
                split.append(col)
        # Absorb: drop a column contained in another (keep the first of equal ones).
        columns = [c for i, c in enumerate(split)
                   if c and not any((c < o) or (c == o and j < i) for j, o in enumerate(split) if j != i)]
    rank = {n: i for i, n in enumerate(names)}
    columns.sort(key=lambda c: min(rank[n] for n in c))
    letters = {n: "" for n in names}
    for col, letter in zip(columns, _letter_names(len(columns))):
        for n in col:
            letters[n] += letter
    return letters


def _letter_names(k: int) -> list[str]:
    lower = string.ascii_lowercase
    return [lower[i] if i < 26 else lower[i // 26 - 1] + lower[i % 26] for i in range(k)]


def leaderboard(source: Source, n_resamples: int = 1000, seed: int = 0, level: float = 0.95, alpha: float = 0.05) -> dict:
    """``{"metrics": {name: {srcc, srcc_ci, plcc, krcc, n, group}}, "pairs": [{a, b, delta_srcc, ci, p}]}``.

    Metrics are ordered by SRCC (best first); pairs list every ``a`` ranked above ``b``, ``delta_srcc = srcc_a -
    srcc_b`` with its percentile interval (extended to hold the estimate) and paired two-sided p (same reference resamples for both metrics).
    ``group``: compact letters, metrics whose difference has ``p >= alpha`` share one.
    """
    names = list(source.preds)
    boot = ReferenceBootstrap(source.ref_ids, n_resamples, seed)
    samples = boot.srcc_many([source.preds[n] for n in names], source.label)
    stats = {n: correlations(source.preds[n], source.label, False, False) for n in names}
    order = sorted(range(len(names)), key=lambda i: -stats[names[i]]["srcc"])
    metrics = {
        names[i]: {"srcc": stats[names[i]]["srcc"], "srcc_ci": interval_with_estimate(samples[i], stats[names[i]]["srcc"], level),
                   "plcc": stats[names[i]]["plcc"], "krcc": stats[names[i]]["krcc"], "n": stats[names[i]]["n"]}
        for i in order
    }
    pairs = []
    for u, i in enumerate(order):
        for j in order[u + 1:]:
            delta = stats[names[i]]["srcc"] - stats[names[j]]["srcc"]
            diff = samples[i] - samples[j]
            pairs.append({"a": names[i], "b": names[j], "delta_srcc": delta, "ci": interval_with_estimate(diff, delta, level),
                          "p": paired_p_value(delta, diff)})
    significant = [(p["a"], p["b"]) for p in pairs if p["p"] < alpha]
    for name, letters in compact_letters(list(metrics), significant).items():
        metrics[name]["group"] = letters
    return {"metrics": metrics, "pairs": pairs}


def subset(source: Source, keep: np.ndarray) -> Source:
    """The pairs where ``keep`` (bool ``[n]``) is true."""
    idx = np.flatnonzero(keep)
    return Source(source.origin, [source.keys[i] for i in idx], [source.ref_ids[i] for i in idx], source.label[idx],
                  None if source.types is None else [source.types[i] for i in idx],
                  {n: p[idx] for n, p in source.preds.items()})


def compare(
    sources: list[Source], n_resamples: int = 1000, seed: int = 0, level: float = 0.95, alpha: float = 0.05,
    by_type: bool = False,
) -> dict:
    """Merge ``sources`` and build the leaderboard; with ``by_type`` also one per distortion type (key ``by_type``)."""
    merged = merge_sources(sources)
    out = leaderboard(merged, n_resamples, seed, level, alpha)
    if by_type:
        if merged.types is None:
            raise InputError("--by-type needs distortion types: a run folder, or a CSV with a type column (--type-col)")
        types = np.asarray(merged.types)
        out["by_type"] = {}
        for t in sorted(set(merged.types)):
            try:
                out["by_type"][t] = leaderboard(subset(merged, types == t), n_resamples, seed, level, alpha)
            except ValueError as e:  # InputError included: e.g. one reference only, or a constant label
                raise InputError(f"distortion type {t!r}: {e}") from e
    return out


def _pair_cells(board: dict) -> dict[tuple[str, str], tuple[float, float]]:
    """(row, column) -> (ΔSRCC row minus column, p), both orders."""
    cell = {(p["a"], p["b"]): (p["delta_srcc"], p["p"]) for p in board["pairs"]}
    return cell | {(b, a): (0.0 - d, p) for (a, b), (d, p) in cell.items()}  # 0.0 - d: never "-0.0000"


def format_leaderboard(board: dict, level: float = 0.95, title: str = "all pairs") -> str:
    """Markdown: the leaderboard, then the ΔSRCC / p matrix (row minus column)."""
    pct = f"{round(level * 100)} %"
    lines = [f"### {title}", "", f"| rank | metric | SRCC [{pct} CI] | PLCC | KRCC | n | group |", "|---|---|---|---|---|---|---|"]
    for rank, (name, m) in enumerate(board["metrics"].items(), 1):
        lo, hi = m["srcc_ci"]
        lines.append(f"| {rank} | {name} | {m['srcc']:.4f} [{lo:.4f}, {hi:.4f}] | {m['plcc']:.4f} | {m['krcc']:.4f} "
                     f"| {m['n']} | {m['group']} |")
    names = list(board["metrics"])
    if len(names) > 1:  # columns by rank, so ten metrics still fit a screen
        cell = _pair_cells(board)
        lines += ["", "ΔSRCC (row − column, columns by rank) / paired p", "",
                  "| | " + " | ".join(str(r) for r in range(1, len(names) + 1)) + " |", "|---|" + "---|" * len(names)]
        for rank, a in enumerate(names, 1):
            cells = ["–" if a == b else f"{cell[a, b][0]:+.3f} / {cell[a, b][1]:.2g}" for b in names]
            lines.append(f"| {rank} {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_matrix(board: dict, path: str | Path) -> Path:
    """CSV, one row per metric (leaderboard order): ``delta:<b>`` (row minus b) and ``p:<b>`` columns."""
    names = list(board["metrics"])
    cell = _pair_cells(board)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["metric", *(f"delta:{b}" for b in names), *(f"p:{b}" for b in names)])
            for a in names:
                writer.writerow([a, *(0.0 if a == b else cell[a, b][0] for b in names),
                                 *(1.0 if a == b else cell[a, b][1] for b in names)])

    return atomic_write(path, write)


def plot_leaderboard(result: dict, path: str | Path, level: float = 0.95) -> Path:
    """SRCC with its interval per metric, best at the top, group letters beside; one panel per type with ``by_type``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("all pairs", result)] + list(result.get("by_type", {}).items())
    k = len(result["metrics"])
    cols = min(3, len(panels))  # panels wrap in rows of three; constrained layout keeps long labels inside
    rows = math.ceil(len(panels) / cols)
    width = 3.5 + 0.07 * max(len(n) for n in result["metrics"])
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, (0.4 * k + 1.2) * rows), squeeze=False,
                             layout="constrained")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    for ax, (title, board) in zip(axes.flat, panels):
        names = list(board["metrics"])
        srcc = np.array([board["metrics"][n]["srcc"] for n in names])
        ci = np.array([board["metrics"][n]["srcc_ci"] for n in names])
        y = np.arange(len(names))[::-1]
        ax.errorbar(srcc, y, xerr=[srcc - ci[:, 0], ci[:, 1] - srcc], fmt="o", capsize=3)
        ax.set_yticks(y, [f"{n}  ({board['metrics'][n]['group']})" for n in names], fontsize=8)
        ax.set_xlabel(f"SRCC ({round(level * 100)} % reference-bootstrap interval)")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    return atomic_savefig(path, fig)


def write_json(result: dict, path: str | Path) -> Path:
    """``{"metrics": {name: {srcc, srcc_ci, plcc, krcc, n}}, "pairs": [{a, b, delta_srcc, ci, p}]}`` (+ ``by_type``)."""
    def strip(board: dict) -> dict:
        keys = ("srcc", "srcc_ci", "plcc", "krcc", "n")
        return {"metrics": {n: {k: m[k] for k in keys} for n, m in board["metrics"].items()}, "pairs": board["pairs"]}

    payload = strip(result)
    if "by_type" in result:
        payload["by_type"] = {t: strip(b) for t, b in result["by_type"].items()}
    return atomic_write_json(path, payload)
