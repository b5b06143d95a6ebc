"""A small bundled FR-IQA smoke benchmark built from scikit-image's sample photographs.

Six photographs (``skimage.data``), centre-cropped and resized to 288x288 RGB, each distorted by six graded synthetic
distortions at four levels: 144 pairs. The label is the severity level (1-4, higher = worse), not human opinion:
the set checks that a pipeline runs end to end and ranks obvious degradations, nothing more. Generation is
deterministic (fixed seeds) and idempotent; it takes a few seconds and needs no network.

Layout: ``ref/<photo>.png``, ``dis/<photo>_<type>_<level>.png``, ``meta.csv`` (pyiqa-style columns
``ref_name,dist_name,score,dist_type,level``, paths relative to the root) and ``README.txt``.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from ..errors import writing

VERSION = "1"
SIZE = 288
LEVELS = (1, 2, 3, 4)
PHOTOS = {  # name -> licence, as scikit-image documents it
    "astronaut": "NASA (Eileen Collins); public domain",
    "chelsea": "Stefan van der Walt; CC0",
    "coffee": "Rachel Michetti (Pikolo Espresso Bar); CC0",
    "rocket": "SpaceX (DSCOVR launch on Falcon 9); public domain",
    "motorcycle_left": "Middlebury 2014 stereo benchmark (Scharstein et al., GCPR 2014); no licence stated by "
                       "scikit-image, cite the paper",
    "hubble_deep_field": "NASA (Hubble eXtreme Deep Field); public domain",
}
DEMO_COLUMNS = ("ref_name", "dist_name", "score", "dist_type", "level")
DEMO_REFS = len(PHOTOS)
_STAMP = ".complete"


def _noise(img: Image.Image, level: int, seed: int) -> Image.Image:
    sigma = (4.0, 8.0, 16.0, 32.0)[level - 1]
    rng = np.random.default_rng(seed)
    x = np.asarray(img, dtype=np.float64) + rng.normal(0.0, sigma, size=(SIZE, SIZE, 3))
    return Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8))


def _blur(img: Image.Image, level: int, seed: int) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur((0.75, 1.5, 3.0, 6.0)[level - 1]))


def _jpeg(img: Image.Image, level: int, seed: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=(40, 20, 10, 5)[level - 1])
    return Image.open(buf).convert("RGB")


def _contrast(img: Image.Image, level: int, seed: int) -> Image.Image:
    return ImageEnhance.Contrast(img).enhance((0.8, 0.6, 0.4, 0.2)[level - 1])


def _brightness(img: Image.Image, level: int, seed: int) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance((0.85, 0.7, 0.55, 0.4)[level - 1])


def _shift(img: Image.Image, level: int, seed: int) -> Image.Image:
    """Content moved right and down by 2/4/8/16 px; the uncovered border repeats the edge pixels."""
    s = (2, 4, 8, 16)[level - 1]
    x = np.pad(np.asarray(img), ((s, 0), (s, 0), (0, 0)), mode="edge")[:SIZE, :SIZE]
    return Image.fromarray(np.ascontiguousarray(x))


DISTORTIONS: dict[str, Callable[[Image.Image, int, int], Image.Image]] = {
    "noise": _noise, "blur": _blur, "jpeg": _jpeg, "contrast": _contrast, "brightness": _brightness, "shift": _shift,
}
NUM_ITEMS = DEMO_REFS * len(DISTORTIONS) * len(LEVELS)  # 144


def default_demo_root() -> Path:
    """``$ZSIQA_DEMO_ROOT`` if set, else ``~/.cache/zsiqa/demo``."""
    env = os.environ.get("ZSIQA_DEMO_ROOT")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zsiqa" / "demo"


def build_demo(root: str | os.PathLike | None = None) -> Path:
    """Generate the demo set under ``root`` (default: ``default_demo_root()``) unless already there; return root."""
    root = Path(root).expanduser().resolve() if root is not None else default_demo_root().resolve()
    stamp = root / _STAMP
    if stamp.is_file() and stamp.read_text().strip() == VERSION:
        return root
    (root / "ref").mkdir(parents=True, exist_ok=True)
    (root / "dis").mkdir(exist_ok=True)
    rows = []
    for photo_no, photo in enumerate(PHOTOS):
        ref = _photo(photo)
        ref_name = f"ref/{photo}.png"
        _save_png(ref, root / ref_name)
        for type_no, (dist_type, distort) in enumerate(DISTORTIONS.items()):
            for level in LEVELS:
                dist_name = f"dis/{photo}_{dist_type}_{level}.png"
                seed = 1000 * photo_no + 10 * type_no + level
                _save_png(distort(ref, level, seed), root / dist_name)
                rows.append((ref_name, dist_name, level, dist_type, level))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(DEMO_COLUMNS)
    writer.writerows(rows)
    _write_atomic(root / "meta.csv", text.getvalue().encode())
    _write_atomic(root / "README.txt", _readme().encode())
    _write_atomic(stamp, f"{VERSION}\n".encode())  # last: marks the set complete
    return root


def _photo(name: str) -> Image.Image:
    """A scikit-image sample photograph, centre-cropped to a square and resized to SIZE x SIZE RGB."""
    from skimage import data  # imported here: scikit-image is needed only to build the set

    pixels = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
    h, w = pixels.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = Image.fromarray(pixels[top:top + side, left:left + side]).convert("RGB")
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def _save_png(img: Image.Image, path: Path) -> None:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # fast; PNG is lossless at any level
    _write_atomic(path, buf.getvalue())


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so concurrent builders never leave a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with writing(path), os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:  # cleanup only, then the same error
        os.unlink(tmp)
        raise
    os.replace(tmp, path)


def _readme() -> str:
    licences = "\n".join(f"  {name}: {licence}" for name, licence in PHOTOS.items())
    types = ", ".join(DISTORTIONS)
    return f"""zsiqa demo set, version {VERSION}

A SMOKE BENCHMARK, NOT HUMAN OPINION. The score of each distorted image is its synthetic severity level
(1-4, higher = worse), so correlations on this set only show that a metric runs end to end and ranks obvious
degradations; they say nothing about agreement with human judgement. Use LIVE, TID2013, PIPAL, KADID-10k
or CSIQ for that.

Contents: {len(PHOTOS)} reference photographs from scikit-image (skimage.data), centre-cropped and resized to
{SIZE}x{SIZE} RGB (ref/), each distorted by {types} at levels {LEVELS[0]}-{LEVELS[-1]} (dis/), listed in meta.csv
(ref_name,dist_name,score,dist_type,level; paths relative to this folder). Generated deterministically by
zsiqa.data.demo.build_demo.

Image sources and licences (as documented by scikit-image):
{licences}
"""
