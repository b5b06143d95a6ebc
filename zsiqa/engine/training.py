"""Training runs: learned weights on the terms of a frozen backbone.

A run computes (or loads) the term tables of its training and test datasets with the evaluation engine
(``term_cache``: ``Trainer.predict``, sharded over ``run.devices`` processes), splits the training pairs by reference
(``split``), fits the weights with ``Trainer.fit`` on the cached terms on process 0 (``method.IQAModule``,
``term_data.TermDataModule``; epochs take milliseconds), exports ``head.pt`` and reports zero-shot vs trained
(``zsiqa.reporting.training_report``). A head scores ``head(terms)`` (``zsiqa.learned_weights``); at
initialisation that is the zero-shot score.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ..backbones import create_backbone
from ..config import dataset_config, to_container
from ..data import DATASETS, PairItem, data_root
from ..distances import DistanceHead, get_distance
from ..errors import ConfigError, writing
from ..files import atomic_write_text
from ..learned_weights import TermWeights, backbone_fingerprint, head_config, head_record, read_head, save_head
from ..metric import MAX_IMAGE_SIDE, FRMetric
from ..presets import resolve_distance
from ..reporting.training_report import cross_dataset_table, log_wandb_final, weights_plot, write_score_rows
from ..stats import correlations
from ..transforms import transform_label
from .method import HeadFit, IQAModule, compile_backbone
from .mos_objectives import get_loss
from .run_folder import changed_keys, refuse_to_resume
from .runner import align_policy, image_windows, make_datamodule
from .split import positions_of, split_by_reference
from .term_cache import TermTable, cache_file, cached_terms, compute_terms, term_cache_key
from .term_data import TermDataModule

# Config keys that determine a training run: a run folder with checkpoints of other values cannot be resumed.
TRAIN_KEYS = ("backbone", "distance", "preset", "head_type", "loss", "data", "transform", "split", "optim")
HEADS = ("layer", "channel")


def train_dir_for(cfg: dict) -> Path:
    """``<out>/<data>/<backbone>_<distance>_<preset>_<head_type>_<loss>[_<transform>]_<hash of split + optim>``."""
    cfg = to_container(cfg)
    run = cfg["run"]
    if run.get("name"):
        return Path(run["out"]) / run["name"]
    tlabel = transform_label(cfg["transform"])
    split_optim = [cfg["split"], cfg["optim"]]
    settings = hashlib.sha256(json.dumps(split_optim, sort_keys=True).encode()).hexdigest()[:6]
    name = "_".join([cfg["backbone"]["name"], cfg["distance"], cfg["preset"], cfg["head_type"], cfg["loss"]]
                    + ([tlabel] if tlabel != "none" else []) + [settings])
    return Path(run["out"]) / cfg["data"]["name"] / re.sub(r"[^A-Za-z0-9_.@-]+", "-", name)


def _distance(name: str, preset: str, channels: bool) -> DistanceHead:
    name = resolve_distance(name, preset)
    head = get_distance(name)
    if head.layer_terms is None or (channels and head.channel_terms is None):
        raise ValueError(f"distance={name}: train.py learns weights on per-layer terms, which only l2, cos and "
                         "cos_channel have")
    return head


def _prepare_run_dir(run_dir: Path, cfg: dict) -> None:
    """Fresh start (run.resume=false) or a check that the folder's checkpoints belong to this configuration
    (``_save_run_settings`` checks the terms' source and writes both once the backbone is built)."""
    ckpt_dir = run_dir / "checkpoints"
    if not cfg["run"].get("resume", True) and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    saved = run_dir / "config.yaml"
    if ckpt_dir.exists() and saved.exists():
        refuse_to_resume(run_dir, "checkpoints", changed_keys(yaml.safe_load(saved.read_text()), cfg, TRAIN_KEYS))


def _save_run_settings(run_dir: Path, cfg: dict, metric: FRMetric, fingerprint: str) -> None:
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
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    atomic_write_text(path, json.dumps(record, indent=1))


def _save_split(run_dir: Path, split: dict, seed: int, val_fraction: float) -> None:
    path = run_dir / "split.json"
    record = {"seed": seed, "val_fraction": val_fraction, **split}
    if path.exists() and (run_dir / "checkpoints").exists() and json.loads(path.read_text()) != record:
        refuse_to_resume(run_dir, "checkpoints", [f"the reference images of the split ({path}; the data changed)"])
    atomic_write_text(path, json.dumps(record, indent=1))


def _logger(cfg: dict, run_dir: Path):
    if cfg["logger"]["name"] == "csv":
        return CSVLogger(save_dir=str(run_dir), name="logs")
    if cfg["logger"]["name"] != "wandb":
        raise ValueError(f"logger={cfg['logger']['name']}: choose csv or wandb")
    from ..reporting.wandb_log import make_logger

    tags = [cfg["backbone"]["name"], cfg["data"]["name"], cfg["preset"], cfg["distance"], f"head-{cfg['head_type']}",
            f"loss-{cfg['loss']}", "trained"]
    name = f"{cfg['backbone']['name']}/{cfg['data']['name']}/{cfg['distance']}-{cfg['head_type']}-{cfg['loss']}"
    return make_logger(cfg, run_dir, "train", name, tags)


class _TermSource:
    """Terms of any dataset config for one metric: a data module for the items, then the cached (or computed) terms.
    Every process calls it in the same order; the table comes back on process 0 (None on the others)."""

    def __init__(self, metric: FRMetric, fingerprint: str, channels: bool, cfg: dict) -> None:
        self.metric, self.fingerprint, self.channels, self.cfg = metric, fingerprint, channels, cfg
        self.align = align_policy(cfg)
        self.cache_dir = Path(cfg["run"].get("cache_dir") or Path(cfg["run"]["out"]) / "cache")
        self.log: list[dict] = []

    def __call__(self, data: dict) -> tuple[list[PairItem], TermTable | None]:
        run = self.cfg["run"]
        module = make_datamodule(data, self.cfg, windows_of=image_windows(self.metric))
        key = term_cache_key(self.metric, self.fingerprint, self.channels, module, self.align)
        parts = cache_file(self.cache_dir, key).with_suffix(".parts")
        start = time.perf_counter()
        table, path, computed = cached_terms(self.cache_dir, key, lambda save: compute_terms(
            self.metric, module, self.channels, self.align, run["accelerator"], run.get("devices", 1), parts, save))
        seconds = time.perf_counter() - start
        if table is not None:
            print(f"terms of {data['name']} ({len(module.items)} pairs): {'computed' if computed else 'loaded'} in "
                  f"{seconds:.1f} s -> {path}")
        self.log.append({"data": data["name"], "file": str(path), "computed": computed, "seconds": round(seconds, 3)})
        return module.items, table


def _labels(items: Sequence[PairItem], data_name: str) -> tuple[torch.Tensor, bool]:
    lower = DATASETS[data_name].lower_better
    if any(it.label_lower_better != lower for it in items):
        raise ValueError(f"{data_name}: items disagree with the dataset's declared label direction")
    return torch.tensor([it.label for it in items], dtype=torch.float64), lower


def _check(cfg: dict) -> None:
    if cfg["head_type"] not in HEADS:
        raise ConfigError(f"head_type={cfg['head_type']!r}: choose layer (one weight per layer) or channel (also one "
                          "per channel)")
    get_loss(cfg["loss"])
    if cfg["optim"]["max_epochs"] < 1:
        raise ValueError(f"optim.max_epochs must be >= 1, got {cfg['optim']['max_epochs']}")


def train_run(cfg: Any, callbacks: Sequence[L.Callback] = ()) -> dict | None:
    """One training run: terms (cached; computed on ``run.devices`` processes), split by reference, fit with early
    stopping on process 0 (resuming from the last checkpoint), then ``head.pt`` and zero-shot vs trained on validation
    and the test datasets. Returns the summary on process 0, None on the others."""
    cfg = to_container(cfg)
    _check(cfg)
    run, bcfg = cfg["run"], cfg["backbone"]
    start = time.perf_counter()
    tests = [to_container(dataset_config(entry)) for entry in cfg.get("test") or []]
    for data in tests:
        data_root(data)  # a test set without a root fails now, not after training
    run_dir = train_dir_for(cfg)
    channels = cfg["head_type"] == "channel"
    rank0 = rank_zero_only.rank == 0  # from the launcher's environment: this process writes the run folder
    if rank0:
        _prepare_run_dir(run_dir, cfg)

    backbone = create_backbone(bcfg["name"], pretrained=bcfg.get("pretrained", True), weights=bcfg.get("weights"))
    fingerprint = backbone_fingerprint(backbone)
    metric = FRMetric(backbone, _distance(cfg["distance"], cfg["preset"], channels), preset=cfg["preset"],
                      precision=run.get("precision"), max_windows_per_batch=run["max_windows_per_batch"],
                      max_image_side=run.get("max_image_side", MAX_IMAGE_SIDE)).eval()
    if run.get("compile"):
        compile_backbone(backbone)
    if rank0:
        _save_run_settings(run_dir, cfg, metric, fingerprint)
    source = _TermSource(metric, fingerprint, channels, cfg)
    items, table = source(cfg["data"])
    test_terms = [source(data) for data in tests]  # all backbone work first, on every process
    if not rank0:
        return None
    return _fit_and_report(cfg, run_dir, metric, fingerprint, items, table, tests, test_terms, source.log, start,
                           callbacks)


def _fit_and_report(cfg: dict, run_dir: Path, metric: FRMetric, fingerprint: str, items: list[PairItem],
                    table: TermTable, tests: list[dict], test_terms: list[tuple[list[PairItem], TermTable]],
                    terms_log: list[dict], start: float, callbacks: Sequence[L.Callback]) -> dict:
    """Process 0: split, ``Trainer.fit`` of the weights on one CPU device, export and report."""
    bcfg, optim, channels = cfg["backbone"], cfg["optim"], cfg["head_type"] == "channel"
    labels, label_lower_better = _labels(items, cfg["data"]["name"])
    split = split_by_reference(items, cfg["split"]["val_fraction"], cfg["split"]["seed"])
    _save_split(run_dir, split, cfg["split"]["seed"], cfg["split"]["val_fraction"])
    train_pos, val_pos = positions_of(items, split["train"]), positions_of(items, split["val"])
    train_set, val_set = (table.rows(train_pos), labels[train_pos]), (table.rows(val_pos), labels[val_pos])
    zero_val = val_set[0].layer.sum(1)
    zero_shot = correlations(zero_val, val_set[1], metric.lower_better, label_lower_better)
    print(f"{bcfg['name']} {metric.distance.name} ({cfg['preset']}, {cfg['head_type']} weights, {cfg['loss']} loss) on "
          f"{cfg['data']['name']}: {len(train_pos)} train / {len(val_pos)} val pairs ({len(split['train'])} / "
          f"{len(split['val'])} references); zero-shot val SRCC {zero_shot['srcc']:.4f}  PLCC {zero_shot['plcc']:.4f}")

    head = TermWeights(table.layer.shape[1], [c.shape[1] for c in table.channel] if channels else None)
    config = head_config(metric, head, bcfg.get("pretrained", True), bcfg.get("weights"), fingerprint,
                         trained_on=cfg["data"]["name"], loss=cfg["loss"])
    fit = HeadFit(cfg["loss"], optim["lr"], optim["weight_decay"], metric.lower_better, label_lower_better, zero_shot,
                  config)
    module = IQAModule(head=head, fit=fit)
    data = TermDataModule(train_set, val_set, channels, optim["batch_size"], cfg["split"]["seed"])
    ckpt_dir = run_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/srcc", mode="max", save_top_k=1,
                                 save_last=True, enable_version_counter=False)
    early = EarlyStopping(monitor="val/srcc", mode="max", patience=optim["patience"])
    logger = _logger(cfg, run_dir)
    trainer = L.Trainer(  # the weights are a few numbers: one CPU process fits them in milliseconds per epoch
        accelerator="cpu", devices=1, max_epochs=optim["max_epochs"], logger=logger,
        callbacks=[checkpoint, early, *callbacks], enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=1, default_root_dir=str(run_dir),
    )
    done = ckpt_dir / "complete"
    if done.exists():
        print(f"training already complete in {run_dir}; re-evaluating its best checkpoint")
    else:
        last = ckpt_dir / "last.ckpt"
        if last.exists():
            print(f"resuming from {last}")
        with warnings.catch_warnings(), writing(run_dir):  # Lightning's checkpoint and log writes name no file
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.exists() else None)
        atomic_write_text(done, "fit finished\n")

    best_path = ckpt_dir / "best.ckpt"
    best, _ = read_head(best_path)
    head.load_state_dict(best.state_dict())
    head_file = save_head(run_dir / "head.pt", head_record(config, head))
    best_epoch = int(torch.load(best_path, map_location="cpu", weights_only=True)["epoch"])
    with torch.no_grad():
        trained_val = head(val_set[0].terms(channels))
        share = head.layer_scores(train_set[0].terms(channels)).mean(0)
    trained = correlations(trained_val, val_set[1], metric.lower_better, label_lower_better)
    write_score_rows(items, val_pos, val_set[1], zero_val, trained_val, run_dir / "val_scores.csv")

    test = {}
    for data_cfg, (t_items, t_table) in zip(tests, test_terms):
        t_labels, t_lower = _labels(t_items, data_cfg["name"])
        with torch.no_grad():
            z, s = t_table.layer.sum(1), head(t_table.terms(channels))
        test[data_cfg["name"]] = {
            "zero_shot": correlations(z, t_labels, metric.lower_better, t_lower),
            "trained": correlations(s, t_labels, metric.lower_better, t_lower),
            "in_domain": data_cfg["name"] == cfg["data"]["name"] and data_root(data_cfg) == data_root(cfg["data"]),
        }
        write_score_rows(t_items, torch.arange(len(t_items)), t_labels, z, s,
                         run_dir / "test_scores" / f"{data_cfg['name']}.csv")

    weights = head.effective_layer_weights().tolist()
    summary = {
        "config": cfg, "run_dir": str(run_dir), "head": str(head_file), "best_epoch": best_epoch,
        "zero_shot": zero_shot, "trained": trained, "layer_weights": weights,
        "layer_share": (share / share.sum()).tolist(), "test": test, "terms": terms_log,
        "n_train": len(train_pos), "n_val": len(val_pos), "seconds": round(time.perf_counter() - start, 3),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1, default=str))
    atomic_write_text(run_dir / "test.md", cross_dataset_table(test))
    plot = weights_plot(weights, summary["layer_share"], f"{bcfg['name']} {metric.distance.name} on {cfg['data']['name']}",
                        run_dir / "layer_weights.png")
    if cfg["logger"]["name"] == "wandb":
        log_wandb_final(logger, summary, plot)
    print(f"best epoch {best_epoch}: val SRCC {trained['srcc']:.4f} (zero-shot {zero_shot['srcc']:.4f}), "
          f"PLCC {trained['plcc']:.4f} (zero-shot {zero_shot['plcc']:.4f})")
    print("layer weights: " + " ".join(f"{w:.3g}" for w in weights))
    if test:
        print(cross_dataset_table(test), end="")
    print(f"head -> {head_file}\n  python evaluate.py backbone.name={bcfg['name']} distance=[{cfg['distance']}] "
          f"preset={cfg['preset']} head={head_file}")
    return summary
