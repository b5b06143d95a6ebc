"""The bad-input corpus, generated at run time (no committed binaries): every unusual image file a user may hand
over, and ``cli`` to run ``zsiqa`` in process. Shared by the io, data and entry-point tests (``files`` fixture)."""

import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from zsiqa.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent
CLI = ["--backbone", "efficientnet_lite0", "--random-init", "--device", "cpu"]




def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write one): signature, IHDR (bit depth 16, colour type 2), IDAT, IEND."""
    h, w, _ = arr.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``zsiqa`` in process: (exit code, stdout, stderr)."""
    code = cli_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def build_corpus(root: Path) -> dict[str, Path]:
    """The corpus of image files, written under ``root``: every unusual kind of file a user may hand over."""
    out: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        out[name] = root / name
        out[name].write_bytes(data)

    base = Image.fromarray(rgb(24, 40))
    put("ok.png", encoded(base, "PNG"))
    put("ok2.png", encoded(Image.fromarray(rgb(24, 40, seed=1)), "PNG"))
    put("empty.png", b"")
    put("text.png", b"this is a text file, not an image\n")
    for fmt, ext in (("BMP", "bmp"), ("JPEG", "jpg"), ("PNG", "png")):
        full = encoded(base, fmt)
        put(f"full.{ext}", full)
        put(f"truncated.{ext}", full[: len(full) // 2])
    grey16 = np.clip(np.rint(0.45 * 65535 + np.random.default_rng(2).normal(0, 3000, (24, 40))), 0, 65535)
    put("grey16.png", encoded(Image.fromarray(grey16.astype(np.uint16)), "PNG"))
    put("rgb16.png", png16_rgb(np.random.default_rng(3).integers(0, 65536, (24, 40, 3)).astype(np.uint16)))
    put("cmyk.jpg", encoded(base.convert("CMYK"), "JPEG", quality=95))
    rgba = np.concatenate([rgb(24, 40), np.random.default_rng(4).integers(0, 256, (24, 40, 1), dtype=np.uint8)], axis=2)
    put("rgba.png", encoded(Image.fromarray(rgba, "RGBA"), "PNG"))
    put("la.png", encoded(Image.fromarray(rgba[..., 2:], "LA"), "PNG"))
    put("p.png", encoded(base.convert("P"), "PNG"))
    put("bit.png", encoded(base.convert("1"), "PNG"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    put("exif6.jpg", encoded(base, "JPEG", quality=90, exif=exif.tobytes()))
    put("noexif.jpg", encoded(base, "JPEG", quality=90))
    for h, w in ((1, 1), (8, 8), (223, 500)):
        put(f"{h}x{w}.png", encoded(Image.fromarray(rgb(h, w, seed=h)), "PNG"))
    put("small.png", encoded(Image.fromarray(rgb(16, 40)), "PNG"))
    return out


def decode_message(name: str, path: Path, files: dict[str, Path]) -> str:
    """The documented message for each undecodable file, as a regular expression."""
    p = re.escape(str(path))
    if name == "truncated.bmp":
        missing = files["full.bmp"].stat().st_size - path.stat().st_size
        return rf"truncated BMP: {p} \({missing} bytes missing: the header says \d+, the file has {path.stat().st_size}\)"
    return {
        "empty.png": rf"empty file \(0 bytes\), not an image: {p}",
        "text.png": rf"not an image \(Pillow cannot identify its format\): {p}",
        "truncated.jpg": rf"truncated JPEG: {p} \(image file is truncated",
        "truncated.png": rf"truncated PNG: {p} \(image file is truncated",
    }[name]
