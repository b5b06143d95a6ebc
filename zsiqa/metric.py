"""FRMetric: backbone taps over sliding windows + a distance head -> one score per image pair.

``zsiqa.factory.create_metric`` builds one from names; presets live in ``zsiqa.presets``."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone
from .choices import Align, Precision, Preset
from .distances import DistanceHead, Feats
from .distances.basic import COS_EPS
from .distances.fused import window_scores
from .errors import ConfigError, InputError
from .images import ImageLike, resolve_exif, to_batch, to_float
from .presets import preset_settings
from .windows import crop_windows, pad_to_window, spread_cells, window_grid

OFFICIAL_STRIDE = 200
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Whole-image backbones (efficientnet_lite0, vgg16, timm: CNNs) need memory in proportion to the image area: a
# 4096 x 3072 pair peaks at 5.5 GB with efficientnet_lite0 (measured, docs/benchmarks.md; vgg16 needs more). Larger
# images are refused, never silently resized or tiled (either would change the score); ``max_image_side`` raises or
# lifts the bound.
MAX_IMAGE_SIDE = 4096
# On the CPU a windowed backbone runs at most this many windows per call. glibc serves allocations above 32 MB with
# fresh pages from the kernel, each faulted in on first touch: dino_vitb16's MLP activations pass that at 14 windows,
# and 64-window calls ran at 229 ms per window against 195-210 in calls of 8 (docs/benchmarks.md). The chunk
# (``max_windows_per_batch``) is still scored as one: its taps are filled call by call.
CPU_CALL_WINDOWS = 8


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
    return F.interpolate(to_float(dis), size=ref.shape[-2:], mode="bilinear", align_corners=False,
                         antialias=True).clamp(0, 1)


@dataclass
class Features:
    """Taps of all windows of ``num_images`` images: each tensor has leading axis ``num_images * num_windows``."""

    taps: list[torch.Tensor]
    num_images: int
    num_windows: int
    size: tuple[int, int]

    def select(self, images: slice, windows: slice) -> list[torch.Tensor]:
        """Taps of windows ``windows`` of images ``images``, image-major (a single image serves every image slice:
        it is broadcast against the other side)."""
        if self.num_images == 1:
            images = slice(0, 1)
        k = self.num_windows
        return [t.view(self.num_images, k, *t.shape[1:])[images, windows].flatten(0, 1) for t in self.taps]


@dataclass
class QualityMap:
    """Where two images differ for a metric (``FRMetric.map``): ``layers[l]`` the share of the score that layer ``l``
    of each pixel's token or feature-map cell carries, ``combined`` their sum; ``combined.sum()`` is the score. Images
    smaller than the window are mapped with their zero padding (bottom / right), which the windows see."""

    layers: torch.Tensor  # [L, H, W]
    combined: torch.Tensor  # [H, W]
    score: float


MAP_DISTANCES = ("l2", "cos", "cos_channel")  # scores that are a sum of per-token (per-cell) terms


Source = Features | torch.Tensor  # precomputed features, or images [N, 3, H, W] (float in [0, 1] or uint8) that stream


class FRMetric(nn.Module):
    """A zero-shot full-reference metric: ``metric(ref, dis) -> [N]`` scores.

    ``lower_better`` says the direction (True for distances, False for similarities such as DeepSSIM).
    Windows: the backbone's own window (224 for the paper's models) with ``stride`` (default 200, the official value,
    capped at the window); images smaller than the
    window are zero-padded (``zsiqa.windows.pad_to_window``). Scoring streams chunks of at most
    ``max_windows_per_batch`` windows (one backbone call each, scored at once), so memory does not grow with the
    image or the batch. Whole-image backbones (``window=None``) refuse images with a side above ``max_image_side``.
    ``window_output`` names what scoring needs per window: the "score" here ("layer" / "channel" terms for heads).
    """

    window_output = "score"

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
        max_image_side: int | None = MAX_IMAGE_SIDE,
    ) -> None:
        super().__init__()
        cfg = preset_settings(preset)
        align = Align.of(align, "align")
        if align is Align.auto:
            raise ConfigError("align must be 'error' or 'resize' for a metric (auto is a run setting: resize only after a "
                              "size-changing transform)")
        precision = None if precision is None else Precision.of(precision, "precision").value
        if max_windows_per_batch < 1:
            raise ConfigError(f"max_windows_per_batch must be >= 1, got {max_windows_per_batch}")
        if max_image_side is not None and max_image_side < 1:
            raise ConfigError(f"max_image_side must be >= 1 or None, got {max_image_side}")
        if stride is None:  # the official 200 px, or the window if smaller (a stride above the window leaves gaps)
            stride = min(OFFICIAL_STRIDE, backbone.window or OFFICIAL_STRIDE)
        if backbone.window is not None and not 0 < stride <= backbone.window:
            raise ConfigError(f"stride must be in 1..{backbone.window} (the window), got {stride}: a larger one leaves pixels unscored")
        self.backbone = backbone
        self.distance = distance
        self.preset = Preset.of(preset, "preset").value
        # DeepSSIM's VGG16 is defined on ImageNet-normalised input, so it is normalised under every preset.
        default = cfg.normalize or backbone.requires_normalization
        self.normalize = default if normalize is None else normalize
        self.precision = precision
        self.stride = stride
        self.max_windows_per_batch = max_windows_per_batch
        self.max_image_side = max_image_side
        self.align = align.value
        self.exif = resolve_exif(exif, preset).value  # image files given by path: EXIF orientation applied or ignored
        self.fp32_distances = cfg.fp32_distances
        self.use_paper_dtype = cfg.paper_dtype
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

    def feature_key(self) -> tuple:
        """Metrics with equal keys share features: feature kind (taps / embedding), whether windows are compared one
        to one, and every setting that changes the features (backbone, preprocessing, precision, windows)."""
        kind = "embed" if self.distance.kind == "embed" else "taps"
        settings = tuple(sorted((k, str(v)) for k, v in self.config().items() if k not in ("distance", "weighting")))
        return kind, self.distance.kind != "image", settings

    def num_windows(self, size: tuple[int, int]) -> int:
        """Windows of an image of ``size`` (H, W): 1 for whole-image backbones."""
        window = self.backbone.window
        return 1 if window is None else len(window_grid(size[0], size[1], window, self.stride))

    def chunks(self, num_images: int, num_windows: int, budget: int | None = None) -> Iterator[tuple[slice, slice]]:
        """``(images, windows)`` blocks of at most ``budget`` (default ``max_windows_per_batch``) windows, image-major:
        as many whole images as fit, or one image's windows in runs when an image has more windows than that."""
        per = budget or self.max_windows_per_batch
        if num_windows <= per:
            step = per // num_windows
            for a in range(0, num_images, step):
                yield slice(a, min(a + step, num_images)), slice(0, num_windows)
        else:
            for a in range(num_images):
                for s in range(0, num_windows, per):
                    yield slice(a, a + 1), slice(s, min(s + per, num_windows))

    def _normalised(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std if self.normalize else x

    def _check_side(self, x: torch.Tensor) -> None:
        """Whole-image backbones need memory in proportion to the image area: refuse images above ``max_image_side``."""
        h, w = x.shape[-2:]
        if self.max_image_side is not None and max(h, w) > self.max_image_side:
            raise InputError(
                f"a {w}x{h} image exceeds max_image_side={self.max_image_side} for backbone {self.backbone.name!r}, "
                "which runs on the whole image (memory grows with its area: a 4096x3072 pair takes about 5.5 GB with "
                "efficientnet_lite0, more with vgg16); raise the limit with max_image_side= (evaluate.py / train.py: "
                "run.max_image_side=) if the memory is there, or resize the image"
            )

    def _taps(self, x: torch.Tensor, windows: slice, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
        """Taps (or the embedding, for embedding heads) of windows ``windows`` of every image in ``x`` [n, 3, H, W]
        (float in [0, 1], or uint8 from the engine's loader), image-major. Only those windows are cropped and
        preprocessed. ``dtype``: the backbone's compute dtype (default ``model_dtype()``)."""
        x = to_float(x)
        window = self.backbone.window
        if window is None:
            self._check_side(x)
            crops = self._normalised(x)
        elif min(x.shape[-2:]) >= window:
            crops = self._normalised(crop_windows(x, window, self.stride, windows)[0])
        else:  # smaller than a window: normalised first, then zero-padded (``pad_to_window``)
            crops = crop_windows(self._normalised(x), window, self.stride, windows)[0]
        dtype = dtype or self.model_dtype()
        self.backbone.cast(dtype)
        crops = crops.to(dtype)
        step = CPU_CALL_WINDOWS
        if window is None or crops.device.type != "cpu" or len(crops) <= step:
            return self._backbone_call(crops, dtype)
        taps: list[torch.Tensor] = []
        for a in range(0, len(crops), step):
            part = self._backbone_call(crops[a : a + step], dtype)
            taps = taps or [t.new_empty(len(crops), *t.shape[1:]) for t in part]
            for whole, t in zip(taps, part):
                whole[a : a + step] = t
        return taps

    def _backbone_call(self, crops: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
        """Taps (or the embedding) of a batch of crops, in at least fp32 where the preset or bf16 asks for it."""
        taps = [self.backbone.embed(crops)] if self.distance.kind == "embed" else self.backbone.taps(crops)
        if self.fp32_distances or dtype == torch.bfloat16:  # at least fp32 (fp64 stays fp64: gradient checks)
            taps = [t.to(torch.promote_types(t.dtype, torch.float32)) for t in taps]
        return taps

    def window_features(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> Features:
        """Taps of every window of the images ``x`` [n, 3, H, W], chunk by chunk; the autograd graph is kept when
        the caller records one (``zsiqa.losses.PerceptualLoss``)."""
        n, k = x.shape[0], self.num_windows(x.shape[-2:])
        chunks = [self._taps(x[i], w, dtype) for i, w in self.chunks(n, k)]
        taps = [c[0] if len(c) == 1 else torch.cat(c) for c in zip(*chunks)]
        return Features(taps, n, k, tuple(x.shape[-2:]))

    @torch.no_grad()
    def features(self, img: ImageLike | list[ImageLike]) -> Features:
        """Backbone taps (or the embedding, for embedding heads) of every window of every image, all kept: for a
        reference scored against many distorted images. Scoring itself streams (``score_features``)."""
        return self.window_features(to_batch(img, exif=self.exif).to(self.device))

    @torch.no_grad()
    def score_features(self, ref: Source, dis: Source) -> torch.Tensor:
        """Scores ``[N]`` of features (``features()``) or images ``[N, 3, H, W]``, streamed chunk by chunk: reuse one
        reference's features for many distorted images."""
        return score_pairs({"score": self}, ref, dis)["score"]

    @torch.no_grad()
    def layer_terms(self, ref: Source, dis: Source) -> torch.Tensor:
        """Window-averaged per-layer terms ``[N, L]``; their sum over L is the score (l2, cos, cos_channel)."""
        return self.terms(ref, dis)[0]

    @torch.no_grad()
    def channel_terms(self, ref: Source, dis: Source) -> list[torch.Tensor]:
        """Window-averaged per-channel terms, one ``[N, C_l]`` per layer; summing channels gives ``layer_terms``."""
        return self.terms(ref, dis, layers=False, channels=True)[1]

    @torch.no_grad()
    def terms(self, ref: Source, dis: Source, layers: bool = True, channels: bool = False
              ) -> tuple[torch.Tensor | None, list[torch.Tensor] | None]:
        """``(layer_terms, channel_terms)`` in one streamed pass (each ``None`` unless asked for)."""
        if self.distance.layer_terms is None:
            raise ValueError(f"distance {self.distance.name!r} has no per-layer terms; use l2, cos or cos_channel")
        wanted = {"layer": layers, "channel": channels}
        out = window_outputs({name: (self, name) for name, on in wanted.items() if on}, ref, dis)
        return out.get("layer"), out.get("channel")

    @torch.no_grad()
    def map(self, ref: ImageLike, dis: ImageLike) -> QualityMap:
        """The quality map of one pair (``QualityMap``), at the resolution the features have: each token or
        feature-map cell's term placed over the pixels its window gives it (prefix tokens such as CLS spread over
        their window), averaged over windows as the score is. Heads whose score is not a sum of per-token terms
        (skld, jsd, wsd, swd, deepssim, embed_cos, learned weights) have no such decomposition: a ConfigError."""
        if self.distance.name not in MAP_DISTANCES or self.window_output != "score":
            raise ConfigError(f"distance {self.distance.name!r}{' with learned weights' if self.window_output != 'score' else ''} "
                              f"has no spatial decomposition (its score is not a sum of per-token terms); quality maps "
                              f"exist for {', '.join(MAP_DISTANCES)}")
        r, d = to_batch(ref, "ref", self.exif), to_batch(dis, "dis", self.exif)
        d = align_pair(r, d, self.align, f"distance {self.distance.name!r}")
        if r.shape[0] != 1 or d.shape[0] != 1:
            raise InputError(f"a quality map is of one pair; got {r.shape[0]} reference and {d.shape[0]} distorted images")
        fr, fd = self.window_features(r.to(self.device)), self.window_features(d.to(self.device))
        window = self.backbone.window
        size = tuple(pad_to_window(r, window).shape[-2:]) if window else tuple(r.shape[-2:])
        starts = window_grid(*r.shape[-2:], window, self.stride) if window else [(0, 0)]
        side = (window, window) if window else size
        layers = torch.zeros(len(fr.taps), *size, dtype=torch.float64, device=self.device)
        for l, (tr, td) in enumerate(zip(fr.taps, fd.taps)):
            for k, (x, y) in enumerate(starts):
                cells = _cell_terms(self.distance.name, tr[k].double(), td[k].double()) / len(starts)
                layers[l, x : x + side[0], y : y + side[1]] += spread_cells(cells, *side)
        combined = layers.sum(0)
        return QualityMap(layers.float().cpu(), combined.float().cpu(), float(combined.sum()))

    def score_from(self, averaged: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """The scores ``[N]`` from the window-averaged output named by ``window_output`` (the score itself here)."""
        return averaged

    def forward(self, ref: ImageLike | list[ImageLike], dis: ImageLike | list[ImageLike]) -> torch.Tensor:
        """Score pairs: ``ref`` and ``dis`` are ``[N,3,H,W]`` tensors in [0,1], paths or PIL images (``ref`` may be one image)."""
        r, d = to_batch(ref, "ref", self.exif), to_batch(dis, "dis", self.exif)
        if self.distance.kind != "image":
            d = align_pair(r, d, self.align, f"distance {self.distance.name!r}")
        if r.shape[0] not in (1, d.shape[0]):
            raise InputError(f"got {r.shape[0]} references for {d.shape[0]} distorted images; give 1 or the same number")
        return self.score_features(r.to(self.device), d.to(self.device))


def _cell_terms(distance: str, ref: torch.Tensor, dis: torch.Tensor) -> torch.Tensor:
    """One window's layer term split over its spatial cells, ``[h, w]`` summing to the term: tokens ``[T, C]`` on a
    square grid (prefix tokens spread evenly over it), maps ``[C, h, w]``. The cosine heads keep the layer term's
    guard (inf set to 0, NaN skipped)."""
    if ref.ndim == 2:  # tokens: the last g*g form the patch grid, the rest (CLS, registers) are prefix tokens
        tokens = ref.shape[0]
        g = int(tokens**0.5)
        if distance == "l2":
            per_token = ((dis - ref) ** 2).mean(1) / tokens
        else:
            per_token = _guarded_share(1 - F.cosine_similarity(dis, ref, dim=-1, eps=COS_EPS))
        prefix = per_token[: tokens - g * g].sum()
        return per_token[tokens - g * g :].view(g, g) + prefix / (g * g)
    if distance == "l2":
        return ((dis - ref) ** 2).mean(0) / (ref.shape[1] * ref.shape[2])
    if distance == "cos_channel":  # the cosine over channels at each position
        return _guarded_share(1 - F.cosine_similarity(dis, ref, dim=0, eps=COS_EPS))
    # cos on maps: the paper's cosine along the width axis, one value per (channel, row): a map of rows
    rows = _guarded_share(1 - F.cosine_similarity(dis, ref, dim=-1, eps=COS_EPS)).sum(0)
    return (rows / ref.shape[2])[:, None].expand(-1, ref.shape[2])


def _guarded_share(value: torch.Tensor) -> torch.Tensor:
    """Each value's share of the guarded mean (``zsiqa.distances.basic.guarded_mean``: inf counts as 0, NaN is
    skipped)."""
    value = value.masked_fill(torch.isinf(value), 0)
    count = (~torch.isnan(value)).sum()
    return torch.nan_to_num(value, nan=0.0) / count


@torch.no_grad()
def score_pairs(metrics: Mapping[str, FRMetric], ref: Source, dis: Source) -> dict[str, torch.Tensor]:
    """``{name: scores [N]}`` of metrics that share features (equal ``feature_key``), in one streamed pass.

    ``ref`` / ``dis``: features or images; a single reference is broadcast against N distorted images (or the
    reverse). Each chunk's features are scored as soon as they exist; what is kept is ``ref`` when given as features
    (the engine's reference cache), the per-window outputs, and one chunk. The window heads share one fused pass.
    """
    requests = {name: (m, m.window_output) for name, m in metrics.items()}
    averaged = window_outputs(requests, ref, dis)
    return {name: m.score_from(averaged[name]) for name, m in metrics.items()}


@torch.no_grad()
def window_outputs(requests: Mapping[str, tuple[FRMetric, str]], ref: Source, dis: Source) -> dict:
    """Window-averaged outputs ``{name: ...}`` for ``requests = {name: (metric, output)}``; output "score" ``[N]``,
    "layer" ``[N, L]`` or "channel" (a list of ``[N, C_l]``). All metrics must share features (``feature_key``)."""
    if not requests:
        raise ValueError("window_outputs needs at least one (metric, output) request")
    first = next(iter(requests.values()))[0]
    for name, (m, output) in requests.items():
        if m.feature_key() != first.feature_key():
            raise ValueError(f"metric {name!r} does not share features with the others ({m.config()} vs {first.config()})")
        if output not in ("score", "layer", "channel"):
            raise ValueError(f"output must be 'score', 'layer' or 'channel', got {output!r}")
    if first.distance.kind == "image":
        return _image_scores(requests, ref, dis)
    n_ref, n_dis, k = _num_images(ref), _num_images(dis), _windows(first, ref)
    n = max(n_ref, n_dis)
    if n_ref not in (1, n) or n_dis not in (1, n):
        raise ValueError(f"cannot pair features of {n_ref} and {n_dis} images")
    if _windows(first, dis) != k:
        raise InputError(
            f"reference ({_size(ref)[0]}x{_size(ref)[1]}) and distorted ({_size(dis)[0]}x{_size(dis)[1]}) images give "
            f"different windows; distance {first.distance.name!r} compares the same windows of both. Resize the "
            "distorted image to the reference (align='resize' in create_metric, --align resize in zsiqa score), "
            "or use a size-free head such as 'deepssim'."
        )
    # A reference given as images and needed chunk by chunk is computed alongside the distorted windows: each side
    # then takes half a chunk, so the windows alive at once stay max_windows_per_batch.
    # On the CPU such a chunk is one backbone call per side: larger ones would only hold more taps (nothing of the
    # reference is reused across distorted images there).
    streamed_ref = not isinstance(ref, Features) and (n_ref > 1 or k > first.max_windows_per_batch)
    budget = max(1, first.max_windows_per_batch // 2) if streamed_ref else first.max_windows_per_batch
    if streamed_ref and first.device.type == "cpu":
        budget = min(budget, CPU_CALL_WINDOWS)
    parts: dict[str, list] = {}
    whole_ref = None  # a single reference image's taps, when every chunk takes all its windows: computed once
    if not isinstance(ref, Features) and not streamed_ref:
        whole_ref = first._taps(ref.to(first.device), slice(0, k))
    for images, windows in first.chunks(n, k, budget):
        g, w = images.stop - images.start, windows.stop - windows.start
        for name, value in _chunk(requests, ref, dis, images, windows, whole_ref).items():
            if requests[name][1] == "channel":
                per_window = [v.float().view(g, w, -1) for v in value]
            else:  # "score" [g*w] or "layer" [g*w, L]
                per_window = value.float().view(g, w, *value.shape[1:])
            parts.setdefault(name, []).append((images, windows, per_window))
    return {name: _window_mean(chunks, n, k) for name, chunks in parts.items()}


def _chunk(requests: Mapping[str, tuple[FRMetric, str]], ref: Source, dis: Source, images: slice, windows: slice,
           whole_ref: list[torch.Tensor] | None) -> dict:
    """Per-window outputs of one chunk; its features are freed on return, before the next chunk's exist."""
    first = next(iter(requests.values()))[0]

    def taps(source: Source) -> list[torch.Tensor]:
        if isinstance(source, Features):
            return source.select(images, windows)
        return first._taps(source[images if source.shape[0] > 1 else slice(0, 1)].to(first.device), windows)

    return _chunk_outputs(requests, whole_ref if whole_ref is not None else taps(ref), taps(dis))


def _window_mean(parts: list, n: int, k: int) -> torch.Tensor | list[torch.Tensor]:
    """Per-window values ``[g, w, ...]`` of every chunk put in place in ``[n, k, ...]``, averaged over the k windows."""
    if isinstance(parts[0][2], list):
        return [_window_mean([(i, w, v[l]) for i, w, v in parts], n, k) for l in range(len(parts[0][2]))]
    out = parts[0][2].new_empty(n, k, *parts[0][2].shape[2:])
    for images, windows, value in parts:
        out[images, windows] = value
    return out.mean(1)


def _chunk_outputs(requests: Mapping[str, tuple[FRMetric, str]], ref: Feats, dis: Feats) -> dict:
    """Per-window outputs of one chunk; ``ref`` holds the chunk's windows once (broadcast) or for every image."""
    if ref[0].shape[0] > dis[0].shape[0]:  # one distorted image against many references: the rare way round
        dis = [t.repeat(ref[0].shape[0] // t.shape[0], *([1] * (t.ndim - 1))) for t in dis]
    heads = {m.distance.name: m.distance for m, output in requests.values() if output == "score"}
    scores = window_scores(list(heads.values()), ref, dis) if heads else {}
    if ref[0].shape[0] < dis[0].shape[0] and any(output != "score" for _, output in requests.values()):
        ref = [t.repeat(dis[0].shape[0] // t.shape[0], *([1] * (t.ndim - 1))) for t in ref]
    out = {}
    for name, (m, output) in requests.items():
        if output == "score":
            out[name] = scores[m.distance.name]
        elif output == "layer":
            out[name] = m.distance.layer_terms(ref, dis)
        else:
            if m.distance.channel_terms is None:
                raise ValueError(f"distance {m.distance.name!r} has no per-channel terms")
            out[name] = m.distance.channel_terms(ref, dis)
    return out


def _image_scores(requests: Mapping[str, tuple[FRMetric, str]], ref: Source, dis: Source) -> dict[str, torch.Tensor]:
    """Scores of image heads (``kind="image"``, e.g. deepssim), which see all windows of an image at once: whole
    images in groups of at most ``max_windows_per_batch`` windows (at least one image); not streamed within an image."""
    first = next(iter(requests.values()))[0]
    n_ref, n_dis = _num_images(ref), _num_images(dis)
    n = max(n_ref, n_dis)
    if n_ref not in (1, n) or n_dis not in (1, n):
        raise ValueError(f"cannot pair features of {n_ref} and {n_dis} images")
    k_ref, k_dis = _windows(first, ref), _windows(first, dis)
    step = max(1, first.max_windows_per_batch // max(k_ref, k_dis))
    ref, dis = (first.features(s) if not isinstance(s, Features) and _num_images(s) == 1 else s for s in (ref, dis))
    out: dict[str, list] = {name: [] for name in requests}
    for a in range(0, n, step):
        images = slice(a, min(a + step, n))
        g = images.stop - images.start
        sides = []
        for side in (ref, dis):
            taps = side.select(images, slice(None)) if isinstance(side, Features) else first.features(side[images]).taps
            copies = g if _num_images(side) == 1 else 1  # a single image is repeated for the group
            sides.append([t.repeat(copies, *([1] * (t.ndim - 1))) for t in taps])
        for name, (m, _) in requests.items():
            out[name].append(m.distance.fn(sides[0], sides[1], k_ref, k_dis).float())
    return {name: torch.cat(v) for name, v in out.items()}


def _num_images(source: Source) -> int:
    return source.num_images if isinstance(source, Features) else source.shape[0]


def _size(source: Source) -> tuple[int, int]:
    return source.size if isinstance(source, Features) else tuple(source.shape[-2:])


def _windows(metric: FRMetric, source: Source) -> int:
    return source.num_windows if isinstance(source, Features) else metric.num_windows(_size(source))
