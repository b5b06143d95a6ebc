"""FRMetric: backbone taps over sliding windows + a distance head -> one score per image pair.

``zsiqa.factory.create_metric`` builds one from names; presets live in ``zsiqa.presets``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone
from .distances import DistanceHead
from .errors import ConfigError, InputError
from .io import ImageLike, resolve_exif, to_batch
from .presets import PRESETS
from .windows import crop_windows

OFFICIAL_STRIDE = 200
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def align_pair(ref: torch.Tensor, dis: torch.Tensor, policy: str, what: str) -> torch.Tensor:
    """``dis`` ready to compare with ``ref`` window by window: unchanged when the sizes match; else resized to the
    reference (``policy="resize"``, bilinear with antialiasing) or a clear error (``policy="error"``)."""
    if ref.shape[-2:] == dis.shape[-2:]:
        return dis
    if policy != "resize":
        raise InputError(
            f"reference {tuple(ref.shape[-2:])} and distorted {tuple(dis.shape[-2:])} images differ in size and {what} "
            "compares the same windows of both; resize the distorted image to the reference (align='resize' in "
            "create_metric, --align resize in zsiqa score, align=resize in evaluate.py / train.py) or use a size-free "
            "head such as 'deepssim'"
        )
    return F.interpolate(dis, size=ref.shape[-2:], mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


@dataclass
class Features:
    """Taps of all windows of ``num_images`` images: each tensor has leading axis ``num_images * num_windows``."""

    taps: list[torch.Tensor]
    num_images: int
    num_windows: int
    size: tuple[int, int]

    def images(self, start: int, stop: int) -> "Features":
        """Images ``start:stop`` (a single image stays as it is: it is broadcast against the other side)."""
        if self.num_images == 1:
            return self
        k = self.num_windows
        taps = [t[start * k : stop * k] for t in self.taps]
        return Features(taps, min(stop, self.num_images) - start, k, self.size)

    def repeat_to(self, n: int) -> "Features":
        """Broadcast a single image's features to ``n`` images (one reference against many distorted images)."""
        if self.num_images == n:
            return self
        if self.num_images != 1:
            raise ValueError(f"cannot broadcast features of {self.num_images} images to {n}")
        taps = [t.unsqueeze(0).expand(n, *t.shape).reshape(n * t.shape[0], *t.shape[1:]) for t in self.taps]
        return Features(taps, n, self.num_windows, self.size)


class FRMetric(nn.Module):
    """A zero-shot full-reference metric: ``metric(ref, dis) -> [N]`` scores.

    ``lower_better`` says the direction (True for distances, False for similarities such as DeepSSIM).
    Windows: the backbone's own window (224 for the paper's models) with ``stride`` (default 200, the official value,
    capped at the window); images smaller than the
    window are zero-padded (``zsiqa.windows.pad_to_window``). ``max_windows_per_batch`` bounds memory on huge images.
    """

    def __init__(
        self,
        backbone: Backbone,
        distance: DistanceHead,
        preset: str = "paper",
        normalize: bool | None = None,
        precision: str | None = None,
        stride: int | None = None,
        max_windows_per_batch: int = 64,
        align: str = "error",
        exif: str = "auto",
    ) -> None:
        super().__init__()
        cfg = PRESETS.get(preset)
        if align not in ("error", "resize"):
            raise ConfigError(f"align must be 'error' or 'resize', got {align!r}")
        if precision is not None and precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {sorted(PRECISIONS)} or None, got {precision!r}")
        if max_windows_per_batch < 1:
            raise ConfigError(f"max_windows_per_batch must be >= 1, got {max_windows_per_batch}")
        if stride is None:  # the official 200 px, or the window if smaller (a stride above the window leaves gaps)
            stride = min(OFFICIAL_STRIDE, backbone.window or OFFICIAL_STRIDE)
        if backbone.window is not None and not 0 < stride <= backbone.window:
            raise ConfigError(f"stride must be in 1..{backbone.window} (the window), got {stride}: a larger one leaves pixels unscored")
        self.backbone = backbone
        self.distance = distance
        self.preset = preset
        # DeepSSIM's VGG16 is defined on ImageNet-normalised input, so it is normalised under every preset.
        default = cfg["normalize"] or backbone.requires_normalization
        self.normalize = default if normalize is None else normalize
        self.precision = precision
        self.stride = stride
        self.max_windows_per_batch = max_windows_per_batch
        self.align = align
        self.exif = resolve_exif(exif, preset)  # image files given by path: EXIF orientation applied or ignored
        self.fp32_distances = cfg["fp32_distances"]
        self.use_paper_dtype = cfg["paper_dtype"]
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1), persistent=False)

    @property
    def lower_better(self) -> bool:
        return self.distance.lower_better

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def model_dtype(self) -> torch.dtype:
        """fp32 unless asked otherwise; the paper preset runs OpenAI CLIP in fp16 on CUDA, as clip.load did."""
        if self.precision is not None:
            return PRECISIONS[self.precision]
        if self.use_paper_dtype and self.device.type == "cuda":
            return self.backbone.paper_dtype
        return torch.float32

    def config(self) -> dict:
        """Everything that determines the scores, for run configs and caches."""
        return {
            "backbone": self.backbone.name,
            "distance": self.distance.name,
            "preset": self.preset,
            "normalize": self.normalize,
            "precision": str(self.model_dtype()).replace("torch.", ""),
            "window": self.backbone.window,
            "stride": self.stride if self.backbone.window else None,
            "align": self.align,
        }

    @torch.no_grad()
    def features(self, img: ImageLike | list[ImageLike]) -> Features:
        """Backbone taps (or the embedding, for embedding heads) of every window of every image."""
        x = to_batch(img, exif=self.exif).to(self.device)
        n, size = x.shape[0], tuple(x.shape[-2:])
        if self.normalize:
            x = (x - self.mean) / self.std
        window = self.backbone.window
        if window is None:
            crops, k = x, 1
        else:
            crops, k = crop_windows(x, window, self.stride)
        dtype = self.model_dtype()
        self.backbone.cast(dtype)
        run = self.backbone.embed if self.distance.kind == "embed" else self.backbone.taps
        chunks = [run(c.to(dtype)) for c in crops.split(self.max_windows_per_batch)]
        if self.distance.kind == "embed":
            chunks = [[c] for c in chunks]
        taps = [torch.cat([c[i] for c in chunks]) for i in range(len(chunks[0]))]
        if self.fp32_distances or dtype == torch.bfloat16:
            taps = [t.float() for t in taps]
        return Features(taps, n, k, size)

    def _chunks(self, ref: Features, dis: Features) -> Iterator[tuple[Features, Features]]:
        """Matched (ref, dis) pairs of at most ``max_windows_per_batch`` windows each, in image order: one reference
        broadcast to many distorted images is materialised chunk by chunk, so memory stays bounded."""
        n = max(ref.num_images, dis.num_images)
        if ref.num_images not in (1, n) or dis.num_images not in (1, n):
            raise ValueError(f"cannot pair features of {ref.num_images} and {dis.num_images} images")
        if self.distance.kind != "image" and ref.num_windows != dis.num_windows:
            raise InputError(
                f"reference ({ref.size[0]}x{ref.size[1]}) and distorted ({dis.size[0]}x{dis.size[1]}) images give "
                f"different windows; distance {self.distance.name!r} compares the same windows of both. Resize the "
                "distorted image to the reference (align='resize' in create_metric, --align resize in zsiqa score), "
                "or use a size-free head such as 'deepssim'."
            )
        per = max(1, self.max_windows_per_batch // max(ref.num_windows, dis.num_windows))
        for start in range(0, n, per):
            r, d = ref.images(start, start + per), dis.images(start, start + per)
            m = max(r.num_images, d.num_images)
            yield r.repeat_to(m), d.repeat_to(m)

    @torch.no_grad()
    def score_features(self, ref: Features, dis: Features) -> torch.Tensor:
        """Scores ``[N]`` from precomputed features (reuse one reference's features for many distorted images)."""
        out = []
        for r, d in self._chunks(ref, dis):
            if self.distance.kind == "image":
                out.append(self.distance.fn(r.taps, d.taps, r.num_windows, d.num_windows).float())
            else:
                out.append(self.distance.fn(r.taps, d.taps).float().view(r.num_images, r.num_windows).mean(1))
        return torch.cat(out)

    @torch.no_grad()
    def layer_terms(self, ref: Features, dis: Features) -> torch.Tensor:
        """Window-averaged per-layer terms ``[N, L]``; their sum over L is the score (l2, cos, cos_channel)."""
        if self.distance.layer_terms is None:
            raise ValueError(f"distance {self.distance.name!r} has no per-layer terms; use l2, cos or cos_channel")
        return torch.cat([
            self.distance.layer_terms(r.taps, d.taps).float().view(r.num_images, r.num_windows, -1).mean(1)
            for r, d in self._chunks(ref, dis)
        ])

    @torch.no_grad()
    def channel_terms(self, ref: Features, dis: Features) -> list[torch.Tensor]:
        """Window-averaged per-channel terms, one ``[N, C_l]`` per layer; summing channels gives ``layer_terms``."""
        if self.distance.channel_terms is None:
            raise ValueError(f"distance {self.distance.name!r} has no per-channel terms")
        chunks = [
            [t.float().view(r.num_images, r.num_windows, -1).mean(1) for t in self.distance.channel_terms(r.taps, d.taps)]
            for r, d in self._chunks(ref, dis)
        ]
        return [torch.cat(layer) for layer in zip(*chunks)]

    def forward(self, ref: ImageLike | list[ImageLike], dis: ImageLike | list[ImageLike]) -> torch.Tensor:
        """Score pairs: ``ref`` and ``dis`` are ``[N,3,H,W]`` tensors in [0,1], paths or PIL images (``ref`` may be one image)."""
        r, d = to_batch(ref, "ref", self.exif), to_batch(dis, "dis", self.exif)
        if self.distance.kind != "image":
            d = align_pair(r, d, self.align, f"distance {self.distance.name!r}")
        if r.shape[0] not in (1, d.shape[0]):
            raise InputError(f"got {r.shape[0]} references for {d.shape[0]} distorted images; give 1 or the same number")
        return self.score_features(self.features(r), self.features(d))
