"""The method as one LightningModule: a frozen backbone, zero-shot distance heads (the baseline) and, optionally,
learned non-negative weights on their per-layer / per-channel terms.

``Trainer.predict`` runs the backbone: each batch (grouped by reference, ``zsiqa.data.datamodule.collate_pairs``)
becomes the scores of every pair (``output="scores"``: every distance head, learned head and full-image baseline) or
their window-averaged terms (``output="terms"``: what a learned head weighs). Each reference's features are computed
once and reused for all its distorted images; all windows of a group of distorted images go through the backbone
together; the batch's results cross to the host in one copy. Prediction writers (``zsiqa.engine.writers``) store them.

``Trainer.fit`` learns the weights on cached terms (``zsiqa.engine.term_data.TermDataModule``): the backbone is frozen,
so the terms never change and a module built for fitting holds the weights only (its checkpoints are kilobytes).
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import dataclass

import lightning as L
import torch

from ..backbones import Backbone
from ..baselines import Baseline
from ..data.datamodule import failed_groups
from ..errors import InputError
from ..io import to_float
from ..learned_weights import CHECKPOINT_KEY, Terms, TermWeights, head_record
from ..metric import Features, FRMetric, align_pair, score_pairs
from ..stats import IndexedScores, correlations
from .mos_objectives import get_loss

OUTPUTS = ("scores", "terms")


def compile_backbone(backbone: Backbone) -> Backbone:
    """``run.compile=true``: the backbone's ``taps`` and ``embed`` through ``torch.compile`` (same weights, same
    fingerprint; scores equal eager ones up to floating-point reordering)."""
    backbone.taps = torch.compile(backbone.taps)
    backbone.embed = torch.compile(backbone.embed)
    return backbone


@dataclass
class HeadFit:
    """What fitting the weights needs: the MOS loss, Adam's settings, score and label directions (both turned into
    "higher = better" before the loss), the zero-shot validation correlations (logged beside the trained ones) and
    the head's config (stored in every checkpoint as a head record, so any checkpoint can be evaluated)."""

    loss: str
    lr: float
    weight_decay: float
    score_lower_better: bool
    label_lower_better: bool
    zero_shot: dict
    head_config: dict


class IQAModule(L.LightningModule):
    """Zero-shot scoring and terms (predict) and learned weights on cached terms (fit); see the module docstring.

    metrics: distance heads sharing one backbone (features are computed once per group of compatible heads).
    baselines: full-image classics scored on the same batches. output: ``"scores"`` or ``"terms"`` (exactly one
    metric, with per-layer terms; ``channels`` adds per-channel ones). head + fit: the weights to learn and how.
    ref_cache: reference images whose features are kept. align: ``"error"`` or ``"resize"`` (``align_pair``).
    on_bad_image: ``"error"`` (an unreadable or incomparable pair stops the run, file named) or ``"skip"`` (scores
    only: the pair is returned as failed with its reason).
    """

    def __init__(
        self,
        metrics: dict[str, FRMetric] | None = None,
        baselines: list[Baseline] = (),
        output: str = "scores",
        channels: bool = False,
        ref_cache: int = 4,
        align: str = "error",
        head: TermWeights | None = None,
        fit: HeadFit | None = None,
        on_bad_image: str = "error",
    ) -> None:
        super().__init__()
        metrics = metrics or {}
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if head is None and not metrics and not baselines:
            raise ValueError("nothing to evaluate: give at least one distance or baseline")
        if output == "terms" and (len(metrics) != 1 or baselines):
            raise ValueError("terms are computed for exactly one metric and no baselines")
        self.metrics = torch.nn.ModuleDict(metrics)
        self.baselines = list(baselines)
        self.output, self.channels = output, channels
        self.ref_cache_size = ref_cache
        self.align = align
        self.on_bad_image = on_bad_image
        self._cache: OrderedDict = OrderedDict()
        self.ref_feature_computations = 0
        self.feature_groups: dict[tuple, list[str]] = {}
        # With N processes a small (or nearly finished) run can leave a process without batches: that is fine here.
        self.allow_zero_length_dataloader_with_multiple_devices = True
        self.head = head
        self.fit_settings = fit
        if fit is not None:
            self.loss_fn = get_loss(fit.loss)
            self.val_metrics: dict = {}
            self.val_scores = IndexedScores(sync_on_compute=False)  # fit runs on one process (see engine.training)
            self._epoch_losses: list[torch.Tensor] = []
        dtypes: dict[int, set] = {}
        for m in metrics.values():
            dtypes.setdefault(id(m.backbone), set()).add(m.model_dtype())  # the backbone is cast in place
        if any(len(v) > 1 for v in dtypes.values()):
            raise ValueError(
                "metrics sharing one backbone ask for different precisions (e.g. a head trained with another "
                "run.precision or preset); set run.precision to the head's, or evaluate the head in its own run"
            )

    # ------------------------------------------------------------------------------------------------- predict

    @property
    def score_columns(self) -> list[str]:
        return list(self.metrics) + [b.name for b in self.baselines]

    def on_predict_start(self) -> None:
        self.feature_groups = self._feature_groups()  # on the final device: the precision depends on it

    def _feature_groups(self) -> dict[tuple, list[str]]:
        """Metrics that can share features: same feature kind (taps/embed), same size alignment, and the same
        feature settings (preprocessing, precision, windows; e.g. a head trained with another preset does not share)."""
        groups: dict[tuple, list[str]] = defaultdict(list)
        for name, m in self.metrics.items():
            kind = "embed" if m.distance.kind == "embed" else "taps"
            settings = tuple(sorted((k, str(v)) for k, v in m.config().items() if k not in ("distance", "head")))
            groups[(kind, m.distance.kind != "image", settings)].append(name)
        return groups

    def _ref_features(self, key: tuple, metric: FRMetric, ref: torch.Tensor) -> Features:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        feats = metric.features(ref)
        self.ref_feature_computations += 1
        self._cache[key] = feats
        if len(self._cache) > self.ref_cache_size:
            self._cache.popitem(last=False)
        return feats

    def score_group(self, ref_id: str, ref: torch.Tensor, dis: torch.Tensor) -> dict[str, torch.Tensor]:
        """All scores for distorted images ``dis`` [n,3,H,W] of one reference ``ref`` [1,3,H,W] (float in [0, 1] or
        uint8 as the loader gives them: window heads make the distorted images float32 chunk by chunk)."""
        scores: dict[str, torch.Tensor] = {}
        ref = to_float(ref)
        for group, names in self.feature_groups.items():
            first = self.metrics[names[0]]
            d = align_pair(ref, dis, self.align, f"distance {names[0]!r}") if group[1] else to_float(dis)
            f_ref = self._ref_features((group, ref_id, tuple(ref.shape)), first, ref)
            scores.update(score_pairs({name: self.metrics[name] for name in names}, f_ref, d))
        whole = to_float(dis) if self.baselines else dis  # made float32 once for every baseline
        for b in self.baselines:
            d = align_pair(ref, whole, self.align, f"baseline {b.name!r}")
            scores[b.name] = b.fn(ref.expand(len(d), -1, -1, -1), d).float()
        return scores

    def terms_group(self, ref_id: str, ref: torch.Tensor, dis: torch.Tensor) -> list[torch.Tensor]:
        """Window-averaged terms of ``dis`` [n,3,H,W] against ``ref`` [1,3,H,W]: ``[n, L]`` layer terms, then (with
        ``channels``) one ``[n, C_l]`` per layer."""
        ((group, (name,)),) = self.feature_groups.items()
        metric = self.metrics[name]
        ref = to_float(ref)
        d = align_pair(ref, dis, self.align, f"distance {name!r}")
        f_ref = self._ref_features((group, ref_id, tuple(ref.shape)), metric, ref)
        layer, channel = metric.terms(f_ref, d, channels=self.channels)  # streamed over d's windows
        return [layer, *channel] if self.channels else [layer]

    def predict_step(self, batch: list[dict], batch_idx: int) -> dict:
        """``{"index": [n ints], "scores": {column: [n floats]}, "failed": {index: reason}}`` or ``{"index", "terms":
        [CPU tensors [n, ...]]}``, in the batch's group order; one device-to-host copy per batch.

        A pair whose image could not be read, or whose distorted image the heads cannot compare with its reference,
        stops the run with the file named; with ``data.on_bad_image=skip`` (scores only) it is returned in ``failed``
        with the reason instead, and the writer records it."""
        skip = self.output == "scores" and self.on_bad_image == "skip"
        hint = " (data.on_bad_image=skip records such pairs as failed and goes on)" if self.output == "scores" else ""
        batch, unread = failed_groups(batch, "skip" if skip else "error", hint)
        failed = {i: g["error"] for g in unread for i in g["index"]}
        if self.output == "terms":
            parts = [self.terms_group(g["ref_id"], g["ref"], g["dis"]) for g in batch]
            tables = [torch.cat(t) for t in zip(*parts)]
            flat = torch.cat(tables, 1).cpu()
            index = [i for group in batch for i in group["index"]]
            return {"index": index, "terms": list(flat.split([t.shape[1] for t in tables], 1))}
        columns: dict[str, list[torch.Tensor]] = defaultdict(list)
        index: list[int] = []
        for g in batch:
            try:
                scores = self.score_group(g["ref_id"], g["ref"], g["dis"])
            except InputError as e:
                named = InputError(f"{self._distorted_files(g['index'])}: {e}")
                if not skip:
                    raise named from e
                failed.update({i: str(named) for i in g["index"]})
                continue
            index += g["index"]
            for name, v in scores.items():
                columns[name].append(v)
        names = self.score_columns
        # float32 -> float64 is exact, so the CSV holds the scores' own values
        values = torch.stack([torch.cat(columns[n]).double() for n in names]).cpu().tolist() if index else [[]] * len(names)
        return {"index": index, "scores": dict(zip(names, values)), "failed": failed}

    def _distorted_files(self, index: list[int]) -> str:
        """The distorted image files of pairs ``index`` (their indices when no data module is attached)."""
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if datamodule is None:
            return "pairs " + ", ".join(map(str, index))
        return ", ".join(str(datamodule.by_index[i].dis) for i in index)

    # ----------------------------------------------------------------------------------------------------- fit

    def _terms(self, batch: list[torch.Tensor]) -> Terms:
        return list(batch[2:]) if self.head.channels is not None else batch[2]

    def quality(self, scores: torch.Tensor) -> torch.Tensor:
        return -scores if self.fit_settings.score_lower_better else scores

    def target(self, labels: torch.Tensor) -> torch.Tensor:
        return -labels if self.fit_settings.label_lower_better else labels

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.head.parameters(), lr=self.fit_settings.lr, weight_decay=self.fit_settings.weight_decay)

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
        fit = self.fit_settings
        corr = correlations(rows["score"], rows["label"], fit.score_lower_better, fit.label_lower_better)
        self.val_metrics = {"srcc": corr["srcc"], "plcc": corr["plcc"]}
        self.log_dict({"val/srcc": corr["srcc"], "val/plcc": corr["plcc"], "val/srcc_zero_shot": fit.zero_shot["srcc"],
                       "val/plcc_zero_shot": fit.zero_shot["plcc"]})
        self.log_dict({f"weights/layer_{i}": w for i, w in enumerate(self.head.effective_layer_weights().tolist())})

    def on_train_epoch_end(self) -> None:
        loss = torch.stack(self._epoch_losses).mean().item() if self._epoch_losses else float("nan")
        self._epoch_losses = []
        v = self.val_metrics
        self.print(f"epoch {self.current_epoch:3d}  loss {loss:.4f}  val SRCC {v.get('srcc', float('nan')):.4f}  "
                   f"PLCC {v.get('plcc', float('nan')):.4f}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = head_record(self.fit_settings.head_config, self.head)
