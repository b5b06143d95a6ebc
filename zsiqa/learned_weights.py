"""Learned weights: non-negative weights on a metric's per-layer (and per-channel) distance terms.

The zero-shot l2 / cos score is the sum of its per-layer terms. Trained weights score ``sum_l w_l * t_l`` (per-layer) or
``sum_l w_l * sum_c v_lc * t_lc`` (per-channel, LPIPS-style non-negative 1x1 weights on the channel terms). Every
weight is ``exp(theta)`` with ``theta = 0`` at initialisation: weights stay positive, and untrained weights
reproduce the zero-shot score (the paper's plain sum over layers).

A trained record holds the weights and the config that rebuilds the metric (backbone name and weights
fingerprint, distance, preset, options): kilobytes, never the backbone. ``train.py`` writes it as ``trained.pt`` and
inside its Lightning checkpoints; ``create_metric(trained=PATH)`` and ``evaluate.py trained=PATH`` read either.
The parameter-free distance heads whose terms these weights re-weigh are in ``zsiqa.distances``.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .backbones import Backbone, create_backbone
from .distances import DistanceHead, get_distance
from .errors import ConfigError, InputError, MissingFileError
from .files import atomic_save, load_tensors
from .metric import FRMetric
from .presets import resolve_distance

TRAINED_FORMAT = 1
CHECKPOINT_KEY = "zsiqa_head"  # where train.py's Lightning checkpoints keep the trained record (a stored name)
Terms = torch.Tensor | list[torch.Tensor]


class TermWeights(nn.Module):
    """Positive weights on ``[N, L]`` layer terms, or on a list of ``[N, C_l]`` channel terms when ``channels`` is given."""

    def __init__(self, num_layers: int, channels: Sequence[int] | None = None) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if channels is not None and (len(channels) != num_layers or min(channels) < 1):
            raise ValueError(f"channels must give {num_layers} positive channel counts, got {list(channels)}")
        self.log_layer = nn.Parameter(torch.zeros(num_layers))
        self.log_channel = (
            nn.ParameterList(nn.Parameter(torch.zeros(int(c))) for c in channels) if channels is not None else None
        )

    @property
    def num_layers(self) -> int:
        return self.log_layer.numel()

    @property
    def channels(self) -> list[int] | None:
        return None if self.log_channel is None else [p.numel() for p in self.log_channel]

    def layer_weights(self) -> torch.Tensor:
        return self.log_layer.exp()

    def channel_weights(self) -> list[torch.Tensor]:
        if self.log_channel is None:
            raise ValueError("these weights are per-layer only")
        return [p.exp() for p in self.log_channel]

    def effective_layer_weights(self) -> torch.Tensor:
        """Per layer: ``w_l`` times the mean channel weight (per-channel weights), i.e. what one number per layer can say."""
        w = self.layer_weights()
        if self.log_channel is None:
            return w
        return w * torch.stack([v.mean() for v in self.channel_weights()])

    def forward(self, terms: Terms) -> torch.Tensor:
        """Weighted score ``[N]`` from ``[N, L]`` layer terms, or from L channel-term tensors ``[N, C_l]``."""
        return self.layer_scores(terms).sum(1)

    def layer_scores(self, terms: Terms) -> torch.Tensor:
        """Each layer's weighted contribution ``[N, L]`` to the score."""
        if self.log_channel is None:
            if not isinstance(terms, torch.Tensor) or terms.ndim != 2 or terms.shape[1] != self.num_layers:
                got = tuple(terms.shape) if isinstance(terms, torch.Tensor) else f"a list of {len(terms)} tensors"
                raise ValueError(f"per-layer weights take [N, {self.num_layers}] layer terms, got {got}")
            return terms * self.layer_weights()
        shapes = [tuple(t.shape[1:]) for t in terms] if isinstance(terms, (list, tuple)) else None
        if shapes != [(c,) for c in self.channels]:
            got = shapes if shapes is not None else tuple(terms.shape)
            raise ValueError(f"per-channel weights take channel terms [N, C_l] with C = {self.channels}, got {got}")
        per_layer = torch.stack([(t * v).sum(1) for t, v in zip(terms, self.channel_weights())], 1)
        return per_layer * self.layer_weights()


def backbone_fingerprint(backbone: nn.Module) -> str:
    """SHA-256 of every state tensor (names, dtypes, shapes, bytes): identifies the backbone's weights exactly."""
    digest = hashlib.sha256()
    for name, tensor in backbone.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class TrainedMetric(FRMetric):
    """An FRMetric whose layer (or channel) terms are re-weighted by learned weights; same features and direction."""

    def __init__(self, backbone: Backbone, distance: DistanceHead, weights: TermWeights, preset: str = "paper",
                 **options) -> None:
        super().__init__(backbone, distance, preset=preset, **options)
        if distance.layer_terms is None or (weights.channels is not None and distance.channel_terms is None):
            what = "per-channel" if weights.channels is not None else "per-layer"
            raise ValueError(f"distance {distance.name!r} has no {what} terms; learned weights need l2, cos or cos_channel")
        self.weights = weights.requires_grad_(False)
        self.window_output = "layer" if weights.channels is None else "channel"

    def config(self) -> dict:
        return {**super().config(), "weighting": self.window_output}

    def score_from(self, averaged: Terms) -> torch.Tensor:
        """The weighted sum of the window-averaged layer (or channel) terms."""
        return self.weights(averaged)


def trained_config(metric: FRMetric, weights: TermWeights, pretrained: bool, weights_file: str | None,
                fingerprint: str, **extra) -> dict:
    """Everything needed to rebuild the trained metric; ``extra`` (e.g. the training dataset) is kept for reference."""
    return {
        "backbone": metric.backbone.name, "pretrained": bool(pretrained or weights_file), "weights": weights_file,
        "fingerprint": fingerprint, "distance": metric.distance.name, "preset": metric.preset,
        "normalize": metric.normalize, "precision": metric.precision, "stride": metric.stride,
        "num_layers": weights.num_layers, "channels": weights.channels, **extra,
    }


def trained_record(config: dict, weights: TermWeights) -> dict:
    """What a trained file holds: the format, the config (``trained_config``) and the weights."""
    return {"format": TRAINED_FORMAT, "config": config, "state": {k: v.detach().cpu() for k, v in weights.state_dict().items()}}


def save_trained(path: str | os.PathLike, record: dict) -> Path:
    """Write a trained record (from ``trained_record``) to ``path`` atomically."""
    return atomic_save(path, record)


def read_trained(path: str | os.PathLike) -> tuple[TermWeights, dict]:
    """The weights and config of a trained file, or of any checkpoint of a train.py run."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"trained weights not found: {path} (train.py writes <run folder>/trained.pt)")
    obj = load_tensors(path, "trained-weights file")
    record = obj.get(CHECKPOINT_KEY, obj) if isinstance(obj, dict) else None
    if not isinstance(record, dict) or "config" not in record or "state" not in record:
        raise InputError(f"{path} is neither a trained-weights file from train.py (trained.pt) nor a checkpoint of a "
                         "train.py run")
    if record.get("format") != TRAINED_FORMAT:
        raise InputError(f"{path}: trained-weights format {record.get('format')!r}, this zsiqa reads format {TRAINED_FORMAT}")
    config = record["config"]
    weights = TermWeights(config["num_layers"], config["channels"])
    weights.load_state_dict(record["state"])
    return weights, config


def _check_backbone(path: Path, config: dict, backbone: Backbone) -> None:
    if backbone.name != config["backbone"]:
        raise ConfigError(f"{path} was trained on backbone {config['backbone']!r}, not {backbone.name!r}; "
                         f"use backbone={config['backbone']}")
    if backbone_fingerprint(backbone) != config["fingerprint"]:
        source = f"weights={config['weights']}" if config["weights"] else f"pretrained={config['pretrained']}"
        raise ConfigError(
            f"{path} was trained on {config['backbone']} with other weights ({source} at training time, "
            f"fingerprint {config['fingerprint'][:12]}); build the backbone with the same weights"
        )


def metric_from_trained(path: str | os.PathLike, backbone: Backbone, **options) -> TrainedMetric:
    """The trained metric of the file ``path`` on ``backbone`` (checked to be the one it was trained on).

    options: max_windows_per_batch, align, precision (they do not change what was learned).
    """
    weights, config = read_trained(path)
    _check_backbone(Path(path), config, backbone)
    options.setdefault("precision", config["precision"])
    return TrainedMetric(backbone, get_distance(config["distance"]), weights, preset=config["preset"],
                         normalize=config["normalize"], stride=config["stride"], **options)


def load_trained_metric(path: str | os.PathLike, backbone: Backbone) -> dict[str, TrainedMetric]:
    """For the evaluation engine: ``{"<distance>_trained": metric}`` sharing ``backbone`` with the zero-shot metrics."""
    metric = metric_from_trained(path, backbone)
    return {f"{metric.distance.name}_trained": metric}


def create_trained_metric(
    path: str | os.PathLike,
    backbone: str | None = None,
    distance: str | None = None,
    preset: str | None = None,
    pretrained: bool = True,
    weights: str | None = None,
    **options,
) -> TrainedMetric:
    """``create_metric(trained=PATH)``: the file's config decides backbone, distance, preset, normalize and stride;
    any of them given explicitly must agree with it (a clear error otherwise)."""
    _, config = read_trained(path)
    for key, value in (("backbone", backbone), ("preset", preset), ("normalize", options.get("normalize")),
                       ("stride", options.get("stride"))):
        if value is not None and value != config[key]:
            raise ConfigError(f"{key}={value!r} contradicts {path}, trained with {key}={config[key]!r}; "
                             f"leave {key} out (the file decides it) or use weights trained with {key}={value!r}")
    if distance is not None:
        distance = resolve_distance(distance, config["preset"])  # as create_metric maps it under the file's preset
    if distance is not None and distance != config["distance"]:
        raise ConfigError(f"distance={distance!r} contradicts {path}, trained with distance={config['distance']!r}; "
                         "leave distance out (the file decides it)")
    options = {k: v for k, v in options.items() if k not in ("normalize", "stride")}
    net = create_backbone(config["backbone"], pretrained=pretrained, weights=weights)
    return metric_from_trained(path, net, **options)
