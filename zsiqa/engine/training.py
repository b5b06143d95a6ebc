"""Training runs: learned weights on the terms of a frozen backbone.

A run computes (or loads) the term tables of its training and test datasets with the scoring engine
(``term_cache``: ``Trainer.predict``, sharded over ``run.devices`` processes), splits the training pairs by reference
(``split``), fits the weights with ``Trainer.fit`` on the cached terms on process 0 (``fitting.WeightsFit``,
``zsiqa.data.term_data.TermDataModule``; epochs take milliseconds), exports ``trained.pt`` and reports zero-shot vs
trained (``zsiqa.reporting.training_report``). Trained weights score ``weights(terms)``
(``zsiqa.learned_weights``); at initialisation that is the zero-shot score.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ..choices import Weighting
from ..config import DataConfig, TrainConfig, plain
from ..data import DATASETS, PairItem, data_root
from ..data.term_data import TermDataModule, TermTable
from ..errors import CorruptFileError, writing
from ..files import atomic_write_json, atomic_write_text, load_tensors, move_aside
from ..learned_weights import (
    TermWeights,
    backbone_fingerprint,
    read_trained,
    save_trained,
    trained_config,
    trained_record,
)
from ..metric import FRMetric
from ..reporting.training_report import cross_dataset_table, weights_plot, write_score_rows
from ..reporting.wandb_log import describe_run, log_training
from ..stats import correlation_intervals, correlations
from ..stats.bootstrap import type_correlations
from .build import (
    align_policy,
    build_callbacks,
    build_datamodule,
    build_logger,
    build_metrics,
    build_trainer,
    image_windows,
)
from .fitting import WeightsFit
from .run_folder import changed_keys, identity, refuse_to_resume
from .split import positions_of, split_by_reference
from .term_cache import cache_file, cached_terms, compute_terms, term_cache_key

# What determines a training run: a run folder with checkpoints of other values cannot be resumed.
TRAIN_KEYS = ("backbone", "distance", "preset", "weighting", "loss", "data", "transform", "split", "optim", "trainer",
              "callbacks")


# Keys that change neither the terms nor the fit (how the backbone work is cut, where things go, the logger); every
# other key enters the run folder's hash.
NOT_RESULT_KEYS = ("logger", "run.out", "run.name", "run.resume", "run.batch_size", "run.batch_windows",
                   "run.num_workers", "run.devices", "run.cache_dir", "predict_trainer.devices")


def train_dir_for(cfg: TrainConfig) -> Path:
    """``<out>/<data>/<backbone>_<distance>_<preset>_<weighting>_<loss>[_<transform>]_<hash>``: the hash covers every
    key but ``NOT_RESULT_KEYS``, so runs that can end differently never share a folder."""
    if cfg.run.name:
        return Path(cfg.run.out) / cfg.run.name
    tlabel = cfg.transform.label
    settings = hashlib.sha256(json.dumps(identity(plain(cfg), NOT_RESULT_KEYS), sort_keys=True,
                                         default=str).encode()).hexdigest()[:6]
    name = "_".join([cfg.backbone.name, cfg.distance, str(cfg.preset), str(cfg.weighting), cfg.loss]
                    + ([tlabel] if tlabel != "none" else []) + [settings])
    return Path(cfg.run.out) / cfg.data.name / re.sub(r"[^A-Za-z0-9_.@-]+", "-", name)


def _prepare_run_dir(run_dir: Path, cfg: TrainConfig) -> None:
    """Fresh start (run.resume=false) or a check that the folder's checkpoints belong to this configuration
    (``_save_run_settings`` checks the terms' source and writes both once the backbone is built)."""
    ckpt_dir = run_dir / "checkpoints"
    if not cfg.run.resume and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    saved = run_dir / "config.yaml"
    if ckpt_dir.exists() and saved.exists():
        refuse_to_resume(run_dir, "checkpoints", changed_keys(yaml.safe_load(saved.read_text()), plain(cfg), TRAIN_KEYS))


def _save_run_settings(run_dir: Path, cfg: TrainConfig, metric: FRMetric, fingerprint: str) -> None:
    """Write ``config.yaml`` and ``metric.json`` (what the terms come from: ``metric.config()`` with the precision,
    preset, windows..., and the backbone's weights fingerprint), after checking that the folder's checkpoints were
    trained on the same terms: settings outside ``TRAIN_KEYS`` (run.precision, a new weights file at the same path)
    change them too."""
    path = run_dir / "metric.json"
    record = {"metric": metric.config(), "fingerprint": fingerprint}
    if path.exists() and (run_dir / "checkpoints").exists():
        old = json.loads(path.read_text())
        diff = [f"{k} ({old['metric'].get(k)!r} then, {v!r} now)" for k, v in record["metric"].items()
                if old["metric"].get(k) != v]
        if old["fingerprint"] != fingerprint:
            diff.append(f"backbone weights (fingerprint {old['fingerprint'][:12]} then, {fingerprint[:12]} now)")
        refuse_to_resume(run_dir, "checkpoints", diff)  # their terms came from other metric settings (metric.json)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(plain(cfg), sort_keys=False))
    atomic_write_text(path, json.dumps(record, indent=1))


def _save_split(run_dir: Path, split: dict, cfg: TrainConfig) -> None:
    path = run_dir / "split.json"
    record = {"seed": cfg.split.seed, "val_fraction": cfg.split.val_fraction, **split}
    if path.exists() and (run_dir / "checkpoints").exists() and json.loads(path.read_text()) != record:
        refuse_to_resume(run_dir, "checkpoints", [f"the reference images of the split ({path}; the data changed)"])
    atomic_write_text(path, json.dumps(record, indent=1))


@dataclass
class DatasetTerms:
    """A dataset's pairs, labels and term table (the table on process 0 only)."""

    data: DataConfig
    items: list[PairItem]
    table: TermTable | None

    def labels(self) -> tuple[torch.Tensor, bool]:
        """Labels ``[N]`` (float64) and their direction, as the dataset declares it."""
        lower = DATASETS[self.data.name].lower_better
        if any(it.label_lower_better != lower for it in self.items):
            raise ValueError(f"{self.data.name}: items disagree with the dataset's declared label direction")
        return torch.tensor([it.label for it in self.items], dtype=torch.float64), lower


class TermSource:
    """Terms of any dataset config for one metric: a data module for the items, then the cached (or computed) terms.
    Every process calls it in the same order; the table comes back on process 0 (None on the others)."""

    def __init__(self, metric: FRMetric, fingerprint: str, cfg: TrainConfig) -> None:
        self.metric, self.fingerprint, self.cfg = metric, fingerprint, cfg
        self.channels = cfg.weighting is Weighting.channel
        self.align = align_policy(cfg)
        self.cache_dir = Path(cfg.run.cache_dir or Path(cfg.run.out) / "cache")
        self.log: list[dict] = []

    def __call__(self, data: DataConfig) -> DatasetTerms:
        module = build_datamodule(data, self.cfg, windows_of=image_windows(self.metric))
        key = term_cache_key(self.metric, self.fingerprint, self.channels, module, self.align)
        parts = cache_file(self.cache_dir, key).with_suffix(".parts")
        start = time.perf_counter()
        table, path, computed = cached_terms(self.cache_dir, key, lambda save: compute_terms(
            self.metric, module, self.channels, self.align, self.cfg.predict_trainer, parts, save))
        seconds = time.perf_counter() - start
        if table is not None:
            print(f"terms of {data.name} ({len(module.items)} pairs): {'computed' if computed else 'loaded'} in "
                  f"{seconds:.1f} s -> {path}")
        self.log.append({"data": data.name, "file": str(path), "computed": computed, "seconds": round(seconds, 3)})
        return DatasetTerms(data, module.items, table)


def train(cfg: TrainConfig, extra_callbacks: Sequence[L.Callback] = ()) -> dict | None:
    """One training run: terms (cached; computed on ``run.devices`` processes), split by reference, fit with early
    stopping on process 0 (resuming from the last checkpoint), then ``trained.pt`` and zero-shot vs trained on
    validation and the test datasets. Returns the summary on process 0, None on the others."""
    start = time.perf_counter()
    run_dir = train_dir_for(cfg)
    rank0 = rank_zero_only.rank == 0  # from the launcher's environment: this process writes the run folder
    if rank0:
        _prepare_run_dir(run_dir, cfg)
    (metric,) = build_metrics(cfg, "cpu").values()  # the predict Trainer moves it to its device
    fingerprint = backbone_fingerprint(metric.backbone)
    if rank0:
        _save_run_settings(run_dir, cfg, metric, fingerprint)
    source = TermSource(metric, fingerprint, cfg)
    terms = source(cfg.data)
    tests = [source(data) for data in cfg.test]  # all backbone work first, on every process
    if not rank0:
        return None
    fit = _fit(cfg, run_dir, metric, fingerprint, terms, extra_callbacks)
    summary = _report(cfg, run_dir, metric, fit, tests)
    summary.update(terms=source.log, seconds=round(time.perf_counter() - start, 3))
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


@dataclass
class Fitted:
    """What ``_fit`` leaves for the report: the best weights, the split's positions, the validation correlations."""

    terms: DatasetTerms
    labels: torch.Tensor
    label_lower_better: bool
    train_pos: torch.Tensor
    val_pos: torch.Tensor
    weights: TermWeights
    zero_shot: dict
    best_epoch: int
    file: Path
    logger: object


def _fit(cfg: TrainConfig, run_dir: Path, metric: FRMetric, fingerprint: str, terms: DatasetTerms,
         extra_callbacks: Sequence[L.Callback]) -> Fitted:
    """Process 0: split by reference, ``Trainer.fit`` of the weights (resumed from ``last.ckpt``), export the best."""
    channels = cfg.weighting is Weighting.channel
    labels, label_lower = terms.labels()
    split = split_by_reference(terms.items, cfg.split.val_fraction, cfg.split.seed)
    _save_split(run_dir, split, cfg)
    train_pos, val_pos = positions_of(terms.items, split["train"]), positions_of(terms.items, split["val"])
    table = terms.table
    zero_shot = correlations(table.layer[val_pos].sum(1), labels[val_pos], metric.lower_better, label_lower)
    print(f"{cfg.backbone.name} {metric.distance.name} ({cfg.preset}, {cfg.weighting} weights, {cfg.loss} loss) on "
          f"{cfg.data.name}: {len(train_pos)} train / {len(val_pos)} val pairs ({len(split['train'])} / "
          f"{len(split['val'])} references); zero-shot val SRCC {zero_shot['srcc']:.4f}  PLCC {zero_shot['plcc']:.4f}")
    weights = TermWeights(table.layer.shape[1], [c.shape[1] for c in table.channel] if channels else None)
    config = trained_config(metric, weights, cfg.backbone.pretrained, cfg.backbone.weights, fingerprint,
                            trained_on=cfg.data.name, loss=cfg.loss)
    module = WeightsFit(weights, cfg.loss, cfg.optim.lr, cfg.optim.weight_decay, metric.lower_better, label_lower,
                        zero_shot, config)
    data = TermDataModule((table.rows(train_pos), labels[train_pos]), (table.rows(val_pos), labels[val_pos]), channels,
                          cfg.optim.batch_size, cfg.split.seed)
    logger = build_logger(cfg.logger, run_dir)
    if logger is not None:
        tags = [cfg.backbone.name, cfg.data.name, str(cfg.preset), cfg.distance, f"weighting-{cfg.weighting}",
                f"loss-{cfg.loss}", "trained"]
        describe_run(logger, f"{cfg.backbone.name}/{cfg.data.name}/{cfg.distance}-{cfg.weighting}-{cfg.loss}", tags,
                     plain(cfg))
    callbacks = [*build_callbacks(cfg.callbacks, run_dir), *extra_callbacks]
    trainer = build_trainer(cfg.trainer, callbacks, logger=logger if logger is not None else False,
                            default_root_dir=str(run_dir))
    ckpt_dir = run_dir / "checkpoints"
    done = ckpt_dir / "complete"
    if done.exists():
        print(f"training already complete in {run_dir}; re-evaluating its best checkpoint")
        if logger is not None and not isinstance(logger, CSVLogger):
            replay_curves(run_dir, logger)
    else:
        resume = resume_checkpoint(ckpt_dir)
        with warnings.catch_warnings(), writing(run_dir):  # Lightning's checkpoint and log writes name no file
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            trainer.fit(module, datamodule=data, ckpt_path=None if resume is None else str(resume))
        atomic_write_text(done, "fit finished\n")
    best_path = ckpt_dir / "best.ckpt"
    try:
        best, _ = read_trained(best_path)
        best_epoch = int(load_tensors(best_path, "checkpoint")["epoch"])
    except CorruptFileError as e:
        raise CorruptFileError(f"{e}; run.resume=false trains this run again") from None
    weights.load_state_dict(best.state_dict())
    file = save_trained(run_dir / "trained.pt", trained_record(config, weights))
    return Fitted(terms, labels, label_lower, train_pos, val_pos, weights, zero_shot, best_epoch, file, logger)


def replay_curves(run_dir: Path, logger) -> None:
    """A finished run's training curves, from its own CSV logs (``<run>/logs/version_*/metrics.csv``), to
    ``logger`` (``logger=wandb`` added after the fact), step by step; one line when the run kept none."""
    files = sorted(run_dir.glob("logs/version_*/metrics.csv"))
    if not files:
        print(f"{run_dir} was trained without CSV logs, so its curves cannot be logged now; run.resume=false trains "
              "it again with this logger")
        return
    n = 0
    for path in files:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                values = {k: float(v) for k, v in row.items() if v not in ("", None) and k != "step"}
                if values and row.get("step", "") != "":
                    logger.log_metrics(values, step=int(row["step"]))
                    n += 1
    print(f"logged the training curves of {run_dir} from {', '.join(str(p.relative_to(run_dir)) for p in files)} "
          f"({n} rows)")


def resume_checkpoint(ckpt_dir: Path) -> Path | None:
    """The checkpoint a rerun continues from: ``last.ckpt`` (written after every epoch), else nothing. An unreadable
    ``last.ckpt`` is named, moved aside and replaced by ``best.ckpt`` when that one reads (the epochs after it are
    trained again, in the same order), else the fit starts over."""
    last = ckpt_dir / "last.ckpt"
    for path in (last, ckpt_dir / "best.ckpt"):
        if not path.exists():
            continue
        try:
            epoch = load_tensors(path, "checkpoint")["epoch"]
        except (CorruptFileError, KeyError, TypeError) as e:
            moved = move_aside(path)
            print(f"{path} is unreadable ({str(e).split(': ', 1)[-1]}): moved to {moved.name}")
            continue
        print(f"resuming after epoch {epoch} from {path}")
        return path
    return None


def _report(cfg: TrainConfig, run_dir: Path, metric: FRMetric, fit: Fitted, tests: list[DatasetTerms]) -> dict:
    """Zero-shot vs trained on validation and every test dataset: CSVs, ``test.md``, the weights plot, the log."""
    channels = cfg.weighting is Weighting.channel
    table, labels = fit.terms.table, fit.labels
    with torch.no_grad():
        trained_val = fit.weights(table.rows(fit.val_pos).terms(channels))
        share = fit.weights.layer_scores(table.rows(fit.train_pos).terms(channels)).mean(0)
    trained = correlations(trained_val, labels[fit.val_pos], metric.lower_better, fit.label_lower_better)
    write_score_rows(fit.terms.items, fit.val_pos, labels[fit.val_pos], table.layer[fit.val_pos].sum(1), trained_val,
                     run_dir / "val_scores.csv")
    test = {}
    for t in tests:
        t_labels, t_lower = t.labels()
        with torch.no_grad():
            z, s = t.table.layer.sum(1), fit.weights(t.table.terms(channels))
        test[t.data.name] = {
            "zero_shot": _test_stats(z, t_labels, t.items, metric.lower_better, t_lower),
            "trained": _test_stats(s, t_labels, t.items, metric.lower_better, t_lower),
            "in_domain": t.data.name == cfg.data.name and data_root(t.data) == data_root(cfg.data),
        }
        write_score_rows(t.items, torch.arange(len(t.items)), t_labels, z, s, run_dir / "test_scores" / f"{t.data.name}.csv")
    weights = fit.weights.effective_layer_weights().tolist()
    summary = {
        "config": plain(cfg), "run_dir": str(run_dir), "trained_weights": str(fit.file), "best_epoch": fit.best_epoch,
        "zero_shot": fit.zero_shot, "trained": trained, "layer_weights": weights,
        "layer_share": (share / share.sum()).tolist(), "test": test,
        "n_train": len(fit.train_pos), "n_val": len(fit.val_pos),
    }
    atomic_write_text(run_dir / "test.md", cross_dataset_table(test))
    plot = weights_plot(weights, summary["layer_share"], f"{cfg.backbone.name} {metric.distance.name} on {cfg.data.name}",
                        run_dir / "layer_weights.png")
    if fit.logger is not None:
        log_training(fit.logger, summary, plot)
    _print_result(cfg, summary, fit.file)
    return summary


def _test_stats(pred: torch.Tensor, labels: torch.Tensor, items: list[PairItem], lower_better: bool,
                label_lower_better: bool) -> dict:
    """Correlations on a test dataset with their reference-clustered intervals (``<key>_ci``; None with ``ci_error``
    where they cannot be computed) and the same per distortion type (``by_type``)."""
    ref_ids, types = [it.ref_id for it in items], [it.dist_type for it in items]
    out = correlations(pred, labels, lower_better, label_lower_better)
    try:
        out |= correlation_intervals(pred, labels, ref_ids, lower_better, label_lower_better)
    except ValueError as e:  # one reference: nothing to resample
        out |= {f"{k}_ci": None for k in ("srcc", "krcc", "plcc", "plcc_fit")} | {"ci_error": str(e)}
    return out | {"by_type": type_correlations(pred, labels, ref_ids, types, lower_better, label_lower_better)}


def _print_result(cfg: TrainConfig, summary: dict, file: Path) -> None:
    z, t = summary["zero_shot"], summary["trained"]
    print(f"best epoch {summary['best_epoch']}: val SRCC {t['srcc']:.4f} (zero-shot {z['srcc']:.4f}), "
          f"PLCC {t['plcc']:.4f} (zero-shot {z['plcc']:.4f})")
    print("layer weights: " + " ".join(f"{w:.3g}" for w in summary["layer_weights"]))
    if summary["test"]:
        print(cross_dataset_table(summary["test"]), end="")
    print(f"trained weights -> {file}\n  python evaluate.py backbone.name={cfg.backbone.name} distance=[{cfg.distance}] "
          f"preset={cfg.preset} trained={file}")
