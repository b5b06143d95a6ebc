"""Geometric transforms of an image pair ``(ref, dis) -> (ref, dis)``: the ZS-IQA robustness protocol and a disparity suite.

Every transform is a row of ``TRANSFORMS`` and is built by name and amount with ``make_transform(name, amount, preset)``.
Amount 0 always returns the pair unchanged (the untransformed "Original" protocol). Images are PIL images in mode
"RGB" or "L" (PIL ``.size`` is (W, H)). Coordinates below are pixel indices, x to the right and y down.

ZS-IQA protocol (``preset="paper"`` reproduces the official code; ``preset="fixed"`` does what the paper describes):

| name | amount | paper | fixed |
|---|---|---|---|
| tra | % of W | off = ceil(amount/100*W); ref -> crop (0,0,W-off,H), dis -> crop (off,0,W,H): **both** W-off wide, dis content shifted left | ref unchanged; dis content shifted right by off, revealed strip edge-replicated; W x H |
| sca | % of size | dW, dH = amount % rounded up to even px (anisotropic), bilinear up-resize, centre crop, resize back; W x H | isotropic zoom by 1 + amount/100 about the centre (``scale_keep``); W x H |
| rot | degrees, clockwise | PIL ``rotate(-amount)``: nearest neighbour, black corners; W x H | bilinear, edge-replicated corners (``rotate``); W x H |

Disparity suite (the same under both presets; only dis changes, ref is returned unchanged):

| name | amount | dis output size |
|---|---|---|
| scale | % size change, factor s = 1 + amount/100 (100 -> 2x, -50 -> 0.5x); bilinear resample | round(W*s) x round(H*s) |
| scale_keep | same factor; zoom about the centre, bilinear, edge-replicated border when zooming out | W x H |
| rotate | degrees, clockwise, about the centre; bilinear, edge-replicated corners | W x H |
| translate | % of W in x and % of H in y (both by the same amount), rounded to whole px; edge-replicated | W x H |
| perspective | % of W: the top corners of the viewed region move inward (keystone); PIL PERSPECTIVE, bilinear | W x H |
| elastic | max displacement in px of a smooth random field (fixed seed, sigma = min(W,H)/16); bilinear | W x H |
| crop | % of W removed on the left (no resize): content starts round(amount/100*W) px later | W - round(amount/100*W) x H |
| retarget | % width change, non-uniform: width * (1 + amount/100), height kept; bilinear | round(W*(1+amount/100)) x H |

``changes_size`` marks rows whose distorted output can differ in size from the reference output: window-based metrics
that need aligned, same-size inputs must refuse or align those.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from .choices import Preset
from .errors import ConfigError
from .registry import Registry

PairFn = Callable[[Image.Image, Image.Image, float], tuple[Image.Image, Image.Image]]

ELASTIC_SEED = 0
ELASTIC_SMOOTHNESS = 1 / 16  # Gaussian sigma of the elastic field as a fraction of the shorter image side
BILINEAR = Image.Resampling.BILINEAR


def _round(x: float) -> int:
    """Round half away from zero (Python's round() rounds half to even)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _positive_size(w: int, h: int, name: str, amount: float) -> tuple[int, int]:
    if w < 1 or h < 1:
        raise ValueError(f"transform {name!r} with amount {amount} leaves an empty {w}x{h} image; use a smaller amount")
    return w, h


def _shift(img: Image.Image, dx: int, dy: int) -> Image.Image:
    """Move the content by whole pixels (right/down when positive); the revealed border repeats the edge pixels."""
    a = np.asarray(img)
    h, w = a.shape[:2]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return Image.fromarray(a[rows][:, cols])


def _remap(img: Image.Image, src_x: np.ndarray, src_y: np.ndarray) -> Image.Image:
    """Output pixel (y, x) = bilinear sample of ``img`` at (src_y, src_x); outside the image the edge is replicated."""
    a = np.asarray(img, dtype=np.float64)
    channels = a[..., None] if a.ndim == 2 else a
    out = np.stack(
        [ndimage.map_coordinates(channels[..., c], [src_y, src_x], order=1, mode="nearest") for c in range(channels.shape[2])],
        axis=-1,
    )
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return Image.fromarray(out[..., 0] if a.ndim == 2 else out)


def _grid(img: Image.Image) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Pixel index grids (x, y) and the image centre (cx, cy) in the same coordinates."""
    w, h = img.size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return xs, ys, (w - 1) / 2, (h - 1) / 2


def perspective_coefficients(
    out_points: list[tuple[float, float]], in_points: list[tuple[float, float]]
) -> tuple[float, ...]:
    """The 8 coefficients of PIL's PERSPECTIVE transform that map each of 4 output points onto its input point.

    PIL samples output (x, y) at input ((a x + b y + c) / (g x + h y + 1), (d x + e y + f) / (g x + h y + 1)).
    """
    rows, rhs = [], []
    for (x, y), (u, v) in zip(out_points, in_points, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -x * u, -y * u])
        rows.append([0, 0, 0, x, y, 1, -x * v, -y * v])
        rhs += [u, v]
    return tuple(float(c) for c in np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64)))


@functools.lru_cache(maxsize=8)
def _unit_elastic_field(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    # Cached: the smoothing costs ~0.4 s at 768x512 and every image of a size gets the same field.
    rng = np.random.default_rng(ELASTIC_SEED)
    sigma = ELASTIC_SMOOTHNESS * min(h, w)
    dx, dy = (ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma) for _ in range(2))
    norm = np.sqrt(dx**2 + dy**2).max()
    return dx / norm, dy / norm


def elastic_field(h: int, w: int, amount: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic smooth displacement (dx, dy), each [h, w], whose largest magnitude is exactly ``amount`` px."""
    dx, dy = _unit_elastic_field(h, w)
    return dx * amount, dy * amount


# ---- ZS-IQA protocol, paper variants (bit-faithful to the official code, quirks included) ----

def _tra_paper(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    """Paper quirk, kept for reproduction: both images are cropped, so ref changes and dis content moves left."""
    if ref.size != dis.size:
        raise ValueError(f"paper 'tra' crops ref and dis with the same box: sizes differ, ref {ref.size} vs dis {dis.size}")
    w, h = dis.size
    off = math.ceil(amount / 100 * w)
    _positive_size(w - off, h, "tra", amount)
    return ref.crop((0, 0, w - off, h)), dis.crop((off, 0, w, h))


def _sca_paper(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    """Paper quirk, kept for reproduction: offsets rounded up to even px per axis (anisotropic, larger than amount %);
    the final resize back is a no-op for even sizes and a slight resample for odd ones."""
    w, h = dis.size
    dw = 2 * math.ceil(amount / 100 * w / 2)
    dh = 2 * math.ceil(amount / 100 * h / 2)
    big = dis.resize((w + dw, h + dh), BILINEAR)
    cx, cy = (w + dw) // 2, (h + dh) // 2
    hw, hh = math.ceil(w / 2), math.ceil(h / 2)
    return ref.copy(), big.crop((cx - hw, cy - hh, cx + hw, cy + hh)).resize((w, h), BILINEAR)


def _rot_paper(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    """Paper quirk, kept for reproduction: nearest-neighbour resampling and black corners (PIL rotate defaults)."""
    return ref.copy(), dis.rotate(-amount, resample=Image.Resampling.NEAREST, expand=False)


def _tra_fixed(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    """As the paper describes: ref unchanged, dis content shifted right by the paper's ceil(amount/100*W) px."""
    return ref.copy(), _shift(dis, math.ceil(amount / 100 * dis.width), 0)


# ---- disparity suite (also the fixed variants of sca and rot) ----

def _scale(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    s = 1 + amount / 100
    size = _positive_size(_round(dis.width * s), _round(dis.height * s), "scale", amount)
    return ref.copy(), dis.resize(size, BILINEAR)


def _scale_keep(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    s = 1 + amount / 100
    xs, ys, cx, cy = _grid(dis)
    return ref.copy(), _remap(dis, cx + (xs - cx) / s, cy + (ys - cy) / s)


def _rotate(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    t = math.radians(amount)
    c, s = math.cos(t), math.sin(t)
    xs, ys, cx, cy = _grid(dis)
    u, v = xs - cx, ys - cy
    # Clockwise on screen (y down) is x' = c u - s v, y' = s u + c v; sample the source at the inverse rotation.
    return ref.copy(), _remap(dis, cx + c * u + s * v, cy - s * u + c * v)


def _translate(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    return ref.copy(), _shift(dis, _round(amount / 100 * dis.width), _round(amount / 100 * dis.height))


def _perspective(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    """The output frame shows the quad whose top corners sit d = amount/100*W inside the top corners of dis, so every
    output pixel has content (no fill) and the top of the image is stretched horizontally."""
    w, h = dis.size
    d = amount / 100 * w
    coeffs = perspective_coefficients([(0, 0), (w, 0), (w, h), (0, h)], [(d, 0), (w - d, 0), (w, h), (0, h)])
    return ref.copy(), dis.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, BILINEAR)


def _elastic(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    xs, ys, _, _ = _grid(dis)
    dx, dy = elastic_field(dis.height, dis.width, amount)
    return ref.copy(), _remap(dis, xs + dx, ys + dy)


def _crop(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    w, h = dis.size
    c = _round(amount / 100 * w)
    _positive_size(w - c, h, "crop", amount)
    return ref.copy(), dis.crop((c, 0, w, h))


def _retarget(ref: Image.Image, dis: Image.Image, amount: float) -> tuple[Image.Image, Image.Image]:
    size = _positive_size(_round(dis.width * (1 + amount / 100)), dis.height, "retarget", amount)
    return ref.copy(), dis.resize(size, BILINEAR)


@dataclass(frozen=True)
class Interval:
    """The amounts a transform accepts: [low, high) by default."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = True

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class TransformSpec:
    """One row of ``TRANSFORMS``: the function per preset, what ``amount`` means, which amounts are valid, and whether
    the distorted output can differ in size from the reference output."""

    name: str
    paper: PairFn
    fixed: PairFn
    unit: str
    amounts: Interval
    changes_size: bool


_ANY = Interval(-math.inf, math.inf, low_open=True)
_FACTOR = Interval(-100, math.inf, low_open=True)

TRANSFORMS: Registry[TransformSpec] = Registry("transform")
for _spec in (
    TransformSpec("tra", _tra_paper, _tra_fixed, "% of width", Interval(0, 100), False),
    TransformSpec("sca", _sca_paper, _scale_keep, "% of size", Interval(0, math.inf), False),
    TransformSpec("rot", _rot_paper, _rotate, "degrees clockwise", _ANY, False),
    TransformSpec("scale", _scale, _scale, "% size change (factor 1 + amount/100)", _FACTOR, True),
    TransformSpec("scale_keep", _scale_keep, _scale_keep, "% zoom (factor 1 + amount/100)", _FACTOR, False),
    TransformSpec("rotate", _rotate, _rotate, "degrees clockwise", _ANY, False),
    TransformSpec("translate", _translate, _translate, "% of width (x) and height (y)", Interval(-100, 100, True), False),
    TransformSpec("perspective", _perspective, _perspective, "% of width per top corner", Interval(0, 50), False),
    TransformSpec("elastic", _elastic, _elastic, "px (largest displacement)", Interval(0, math.inf), False),
    TransformSpec("crop", _crop, _crop, "% of width removed on the left", Interval(0, 100), True),
    TransformSpec("retarget", _retarget, _retarget, "% width change", _FACTOR, True),
):
    TRANSFORMS.register(_spec)


def _check_image(img: object, name: str) -> None:
    if not isinstance(img, Image.Image):
        raise TypeError(f"{name} must be a PIL image, got {type(img).__name__}")
    if img.mode not in ("RGB", "L"):
        raise ValueError(f"{name} has mode {img.mode!r}; convert it first, e.g. img.convert('RGB')")


@dataclass(frozen=True)
class PairTransform:
    """A transform bound to its amount and preset: ``PairTransform('tra', 1.0, 'paper')(ref, dis) -> (ref, dis)``."""

    name: str
    amount: float
    preset: str = "paper"

    def __post_init__(self) -> None:
        spec = TRANSFORMS.get(self.name)
        Preset.of(self.preset, "preset")
        if not math.isfinite(self.amount) or self.amount not in spec.amounts:
            raise ConfigError(
                f"transform {self.name!r}: amount {self.amount} is outside {spec.amounts} (unit: {spec.unit})"
            )

    def __call__(self, ref: Image.Image, dis: Image.Image) -> tuple[Image.Image, Image.Image]:
        _check_image(ref, "ref")
        _check_image(dis, "dis")
        if self.amount == 0:
            return ref.copy(), dis.copy()
        spec = TRANSFORMS[self.name]
        fn = spec.paper if self.preset == "paper" else spec.fixed
        return fn(ref, dis, self.amount)


def make_transform(name: str, amount: float, preset: str = "paper") -> PairTransform:
    """Build the pair transform ``name`` at ``amount`` (unit per ``TRANSFORMS[name].unit``) for a preset."""
    return PairTransform(name, float(amount), Preset.of(preset, "preset").value)


def transform_label(name: str, amount: float) -> str:
    """``none``, or ``NAME@AMOUNT`` as run folders and tables show a transform (e.g. ``rotate@5``)."""
    return "none" if name == "none" else f"{name}@{amount:g}"
