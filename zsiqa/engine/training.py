"""Learning heads on frozen features: term cache, split by reference, the Lightning module, and training runs.

The backbone is frozen, so each pair's per-layer (and per-channel) distance terms never change. They are computed
once, each reference's features once, and cached to disk under a key of everything that determines them (backbone
weights, preset, windows, distance, dataset items, transform, and the source code that computes them); training then
runs on that small table, so epochs take milliseconds and never call the backbone. A head scores ``head(terms)``
(``zsiqa.heads``); at initialisation that is the zero-shot score.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import importlib
import inspect
import itertools
import json
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Sampler, TensorDataset
from tqdm.auto import tqdm

from .. import __version__
from ..backbones import Backbone, create_backbone
from ..config import CONFIG_DIR, resolve_group
from ..data import DATASETS, PairDataset, PairItem
from ..data.datamodule import FRDataModule, collate_pairs, reference_groups
from ..distances import DistanceHead, get_distance
from ..heads import CHECKPOINT_KEY, Terms, TermWeights, backbone_fingerprint, head_config, head_record, read_head, save_head
from ..metric import FRMetric, align_pair, resolve_distance
from ..stats import IndexedScores, correlations
from .losses_mos import get_loss
from .runner import align_policy, data_root, make_datamodule, transform_label

CACHE_FORMAT = 1
# Modules whose code computes the terms (besides the backbone's own module): a change to any of them changes the
# cache key, so no table computed by older code is read.
TERMS_CODE = ("zsiqa.windows", "zsiqa.metric", "zsiqa.io", "zsiqa.transforms", "zsiqa.distances.basic")
# Config keys that determine a training run: a run folder with checkpoints of other values cannot be resumed.
TRAIN_KEYS = ("backbone", "distance", "preset", "head", "loss", "data", "transform", "split", "optim")
SWEEP_KEYS = ("distance", "head", "loss")  # lists in these keys make a grid of runs, like the config groups
HEADS = ("layer", "channel")


# ----------------------------------------------------------------------------------------------------- term cache


@dataclass
class TermTable:
    """Distance terms of pairs; row i is pair ``index[i]``: ``layer`` ``[N, L]``, ``channel`` L x ``[N, C_l]`` or None."""

    index: torch.Tensor
    layer: torch.Tensor
    channel: list[torch.Tensor] | None = None

    def rows(self, positions: torch.Tensor) -> "TermTable":
        channel = None if self.channel is None else [c[positions] for c in self.channel]
        return TermTable(self.index[positions], self.layer[positions], channel)

    def terms(self, channels: bool) -> Terms:
        """What a head takes: channel terms for per-channel heads, layer terms otherwise."""
        if channels and self.channel is None:
            raise ValueError("this term table has no channel terms; compute it with channels=True")
        return self.channel if channels else self.layer


def items_digest(items: Sequence[PairItem]) -> str:
    """Hash of the pair list and of every image file's size and modification time: it changes when the data do."""
    digest = hashlib.sha256()
    stats: dict[Path, str] = {}
    for it in items:
        for path in (it.ref, it.dis):
            if path not in stats:
                st = os.stat(path)
                stats[path] = f"{st.st_size}:{st.st_mtime_ns}"
        digest.update(f"{it.index}\t{it.ref_id}\t{it.ref}\t{stats[it.ref]}\t{it.dis}\t{stats[it.dis]}\n".encode())
    return digest.hexdigest()


def terms_code_digest(backbone: Backbone) -> str:
    """Short hash of zsiqa's version and of the source of the modules that compute terms (``TERMS_CODE`` and the
    module that defines ``backbone``'s class): edited tap, window or distance code never reuses cached terms."""
    digest = hashlib.sha256(__version__.encode())
    cls = type(backbone)
    for module in [importlib.import_module(name) for name in TERMS_CODE] + [sys.modules[cls.__module__]]:
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError) as e:
            raise ValueError(f"cannot read the source of module {module.__name__!r}, which defines {cls.__name__} "
                             f"({e}); the term cache is keyed on it: define the backbone in a .py file") from e
        digest.update(f"{module.__name__}\n{source}\n".encode())
    return digest.hexdigest()[:16]


def term_cache_key(metric: FRMetric, fingerprint: str, channels: bool, data: FRDataModule, align: str) -> dict:
    """Everything that determines the terms: backbone weights, preset, normalisation, precision, windows, distance,
    the dataset's items and files, the pair transform, and the code that computes them (``terms_code_digest``)."""
    data.setup("fit")
    return {
        "format": CACHE_FORMAT, "code": terms_code_digest(metric.backbone), "metric": metric.config(),
        "fingerprint": fingerprint, "channels": channels,
        "data": {"name": data.name, "root": None if data.root is None else str(data.root),
                 "items": items_digest(data.items), "num_items": len(data.items)},
        "transform": repr(data.pair_transform), "align": align,  # a PairTransform's repr is its name, amount, preset
    }


@torch.no_grad()
def compute_terms(metric: FRMetric, data: FRDataModule, channels: bool = False, align: str = "error",
                  progress: bool = True) -> TermTable:
    """Window-averaged terms of every pair of ``data``, in item order. The data module orders the work by reference
    and cuts it into batches; each reference's features are computed once for all its distorted images.
    align: "error" or "resize" (a distorted image of another size is resized to its reference), as ``align_pair``."""
    data.setup("fit")
    items = data.items
    if not items:
        where = "" if data.root is None else f" at {data.root}"
        raise ValueError(f"{data.name}: no pairs to compute terms for: the dataset{where} lists none")
    position = {it.index: i for i, it in enumerate(items)}
    loader = DataLoader(PairDataset(items, pair_transform=data.pair_transform), batch_sampler=data.shard(0, 1),
                        num_workers=data.num_workers, collate_fn=collate_pairs)
    layer: list[torch.Tensor | None] = [None] * len(items)
    channel: list[list[torch.Tensor] | None] = [None] * len(items)
    ref_key, f_ref = None, None
    with tqdm(total=len(items), unit="pair", desc="terms", disable=not progress, dynamic_ncols=True) as bar:
        for batch in loader:
            for ref_id, ref, dis, samples in reference_groups(batch):
                if (ref_id, ref.shape) != ref_key:
                    ref_key, f_ref = (ref_id, ref.shape), metric.features(ref.to(metric.device))
                d = align_pair(ref, dis, align, "compute_terms").to(metric.device)
                layer_terms, channel_terms = metric.terms(f_ref, d, channels=channels)  # streamed over d's windows
                rows = [position[int(s["index"])] for s in samples]
                for row, t in zip(rows, layer_terms.cpu()):
                    layer[row] = t
                if channels:
                    per_layer = [t.cpu() for t in channel_terms]
                    for j, row in enumerate(rows):
                        channel[row] = [t[j] for t in per_layer]
            bar.update(len(batch))
    index = torch.tensor([it.index for it in items], dtype=torch.long)
    channel_table = [torch.stack([c[l] for c in channel]) for l in range(len(channel[0]))] if channels else None
    return TermTable(index, torch.stack(layer), channel_table)


def cached_terms(cache_dir: str | os.PathLike, key: dict, compute: Callable[[], TermTable]) -> tuple[TermTable, Path, bool]:
    """The table stored under ``key`` in ``cache_dir``, else ``compute()`` it and store it.

    Returns ``(table, file, computed)``. The file name holds a hash of the key and the file holds the key itself,
    so a changed backbone, preset, window, distance, dataset, transform or code never reads a stale table.
    """
    text = json.dumps(key, sort_keys=True, default=str)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{key['data']['name']}_{key['metric']['backbone']}_{key['metric']['distance']}")
    path = Path(cache_dir) / f"{name}_{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if json.dumps(stored["key"], sort_keys=True, default=str) == text:
            return TermTable(stored["index"], stored["layer"], stored["channel"]), path, False
    table = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"key": key, "index": table.index, "layer": table.layer, "channel": table.channel}, tmp)
    os.replace(tmp, path)
    return table, path, True


# ------------------------------------------------------------------------------------------------ split and data


def split_by_reference(items: Sequence[PairItem], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Reference ids for training and validation: no reference (so no content) is in both. Seeded."""
    refs = sorted({it.ref_id for it in items})
    if not 0 < val_fraction < 1:
        raise ValueError(f"split.val_fraction must be in (0, 1), got {val_fraction}")
    if len(refs) < 2:
        raise ValueError(f"a split by reference needs at least 2 reference images, the data have {len(refs)}")
    n_val = min(len(refs) - 1, max(1, round(val_fraction * len(refs))))
    order = torch.randperm(len(refs), generator=torch.Generator().manual_seed(seed)).tolist()
    val = sorted(refs[i] for i in order[:n_val])
    return {"train": [r for r in refs if r not in set(val)], "val": val}


def positions_of(items: Sequence[PairItem], refs: Sequence[str]) -> torch.Tensor:
    """Positions of the items whose reference is in ``refs``."""
    wanted = set(refs)
    return torch.tensor([i for i, it in enumerate(items) if it.ref_id in wanted], dtype=torch.long)


class EpochShuffle(Sampler[int]):
    """A permutation drawn from ``seed + epoch``: reproducible, and a resumed run sees the same order
    (Lightning calls ``set_epoch`` at the start of every epoch)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist())

    def __len__(self) -> int:
        return self.n


# ----------------------------------------------------------------------------------------------- Lightning module


class HeadTrainingModule(L.LightningModule):
    """Learns a ``TermWeights`` head on cached terms with a MOS loss; validation SRCC / PLCC every epoch.

    Scores are turned into "higher = better" by the metric's direction and labels by the dataset's, so every loss
    sees the same convention. The module holds only the head: its checkpoints are kilobytes, and each also holds
    the head record (``zsiqa.heads``) so that any checkpoint can be evaluated.
    """

    def __init__(self, head: TermWeights, config: dict, train: tuple[TermTable, torch.Tensor],
                 val: tuple[TermTable, torch.Tensor], loss: str, lr: float, weight_decay: float, batch_size: int,
                 seed: int, score_lower_better: bool, label_lower_better: bool, zero_shot: dict) -> None:
        super().__init__()
        self.head = head
        self.head_cfg = config
        self.channels = head.channels is not None
        self.train_table, self.train_labels = train
        self.val_table, self.val_labels = val
        self.loss_fn = get_loss(loss)
        self.lr, self.weight_decay, self.batch_size, self.seed = lr, weight_decay, batch_size, seed
        self.score_lower_better, self.label_lower_better = score_lower_better, label_lower_better
        self.zero_shot = zero_shot
        self.val_metrics: dict = {}
        self.val_scores = IndexedScores()
        self._epoch_losses: list[torch.Tensor] = []

    def _tensors(self, table: TermTable, labels: torch.Tensor) -> TensorDataset:
        """Rows of (position, label, terms...): the position identifies each pair for the exact validation gather."""
        positions = torch.arange(len(labels))
        return TensorDataset(positions, labels, *(table.channel if self.channels else [table.layer]))

    def _terms(self, batch: Sequence[torch.Tensor]) -> Terms:
        return list(batch[2:]) if self.channels else batch[2]

    def quality(self, scores: torch.Tensor) -> torch.Tensor:
        return -scores if self.score_lower_better else scores

    def target(self, labels: torch.Tensor) -> torch.Tensor:
        return -labels if self.label_lower_better else labels

    def train_dataloader(self) -> DataLoader:
        data = self._tensors(self.train_table, self.train_labels)
        return DataLoader(data, batch_size=self.batch_size, sampler=EpochShuffle(len(data), self.seed))

    def val_dataloader(self) -> DataLoader:
        data = self._tensors(self.val_table, self.val_labels)
        return DataLoader(data, batch_size=len(data))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.head.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        labels = batch[1]
        loss = self.loss_fn(self.quality(self.head(self._terms(batch))), self.target(labels))
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        self._epoch_losses.append(loss.detach())
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.val_scores.update(batch[0], self.head(self._terms(batch)), batch[1])

    def on_validation_epoch_end(self) -> None:
        rows = self.val_scores.compute()  # gathered across processes, each pair exactly once
        self.val_scores.reset()
        corr = correlations(rows["score"], rows["label"], self.score_lower_better, self.label_lower_better)
        self.val_metrics = {"srcc": corr["srcc"], "plcc": corr["plcc"]}
        self.log_dict({"val/srcc": corr["srcc"], "val/plcc": corr["plcc"], "val/srcc_zero_shot": self.zero_shot["srcc"],
                       "val/plcc_zero_shot": self.zero_shot["plcc"]})
        self.log_dict({f"weights/layer_{i}": w for i, w in enumerate(self.head.effective_layer_weights().tolist())})

    def on_train_epoch_end(self) -> None:
        loss = torch.stack(self._epoch_losses).mean().item() if self._epoch_losses else float("nan")
        self._epoch_losses = []
        v = self.val_metrics
        self.print(f"epoch {self.current_epoch:3d}  loss {loss:.4f}  val SRCC {v.get('srcc', float('nan')):.4f}  "
                   f"PLCC {v.get('plcc', float('nan')):.4f}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = head_record(self.head_cfg, self.head)


# --------------------------------------------------------------------------------------------------------- runs


def expand_sweep(cells: list[dict]) -> list[dict]:
    """One config per combination of the list-valued ``SWEEP_KEYS`` (e.g. ``loss=fidelity,plcc`` -> two runs)."""
    out = []
    for cfg in cells:
        axes = [cfg[k] if isinstance(cfg[k], list) else [cfg[k]] for k in SWEEP_KEYS]
        for combo in itertools.product(*axes):
            cell = copy.deepcopy(cfg)
            cell.update(zip(SWEEP_KEYS, combo))
            out.append(cell)
    return out


def train_dir_for(cfg: dict) -> Path:
    """``<out>/<data>/<backbone>_<distance>_<preset>_<head>_<loss>[_<transform>]_<hash of split + optim>``."""
    run = cfg["run"]
    if run.get("name"):
        return Path(run["out"]) / run["name"]
    tlabel = transform_label(cfg["transform"])
    settings = hashlib.sha256(json.dumps([cfg["split"], cfg["optim"]], sort_keys=True).encode()).hexdigest()[:6]
    name = "_".join([cfg["backbone"]["name"], cfg["distance"], cfg["preset"], cfg["head"], cfg["loss"]]
                    + ([tlabel] if tlabel != "none" else []) + [settings])
    return Path(run["out"]) / cfg["data"]["name"] / re.sub(r"[^A-Za-z0-9_.@-]+", "-", name)


def _distance(name: str, preset: str, channels: bool) -> DistanceHead:
    name = resolve_distance(name, preset)
    head = get_distance(name)
    if head.layer_terms is None or (channels and head.channel_terms is None):
        raise ValueError(f"distance={name}: train.py learns weights on per-layer terms, which only l2, cos and "
                         "cos_channel have")
    return head


def _device(accelerator: str) -> torch.device:
    if accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if accelerator in ("gpu", "cuda", "auto"):
        if not torch.cuda.is_available():
            raise ValueError(f"run.accelerator={accelerator}: no CUDA device here; use run.accelerator=cpu")
        return torch.device("cuda")
    raise ValueError(f"run.accelerator must be cpu, gpu or auto, got {accelerator!r}")


def _prepare_run_dir(run_dir: Path, cfg: dict) -> None:
    """Fresh start (run.resume=false) or a check that the folder's checkpoints belong to this configuration
    (``_save_run_settings`` checks the terms' source and writes both once the backbone is built)."""
    ckpt_dir = run_dir / "checkpoints"
    if not cfg["run"].get("resume", True) and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    saved = run_dir / "config.yaml"
    if ckpt_dir.exists() and saved.exists():
        old = yaml.safe_load(saved.read_text())
        diff = [k for k in TRAIN_KEYS if old.get(k) != cfg.get(k)]
        if diff:
            raise ValueError(f"{run_dir} holds checkpoints of a different configuration ({', '.join(diff)} differ); "
                             "set run.name=<new folder> or run.resume=false, or delete the folder")


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
        if diff:
            raise ValueError(f"{run_dir} holds checkpoints trained on other terms: {'; '.join(diff)} differ ({path}); "
                             "set run.name=<new folder> or run.resume=false, or delete the folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.write_text(json.dumps(record, indent=1))


def _save_split(run_dir: Path, split: dict, seed: int, val_fraction: float) -> None:
    path = run_dir / "split.json"
    record = {"seed": seed, "val_fraction": val_fraction, **split}
    if path.exists() and (run_dir / "checkpoints").exists() and json.loads(path.read_text()) != record:
        raise ValueError(f"{path}: the data now split differently from when this run was started (the reference "
                         "images changed); start a new run (run.name=... or run.resume=false)")
    path.write_text(json.dumps(record, indent=1))


def _logger(cfg: dict, run_dir: Path):
    if cfg["logger"]["name"] == "csv":
        return CSVLogger(save_dir=str(run_dir), name="logs")
    if cfg["logger"]["name"] != "wandb":
        raise ValueError(f"logger={cfg['logger']['name']}: choose csv or wandb")
    from ..reporting.wandb_log import make_logger

    tags = [cfg["backbone"]["name"], cfg["data"]["name"], cfg["preset"], cfg["distance"], f"head-{cfg['head']}",
            f"loss-{cfg['loss']}", "trained"]
    name = f"{cfg['backbone']['name']}/{cfg['data']['name']}/{cfg['distance']}-{cfg['head']}-{cfg['loss']}"
    return make_logger(cfg, run_dir, "train", name, tags)


class _TermSource:
    """Terms of any dataset config for one metric: a data module for the items, then the cached (or computed) terms."""

    def __init__(self, metric: FRMetric, fingerprint: str, channels: bool, cfg: dict) -> None:
        self.metric, self.fingerprint, self.channels, self.cfg = metric, fingerprint, channels, cfg
        self.align = align_policy(cfg)
        self.cache_dir = Path(cfg["run"].get("cache_dir") or Path(cfg["run"]["out"]) / "cache")
        self.log: list[dict] = []

    def __call__(self, data: dict) -> tuple[list[PairItem], TermTable]:
        module = make_datamodule(data, self.cfg)
        key = term_cache_key(self.metric, self.fingerprint, self.channels, module, self.align)
        start = time.perf_counter()
        table, path, computed = cached_terms(
            self.cache_dir, key, lambda: compute_terms(self.metric, module, self.channels, self.align))
        seconds = time.perf_counter() - start
        print(f"terms of {data['name']} ({len(module.items)} pairs): {'computed' if computed else 'loaded'} in "
              f"{seconds:.1f} s -> {path}")
        self.log.append({"data": data["name"], "file": str(path), "computed": computed, "seconds": round(seconds, 3)})
        return module.items, table


def _labels(items: Sequence[PairItem], data_name: str) -> tuple[torch.Tensor, bool]:
    lower = DATASETS[data_name].lower_better
    if any(it.label_lower_better != lower for it in items):
        raise ValueError(f"{data_name}: items disagree with the dataset's declared label direction")
    return torch.tensor([it.label for it in items], dtype=torch.float64), lower


def _score_rows(items: Sequence[PairItem], positions: torch.Tensor, labels: torch.Tensor, zero_shot: torch.Tensor,
                trained: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "ref_id", "dist_type", "label", "zero_shot", "trained"])
        for p, y, z, t in zip(positions.tolist(), labels.tolist(), zero_shot.tolist(), trained.tolist()):
            w.writerow([items[p].index, items[p].ref_id, items[p].dist_type, repr(y), repr(z), repr(t)])


def _weights_plot(weights: list[float], share: list[float], title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 0.5 * len(weights) + 4), 3.2))
    layers = list(range(len(weights)))
    axes[0].bar(layers, weights)
    axes[0].axhline(1.0, color="C3", lw=1, ls="--", label="zero-shot (1)")
    axes[0].set_title("learned layer weight", fontsize=9)
    axes[0].legend(fontsize=8)
    axes[1].bar(layers, share, color="C2")
    axes[1].set_title("share of the trained score (training pairs)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("layer")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _test_table(test: dict) -> str:
    lines = ["| dataset | n | zero-shot SRCC | zero-shot PLCC | trained SRCC | trained PLCC |", "|---|---|---|---|---|---|"]
    for name, r in test.items():
        note = " (in-domain: includes the training pairs)" if r["in_domain"] else ""
        z, t = r["zero_shot"], r["trained"]
        lines.append(f"| {name}{note} | {t['n']} | {z['srcc']:.4f} | {z['plcc']:.4f} | {t['srcc']:.4f} | {t['plcc']:.4f} |")
    return "\n".join(lines) + "\n"


def _log_wandb_final(logger, summary: dict, plot: Path) -> None:
    """Layer weights as a bar chart, the cross-dataset table and summary values, then close the W&B run."""
    import wandb

    weights = summary["layer_weights"]
    bars = wandb.Table(data=[[f"layer {i}", w] for i, w in enumerate(weights)], columns=["layer", "weight"])
    logger.experiment.log({"layer_weights": wandb.plot.bar(bars, "layer", "weight", title="learned layer weights"),
                           "layer_weights_plot": wandb.Image(str(plot))})
    columns = ["dataset", "n", "in_domain", "srcc_zero_shot", "plcc_zero_shot", "srcc", "plcc"]
    rows = [[name, r["trained"]["n"], r["in_domain"], r["zero_shot"]["srcc"], r["zero_shot"]["plcc"],
             r["trained"]["srcc"], r["trained"]["plcc"]] for name, r in summary["test"].items()]
    logger.log_table(key="cross_dataset", columns=columns, data=rows)
    values = {"best/epoch": summary["best_epoch"], "best/val_srcc": summary["trained"]["srcc"],
              "best/val_plcc": summary["trained"]["plcc"], "best/val_srcc_zero_shot": summary["zero_shot"]["srcc"]}
    for name, r in summary["test"].items():
        for k in ("srcc", "plcc"):
            values[f"test/{name}/{k}"] = r["trained"][k]
            values[f"test/{name}/{k}_zero_shot"] = r["zero_shot"][k]
    logger.experiment.summary.update(values)
    logger.experiment.finish()


def _test_data(entry: str | dict) -> dict:
    """A test dataset: a name from configs/data/ (root from $ZSIQA_DATA) or a mapping like the ``data`` group."""
    return resolve_group("data", entry, CONFIG_DIR)


def train_run(cfg: dict, callbacks: Sequence[L.Callback] = ()) -> dict:
    """One training run: terms (cached), split by reference, fit with early stopping (resuming from the last
    checkpoint), then export ``head.pt`` and evaluate zero-shot vs trained on validation and the test datasets."""
    run, optim = cfg["run"], cfg["optim"]
    if cfg["head"] not in HEADS:
        raise ValueError(f"head={cfg['head']!r}: choose layer (one weight per layer) or channel (also one per channel)")
    get_loss(cfg["loss"])
    if optim["max_epochs"] < 1:
        raise ValueError(f"optim.max_epochs must be >= 1, got {optim['max_epochs']}")
    start = time.perf_counter()
    tests = [_test_data(entry) for entry in cfg.get("test") or []]
    for data in tests:
        data_root(data)  # a test set without a root fails now, not after training
    run_dir = train_dir_for(cfg)
    _prepare_run_dir(run_dir, cfg)
    channels = cfg["head"] == "channel"

    bcfg = cfg["backbone"]
    backbone = create_backbone(bcfg["name"], pretrained=bcfg.get("pretrained", True), weights=bcfg.get("weights"))
    fingerprint = backbone_fingerprint(backbone)
    metric = FRMetric(backbone, _distance(cfg["distance"], cfg["preset"], channels), preset=cfg["preset"],
                      precision=run.get("precision"), max_windows_per_batch=run["max_windows_per_batch"])
    metric = metric.to(_device(run["accelerator"])).eval()
    _save_run_settings(run_dir, cfg, metric, fingerprint)
    source = _TermSource(metric, fingerprint, channels, cfg)
    items, table = source(cfg["data"])
    labels, label_lower_better = _labels(items, cfg["data"]["name"])

    split = split_by_reference(items, cfg["split"]["val_fraction"], cfg["split"]["seed"])
    _save_split(run_dir, split, cfg["split"]["seed"], cfg["split"]["val_fraction"])
    train_pos, val_pos = positions_of(items, split["train"]), positions_of(items, split["val"])
    train_set, val_set = (table.rows(train_pos), labels[train_pos]), (table.rows(val_pos), labels[val_pos])
    zero_val = val_set[0].layer.sum(1)
    zero_shot = correlations(zero_val, val_set[1], metric.lower_better, label_lower_better)
    print(f"{bcfg['name']} {metric.distance.name} ({cfg['preset']}, {cfg['head']} weights, {cfg['loss']} loss) on "
          f"{cfg['data']['name']}: {len(train_pos)} train / {len(val_pos)} val pairs ({len(split['train'])} / "
          f"{len(split['val'])} references); zero-shot val SRCC {zero_shot['srcc']:.4f}  PLCC {zero_shot['plcc']:.4f}")

    head = TermWeights(table.layer.shape[1], [c.shape[1] for c in table.channel] if channels else None)
    config = head_config(metric, head, bcfg.get("pretrained", True), bcfg.get("weights"), fingerprint,
                         trained_on=cfg["data"]["name"], loss=cfg["loss"])
    module = HeadTrainingModule(
        head, config, train_set, val_set, cfg["loss"], optim["lr"], optim["weight_decay"], optim["batch_size"],
        cfg["split"]["seed"], metric.lower_better, label_lower_better, zero_shot,
    )
    ckpt_dir = run_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/srcc", mode="max", save_top_k=1,
                                 save_last=True, enable_version_counter=False)
    early = EarlyStopping(monitor="val/srcc", mode="max", patience=optim["patience"])
    logger = _logger(cfg, run_dir)
    trainer = L.Trainer(
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
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            trainer.fit(module, ckpt_path=str(last) if last.exists() else None)
        done.write_text("fit finished\n")

    best_path = ckpt_dir / "best.ckpt"
    best, _ = read_head(best_path)
    head.load_state_dict(best.state_dict())
    head_file = save_head(run_dir / "head.pt", head_record(config, head))
    best_epoch = int(torch.load(best_path, map_location="cpu", weights_only=True)["epoch"])
    with torch.no_grad():
        trained_val = head(val_set[0].terms(channels))
        share = head.layer_scores(train_set[0].terms(channels)).mean(0)
    trained = correlations(trained_val, val_set[1], metric.lower_better, label_lower_better)
    _score_rows(items, val_pos, val_set[1], zero_val, trained_val, run_dir / "val_scores.csv")

    test = {}
    for data in tests:
        t_items, t_table = source(data)
        t_labels, t_lower = _labels(t_items, data["name"])
        with torch.no_grad():
            z, s = t_table.layer.sum(1), head(t_table.terms(channels))
        test[data["name"]] = {
            "zero_shot": correlations(z, t_labels, metric.lower_better, t_lower),
            "trained": correlations(s, t_labels, metric.lower_better, t_lower),
            "in_domain": data["name"] == cfg["data"]["name"] and data_root(data) == data_root(cfg["data"]),
        }
        _score_rows(t_items, torch.arange(len(t_items)), t_labels, z, s, run_dir / "test_scores" / f"{data['name']}.csv")

    weights = head.effective_layer_weights().tolist()
    summary = {
        "config": cfg, "run_dir": str(run_dir), "head": str(head_file), "best_epoch": best_epoch,
        "zero_shot": zero_shot, "trained": trained, "layer_weights": weights,
        "layer_share": (share / share.sum()).tolist(), "test": test, "terms": source.log,
        "n_train": len(train_pos), "n_val": len(val_pos), "seconds": round(time.perf_counter() - start, 3),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (run_dir / "test.md").write_text(_test_table(test))
    plot = _weights_plot(weights, summary["layer_share"], f"{bcfg['name']} {metric.distance.name} on {cfg['data']['name']}",
                         run_dir / "layer_weights.png")
    if cfg["logger"]["name"] == "wandb":
        _log_wandb_final(logger, summary, plot)
    print(f"best epoch {best_epoch}: val SRCC {trained['srcc']:.4f} (zero-shot {zero_shot['srcc']:.4f}), "
          f"PLCC {trained['plcc']:.4f} (zero-shot {zero_shot['plcc']:.4f})")
    print("layer weights: " + " ".join(f"{w:.3g}" for w in weights))
    if test:
        print(_test_table(test), end="")
    print(f"head -> {head_file}\n  python evaluate.py backbone={bcfg['name']} distance={cfg['distance']} "
          f"preset={cfg['preset']} head={head_file}")
    return summary


def train_grid(cells: list[dict]) -> list[dict]:
    """Every run of a grid (config groups x list-valued ``distance`` / ``head`` / ``loss``), one after another."""
    return [train_run(cfg) for cfg in expand_sweep(cells)]
