"""Image input: files, PIL images or tensors -> float32 RGB tensors in [0, 1].

Decoding (files and PIL images), mode by mode:
  * 8-bit RGB, L, P (palette), 1 (bit), CMYK, YCbCr, LAB, HSV: Pillow's ``convert("RGB")``, divided by 255, exactly
    as the official code decoded them. Alpha (RGBA, LA, PA) is dropped: the colour channels are used as stored, not
    composited (also what the official ``convert("RGB")`` did).
  * 16-bit greyscale (I;16, I;16B, I;16L, as 16-bit PNG/TIFF open) and 32-bit integer (I) images: value / 65535,
    repeated to 3 channels (an ``I`` value outside 0..65535 is an error). Pillow opens 16-bit RGB PNGs as 8-bit RGB
    (the high byte of each channel), so those keep 8-bit precision.
  * float (F) images: taken as values in [0, 1] (anything else, or NaN/Inf, is an error).
  * Multi-frame files (GIF, TIFF): the first frame.
  * EXIF orientation: ``exif="apply"`` (default) rotates/flips the pixels as the camera recorded; ``"ignore"`` keeps the
    stored pixel order, as the official code (``Image.open().convert("RGB")``) did; ``"auto"`` = ignore under
    ``preset=paper``, apply under ``preset=fixed`` (``resolve_exif``).
Every decode failure is an ``InputError`` naming the file (empty, not an image, truncated, too large).
The engine's loader keeps 8-bit images as uint8 (``as_uint8=True``: a quarter of the memory and of the host-device
copy) and ``to_float`` makes them float32 where they are used, with the same values as decoding to float directly.

Tensors must be ``[3, H, W]`` or ``[N, 3, H, W]`` with N >= 1, floating point (fp16/bf16/fp64 are converted to
float32), finite, in [0, 1]. Integer tensors are rejected (divide uint8 images by 255).
"""
from __future__ import annotations

import math
import struct
import sys
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .choices import Exif, Preset
from .errors import ConfigError, InputError, MissingFileError

ImageLike = Union[str, Path, Image.Image, torch.Tensor]
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
WIDE_MODES = (*SIXTEEN_BIT_MODES, "I", "F")  # modes holding more than 8 bits per value


def resolve_exif(exif: str, preset: str) -> Exif:
    """``apply`` or ``ignore``: ``auto`` follows the preset (the official code ignored EXIF orientation)."""
    exif = Exif.of(exif, "exif")
    if exif is Exif.auto:
        return Exif.ignore if Preset.of(preset, "preset") is Preset.paper else Exif.apply
    return exif


def open_image(path: str | Path, exif: str = "apply") -> Image.Image:
    """Decode an image file completely (pixels as stored, mode as stored; EXIF orientation per ``exif``)."""
    path = Path(path)
    if exif not in ("apply", "ignore"):
        raise ConfigError(f"exif must be 'apply' or 'ignore' here (resolve 'auto' with resolve_exif), got {exif!r}")
    if not path.is_file():
        raise MissingFileError(f"image not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"empty file (0 bytes), not an image: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            if exif == "ignore":
                _warn_orientation(path, im)
            return ImageOps.exif_transpose(im) if exif == "apply" else im.copy()
    except UnidentifiedImageError:
        raise InputError(f"not an image (Pillow cannot identify its format): {path}") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"image too large to decode safely: {path} ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's decoders: truncated or corrupt data
        raise InputError(_decode_failure(path, size, e)) from None


_ORIENTATION = 0x0112  # the EXIF tag; 1 = stored upright
_warned: set[Path] = set()


def _warn_orientation(path: Path, im: Image.Image) -> None:
    """One line per file (per process) when an EXIF orientation other than upright is ignored: the pixels compared
    are then rotated or mirrored from how the photo is shown."""
    orientation = im.getexif().get(_ORIENTATION, 1)
    if orientation != 1 and path not in _warned:
        _warned.add(path)
        print(f"warning: {path}: EXIF orientation {orientation} ignored (exif=ignore, the paper preset's default, "
              "compares the pixels as stored, as the official code does); exif=apply turns them upright "
              "(evaluate.py / train.py: data.exif=apply; zsiqa score: --exif apply)", file=sys.stderr)


def _decode_failure(path: Path, size: int, err: Exception) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    fmt = _FORMATS.get(next((magic for magic in _FORMATS if head.startswith(magic)), b""), "image")
    if fmt == "BMP" and len(head) >= 6:
        expected = struct.unpack("<I", head[2:6])[0]  # bfSize: the whole file's size in bytes
        if expected > size:
            return (f"truncated BMP: {path} ({expected - size} bytes missing: the header says {expected}, "
                    f"the file has {size})")
    if "truncated" in str(err):
        return f"truncated {fmt}: {path} ({err}); the file is incomplete, copy it again"
    return f"corrupt {fmt}: {path} ({type(err).__name__}: {err})"


_FORMATS = {b"BM": "BMP", b"\xff\xd8": "JPEG", b"\x89PNG": "PNG", b"GIF8": "GIF", b"II*\x00": "TIFF",
            b"MM\x00*": "TIFF", b"RIFF": "WEBP"}


def image_to_array(im: Image.Image, source: str = "image") -> np.ndarray:
    """``[H, W, 3]`` float32 in [0, 1] for any Pillow mode (see the module docstring); ``source`` names it in errors."""
    if im.mode in SIXTEEN_BIT_MODES or im.mode == "I":
        grey = np.asarray(im)
        if im.mode == "I" and grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise InputError(f"{source}: 32-bit integer image with values in [{grey.min()}, {grey.max()}]; "
                             "zsiqa reads mode I as 16-bit (0..65535): save it as 8- or 16-bit")
        return np.repeat((grey.astype(np.float32) / 65535.0)[..., None], 3, axis=2)
    if im.mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        if not np.isfinite(grey).all() or (grey.size and (grey.min() < 0 or grey.max() > 1)):
            raise InputError(f"{source}: float image with values outside [0, 1] (or NaN/Inf); zsiqa reads mode F as "
                             "[0, 1]: rescale it or save it as 8- or 16-bit")
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: str | Path, exif: str = "apply") -> Image.Image:
    """An image file as an 8-bit RGB PIL image (for PIL-based transforms); 16-bit images are rounded to 8 bits.

    ``read_image`` keeps 16-bit precision; for 8-bit files the two give the same pixels."""
    im = open_image(path, exif)
    if im.mode in WIDE_MODES:
        return Image.fromarray(np.rint(image_to_array(im, str(path)) * 255).astype(np.uint8))
    return im.convert("RGB")


def read_image(path: str | Path, exif: str = "apply", as_uint8: bool = False) -> torch.Tensor:
    """An image file as ``[3, H, W]`` float32 in [0, 1] (full 16-bit precision where the file has it); with
    ``as_uint8``, 8-bit images come as uint8 0..255 instead (``to_float`` gives the float32 values)."""
    return pil_to_tensor(open_image(path, exif), str(path), as_uint8)


def pil_to_tensor(im: Image.Image, source: str = "image", as_uint8: bool = False) -> torch.Tensor:
    """PIL -> ``[3, H, W]`` float32 in [0, 1] (torchvision ``ToTensor`` semantics, no normalisation; any mode), or
    with ``as_uint8`` uint8 for 8-bit modes (16-bit, I and F images stay float32: they hold more than 8 bits)."""
    if as_uint8 and im.mode not in WIDE_MODES:
        arr = np.array(im.convert("RGB"))  # a writable copy: torch.from_numpy warns on PIL's read-only view
    else:
        arr = image_to_array(im, source)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Images from ``as_uint8`` decoding as float32 in [0, 1] (``x / 255``, bit for bit the values ``read_image``
    gives); float tensors are returned as they are."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def to_batch(x: ImageLike | Sequence[ImageLike], name: str = "image", exif: str = "apply") -> torch.Tensor:
    """Accept a path, PIL image, ``[3,H,W]`` / ``[N,3,H,W]`` tensor, or a list of those (same size) -> ``[N,3,H,W]``
    float32. ``name`` (the argument, e.g. ``ref``) is named in every error; ``exif`` applies to files."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise InputError(f"{name}: empty list, give at least one image")
        parts = [to_batch(e, name, exif) for e in x]
        sizes = {tuple(p.shape[-2:]) for p in parts}
        if len(sizes) > 1:
            raise InputError(f"{name}: images in one batch must share a size, got {sorted(sizes)}")
        return torch.cat(parts)
    if isinstance(x, (str, Path)):
        return read_image(x, exif)[None]
    if isinstance(x, Image.Image):
        return pil_to_tensor(x)[None]
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a path, PIL image or tensor, got {type(x).__name__}")
    return check_tensor(x, name)


def check_tensor(x: torch.Tensor, name: str) -> torch.Tensor:
    """A valid image batch ``[N, 3, H, W]`` float32 in [0, 1], or an ``InputError`` naming ``name`` and the fix."""
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        hint = ""
        if x.ndim == 4 and x.shape[-1] == 3 or x.ndim == 3 and x.shape[-1] == 3:
            hint = " (channels last? use x.permute(0, 3, 1, 2))"
        elif x.ndim == 4 and x.shape[1] == 1 or x.ndim == 2:
            hint = " (greyscale? repeat it to 3 channels: x.expand(-1, 3, -1, -1))"
        raise InputError(f"{name}: expected [N, 3, H, W] RGB, got shape {tuple(x.shape)}{hint}")
    if x.shape[0] == 0:
        raise InputError(f"{name}: empty batch (N=0), give at least one image")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise InputError(f"{name}: empty image, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a float tensor in [0, 1], got {x.dtype} (divide uint8 images by 255)")
    x = x.float()
    # min and max carry NaN and Inf along: a whole-tensor isfinite() would take 1.6x the image in temporaries
    lo, hi = (float(v) for v in torch.aminmax(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"{name}: tensor holds NaN or Inf values ({int((~torch.isfinite(x)).sum())} of {x.numel()})")
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(f"{name}: values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}] "
                         "(undo any mean/std normalisation)")
    return x
