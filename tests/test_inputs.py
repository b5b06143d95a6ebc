"""The bad-input corpus: every unusual file, tensor and dataset folder has one defined, tested outcome.

Everything is generated here (no committed binaries). Each case asserts the documented value, or the error class
and a message naming the file / line / argument, through the API and the ``zsiqa`` command line (in process for the
whole corpus, in a subprocess for the exit codes and the absence of tracebacks). The ``evaluate.py`` cases sit in one
function at the end, behind ``run_evaluate``.
"""
import csv
import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from zsiqa.cli import main as cli_main
from zsiqa.data import read_dataset
from zsiqa.distances import get_distance
from zsiqa.errors import DataError, InputError, MissingFileError
from zsiqa.io import load_image, pil_to_tensor, read_image, to_batch, to_float
from zsiqa.metric import FRMetric
from zsiqa.windows import pad_to_window

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


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The corpus of image files."""
    root = tmp_path_factory.mktemp("corpus")
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


@pytest.fixture
def metric(tiny_backbone):
    return FRMetric(tiny_backbone, get_distance("l2"), preset="paper")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``zsiqa`` in process: (exit code, stdout, stderr)."""
    code = cli_main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------------ decode errors

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


UNDECODABLE = ["empty.png", "text.png", "truncated.bmp", "truncated.jpg", "truncated.png"]


@pytest.mark.parametrize("name", UNDECODABLE)
def test_undecodable_file_is_an_input_error_naming_it(files, metric, capsys, name):
    path = files[name]
    message = decode_message(name, path, files)
    for call in (lambda: read_image(path), lambda: load_image(path), lambda: to_batch(str(path), "ref"),
                 lambda: metric(files["ok.png"], path)):
        with pytest.raises(InputError, match=message):
            call()
    code, out, err = cli(capsys, "score", str(files["ok.png"]), str(path), *CLI)
    assert code == 1 and out == "" and re.fullmatch(f"zsiqa: error: {message}[^\n]*\n", err)


def test_missing_file_is_a_missing_file_error(files, metric, capsys, tmp_path):
    with pytest.raises(MissingFileError, match=f"image not found: {re.escape(str(tmp_path / 'nope.png'))}"):
        metric(files["ok.png"], tmp_path / "nope.png")
    code, _, err = cli(capsys, "score", str(tmp_path / "nope.png"), str(files["ok.png"]), *CLI)
    assert (code, err) == (1, f"zsiqa: error: image not found: {tmp_path / 'nope.png'}\n")


# ------------------------------------------------------------------------------------------------ image modes

def test_16_bit_grey_png_is_scaled_by_65535(files, metric, capsys):
    with Image.open(files["grey16.png"]) as im:
        assert im.mode == "I;16"
        stored = np.asarray(im).astype(np.float32) / 65535.0
    x = read_image(files["grey16.png"])
    assert x.shape == (3, 24, 40) and torch.equal(x[1], torch.from_numpy(stored)) and torch.equal(x[0], x[2])
    assert float(x.mean()) == pytest.approx(0.45, abs=2e-3)
    eight_bit = pil_to_tensor(load_image(files["grey16.png"]))  # the PIL path of the transforms: rounded to 8 bits
    assert (eight_bit - x).abs().max() <= 0.5 / 255 + 1e-6
    assert float(metric(files["grey16.png"], files["grey16.png"])[0]) == 0.0
    code, out, _ = cli(capsys, "score", str(files["grey16.png"]), str(files["grey16.png"]), *CLI, "-q")
    assert (code, float(out)) == (0, 0.0)


def test_16_bit_and_float_pil_modes(tmp_path):
    arr = np.random.default_rng(5).integers(0, 65536, (6, 9)).astype(np.uint16)
    want = torch.from_numpy(arr.astype(np.float32) / 65535.0)
    big_endian = Image.frombytes("I;16B", (9, 6), arr.astype(">u2").tobytes())
    for im in (big_endian, Image.fromarray(arr), Image.fromarray(arr.astype(np.int32))):  # I;16B, I;16, I
        x = pil_to_tensor(im)
        assert x.shape == (3, 6, 9) and torch.equal(x[0], want) and torch.equal(x[2], want), im.mode
    with pytest.raises(InputError, match=r"32-bit integer image with values in \[-1, 70000\]"):
        pil_to_tensor(Image.fromarray(np.array([[-1, 70000]], dtype=np.int32)))
    floats = np.random.default_rng(6).random((6, 9)).astype(np.float32)
    assert torch.equal(pil_to_tensor(Image.fromarray(floats))[1], torch.from_numpy(floats))
    Image.fromarray(floats * 255).save(tmp_path / "f.tif")
    with pytest.raises(InputError, match=rf"{re.escape(str(tmp_path / 'f.tif'))}: float image with values outside \[0, 1\]"):
        read_image(tmp_path / "f.tif")


def test_16_bit_rgb_png_keeps_the_high_byte(files):
    """Pillow decodes 16-bit RGB PNGs to 8 bits per channel (the high byte): v / 65535 to 8-bit precision."""
    arr = np.random.default_rng(3).integers(0, 65536, (24, 40, 3)).astype(np.uint16)
    x = read_image(files["rgb16.png"])
    assert torch.equal(x, torch.from_numpy((arr >> 8).astype(np.float32) / 255.0).permute(2, 0, 1))
    assert (x - torch.from_numpy(arr / 65535).permute(2, 0, 1).float()).abs().max() < 1 / 255


@pytest.mark.parametrize("name,mode", [("cmyk.jpg", "CMYK"), ("p.png", "P"), ("bit.png", "1"), ("full.bmp", "RGB"),
                                       ("full.jpg", "RGB")])
def test_8_bit_modes_are_pillows_rgb_conversion(files, name, mode):
    """CMYK, palette, 1-bit and 8-bit RGB: exactly ``Image.open().convert("RGB") / 255``, as the official code."""
    with Image.open(files[name]) as im:
        assert im.mode == mode
        want = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    assert torch.equal(read_image(files[name]), want)
    if mode == "1":
        assert set(read_image(files[name]).unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", ["cmyk.jpg", "p.png", "bit.png", "full.bmp", "rgba.png", "grey16.png"])
def test_loader_keeps_8_bit_images_as_uint8_with_the_same_float_values(files, name):
    """The engine's loader decodes 8-bit images to uint8 (a quarter of the memory); ``to_float`` gives exactly the
    float32 ``read_image`` does. 16-bit images stay float32 (their extra bits are kept)."""
    x = read_image(files[name], as_uint8=True)
    assert x.dtype == (torch.float32 if name == "grey16.png" else torch.uint8)
    assert torch.equal(to_float(x), read_image(files[name]))
    every = torch.arange(256, dtype=torch.uint8).view(1, 16, 16).expand(3, 16, 16)
    assert torch.equal(to_float(every), pil_to_tensor(Image.fromarray(every.permute(1, 2, 0).numpy())))


def test_the_uint8_loader_prints_no_warning(files):
    """PIL's array view is read-only, and ``torch.from_numpy`` warns about it on stderr; the loader copies it. In a
    fresh process: PyTorch prints that warning once per process, so an earlier test could hide it here."""
    code = "import sys; from zsiqa.io import read_image; read_image(sys.argv[1], as_uint8=True)"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code, str(files["ok.png"])],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_batch_mixing_8_and_16_bit_images_is_stacked_as_floats(files):
    from zsiqa.data.datamodule import collate_pairs

    eight, sixteen = read_image(files["ok.png"], as_uint8=True), read_image(files["grey16.png"], as_uint8=True)
    assert eight.shape == sixteen.shape
    samples = [{"index": i, "ref": eight, "dis": d, "label": 1.0, "ref_id": "r", "error": ""}
               for i, d in enumerate((eight, sixteen))]
    (group,) = collate_pairs(samples)
    assert group["dis"].dtype == torch.float32
    assert torch.equal(group["dis"][0], read_image(files["ok.png"])) and torch.equal(group["dis"][1], sixteen)


def test_alpha_is_dropped_not_composited(files):
    rgba = np.concatenate([rgb(24, 40), np.random.default_rng(4).integers(0, 256, (24, 40, 1), dtype=np.uint8)], axis=2)
    x = read_image(files["rgba.png"])
    assert torch.equal(x, torch.from_numpy(rgba[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1))
    la = read_image(files["la.png"])
    assert torch.equal(la[0], torch.from_numpy(rgba[..., 2].astype(np.float32) / 255.0)) and torch.equal(la[0], la[1])


def test_exif_orientation_applied_by_default_ignored_by_the_paper_preset(files, capsys, tiny_backbone):
    raw, plain = read_image(files["exif6.jpg"], exif="ignore"), read_image(files["noexif.jpg"])
    assert raw.shape == (3, 24, 40) and torch.equal(raw, plain)  # same encoder, same pixels: only the tag differs
    with Image.open(files["exif6.jpg"]) as im:
        rotated = pil_to_tensor(ImageOps.exif_transpose(im))
    applied = read_image(files["exif6.jpg"])
    assert applied.shape == (3, 40, 24) and torch.equal(applied, rotated)
    assert torch.equal(applied, torch.rot90(raw, -1, dims=(1, 2)))  # 6 = displayed rotated 90 degrees clockwise

    backbone = tiny_backbone
    paper = FRMetric(backbone, get_distance("l2"), preset="paper")  # exif=auto -> ignore, as the official code
    assert paper.exif == "ignore" and float(paper(files["exif6.jpg"], files["noexif.jpg"])[0]) == 0.0
    fixed = FRMetric(backbone, get_distance("l2"), preset="fixed")  # exif=auto -> apply
    assert fixed.exif == "apply"
    with pytest.raises(InputError, match=r"differ in size"):
        fixed(files["exif6.jpg"], files["noexif.jpg"])
    assert FRMetric(backbone, get_distance("l2"), preset="paper", exif="apply").exif == "apply"

    pair = (str(files["exif6.jpg"]), str(files["noexif.jpg"]))
    code, out, _ = cli(capsys, "score", *pair, *CLI, "-q")  # preset paper: EXIF ignored
    assert (code, float(out)) == (0, 0.0)
    code, _, err = cli(capsys, "score", *pair, *CLI, "--exif", "apply")  # 24x40 against 40x24
    assert code == 1 and "(40, 24) and distorted (24, 40) images differ in size" in err


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (223, 500)])
def test_images_smaller_than_the_window_are_zero_padded(files, metric, capsys, size):
    """TinyViT's window is 32 px: smaller sides are zero-padded at the bottom/right, both images alike."""
    path = files[f"{size[0]}x{size[1]}.png"]
    x = read_image(path)[None]
    assert x.shape[-2:] == size
    half = x * 0.5
    score = metric(x, half)
    assert score.shape == (1,) and torch.isfinite(score).all()
    if max(size) <= 32:
        assert torch.equal(score, metric(pad_to_window(x, 32), pad_to_window(half, 32)))
    assert float(metric(path, path)[0]) == 0.0
    if size == (1, 1):
        code, out, _ = cli(capsys, "score", str(path), str(path), *CLI, "-q")  # whole-image CNN: any size >= 1 px
        assert (code, float(out)) == (0, 0.0)


def test_size_mismatch_names_every_way_to_resize(files, metric, capsys):
    with pytest.raises(InputError, match=r"reference \(24, 40\) and distorted \(16, 40\) images differ in size") as err:
        metric(files["ok.png"], files["small.png"])
    assert "align='resize' in create_metric, --align resize in zsiqa score, align=resize in evaluate.py" in str(err.value)
    resized = FRMetric(metric.backbone, metric.distance, preset="paper", align="resize")
    assert torch.isfinite(resized(files["ok.png"], files["small.png"])).all()
    code, _, err = cli(capsys, "score", str(files["ok.png"]), str(files["small.png"]), *CLI)
    assert code == 1 and err.count("\n") == 1 and "--align resize in zsiqa score" in err


# ------------------------------------------------------------------------------------------------ tensors

def test_bad_tensors_are_input_errors_naming_the_argument(metric):
    good = torch.rand(2, 3, 32, 32)
    nan, inf = good.clone(), good.clone()
    nan[0, 0, 0, 0], inf[1, 2, 3, 4] = float("nan"), float("inf")
    cases = [
        (nan, "ref", r"ref: tensor holds NaN or Inf values \(1 of 6144\)"),
        (inf, "dis", r"dis: tensor holds NaN or Inf values \(1 of 6144\)"),
        (good * 2 - 0.5, "dis", r"dis: values must lie in \[0, 1\], got \[-0.\d+, 1.\d+\] \(undo any mean/std"),
        ((good * 255).to(torch.uint8), "ref", r"ref: expected a float tensor in \[0, 1\], got torch.uint8 \(divide uint8"),
        (good.long(), "dis", r"dis: expected a float tensor in \[0, 1\], got torch.int64"),
        (good[0, 0], "ref", r"ref: expected \[N, 3, H, W\] RGB, got shape \(32, 32\) \(greyscale\? repeat it"),
        (good[:, :1], "ref", r"ref: expected \[N, 3, H, W\] RGB, got shape \(2, 1, 32, 32\) \(greyscale\?"),
        (good.permute(0, 2, 3, 1), "dis", r"dis: expected \[N, 3, H, W\] RGB, got shape \(2, 32, 32, 3\) \(channels last\?"),
        (torch.rand(2, 4, 32, 32), "dis", r"dis: expected \[N, 3, H, W\] RGB, got shape \(2, 4, 32, 32\)$"),
        (good[None], "ref", r"ref: expected \[N, 3, H, W\] RGB, got shape \(1, 2, 3, 32, 32\)$"),
        (good[:0], "ref", r"ref: empty batch \(N=0\), give at least one image"),
        (good[:0], "dis", r"dis: empty batch \(N=0\), give at least one image"),
        ([], "dis", r"dis: empty list, give at least one image"),
        (good.numpy(), "ref", r"ref: expected a path, PIL image or tensor, got ndarray"),
    ]
    for bad, arg, message in cases:
        with pytest.raises(InputError, match=message):
            metric(bad, good) if arg == "ref" else metric(good, bad)
    with pytest.raises(InputError, match="got 2 references for 3 distorted images; give 1 or the same number"):
        metric(good, torch.rand(3, 3, 32, 32))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_tensors_are_converted_to_float32(metric, dtype):
    ref, dis = torch.rand(1, 3, 32, 32).to(dtype), torch.rand(1, 3, 32, 32).to(dtype)
    assert to_batch(ref).dtype == torch.float32
    assert torch.equal(metric(ref, dis), metric(ref.float(), dis.float()))


# ------------------------------------------------------------------------------------------------ dataset folders

def tid_folder(root: Path, lines: list[str], missing: tuple[str, ...] = ()) -> Path:
    """A TID2013 layout with reference I01 and distorted i01_01_1..3 (8x8 BMPs) and the given label lines."""
    (root / "reference_images").mkdir(parents=True)
    (root / "distorted_images").mkdir()
    Image.fromarray(rgb(8, 8)).save(root / "reference_images" / "I01.BMP")
    for level in (1, 2, 3):
        name = f"i01_01_{level}.bmp"
        if name not in missing:
            Image.fromarray(rgb(8, 8, seed=level)).save(root / "distorted_images" / name)
    (root / "mos_with_names.txt").write_text("".join(f"{line}\n" for line in lines))
    return root


GOOD = ["5.1 i01_01_1.bmp", "4.2 i01_01_2.bmp", "3.3 i01_01_3.bmp"]


def test_tid2013_label_file_cases(tmp_path):
    def read(name: str, lines: list[str], **kw):
        root = tid_folder(tmp_path / name, lines, **kw)
        return read_dataset("tid2013", root, strict=False), re.escape(str(root / "mos_with_names.txt"))

    items, _ = read("good", GOOD)
    assert [i.label for i in items] == [5.1, 4.2, 3.3]
    with pytest.raises(DataError, match=r"mos_with_names.txt:2: malformed label line '4.2'; expected"):
        read("malformed", [GOOD[0], "4.2", GOOD[2]])
    with pytest.raises(DataError, match=r"mos_with_names.txt:2: malformed label line 'nan i01_01_2.bmp'; expected a "
                                        r"finite number as the label, not 'nan'"):
        read("nan", [GOOD[0], "nan i01_01_2.bmp", GOOD[2]])
    with pytest.raises(DataError, match=r"mos_with_names.txt:2: malformed label line 'inf i01_01_2.bmp'"):
        read("inf", [GOOD[0], "inf i01_01_2.bmp", GOOD[2]])
    root = tmp_path / "dup"
    with pytest.raises(DataError) as err:
        read("dup", [GOOD[0], GOOD[1], GOOD[0]])
    label = root / "mos_with_names.txt"
    assert str(err.value) == (f"TID2013: {label}:3: duplicated label line '5.1 i01_01_1.bmp' (first at {label}:1); "
                              "remove one of them")
    with pytest.raises(DataError, match=r"mos_with_names.txt:3: pair \(I01.BMP, I01_01_1.BMP\) listed twice: "
                                        r"'5.1 i01_01_1.bmp' and '2.0 I01_01_1.BMP' \(first at .*mos_with_names.txt:1\)"):
        read("dup_pair", [GOOD[0], GOOD[1], "2.0 I01_01_1.BMP"])
    for name, lines in (("empty", []), ("blank", ["", "   "])):
        with pytest.raises(DataError, match=rf"TID2013: .*{name}/mos_with_names.txt lists no pairs \(empty label file\)"):
            read(name, lines)
    with pytest.raises(MissingFileError, match=r"mos_with_names.txt:2: distorted image 'i01_01_2.bmp' not found in"):
        read("missing", GOOD, missing=("i01_01_2.bmp",))
    with pytest.raises(DataError, match=r"to read a subset set data.strict=false \(strict=False in read_dataset"):
        read_dataset("tid2013", tmp_path / "good")


def test_kadid_duplicated_row_names_both_csv_lines(tmp_path):
    root = tmp_path / "kadid"
    (root / "images").mkdir(parents=True)
    for name in ("I01.png", "I01_01_01.png", "I01_01_02.png"):
        Image.fromarray(rgb(8, 8)).save(root / "images" / name)
    rows = ["dist_img,ref_img,dmos,var", "I01_01_01.png,I01.png,4.5,0.1", "I01_01_02.png,I01.png,3.5,0.1",
            "I01_01_01.png,I01.png,4.0,0.1"]
    (root / "dmos.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"dmos.csv:4: pair \(I01.png, I01_01_01.png\) listed twice: "
                                        r"'I01_01_01.png,I01.png,4.5,0.1' and 'I01_01_01.png,I01.png,4.0,0.1' "
                                        r"\(first at .*dmos.csv:2\)"):
        read_dataset("kadid10k", root, strict=False)
    (root / "dmos.csv").write_text(rows[0] + "\n")
    with pytest.raises(DataError, match=r"KADID-10k: .*dmos.csv lists no pairs"):
        read_dataset("kadid10k", root, strict=False)


def test_a_pair_that_fails_to_load_carries_its_error_to_the_main_process(files, tmp_path):
    from zsiqa.data import PairDataset, PairItem
    from zsiqa.data.datamodule import collate_pairs, failed_groups

    items = [PairItem(index=k, ref=files["ok.png"], dis=files[name], label=1.0, label_lower_better=True, dist_type="t",
                      ref_id="ok") for k, name in enumerate(["ok2.png", "truncated.png", "ok2.png"])]
    items.append(PairItem(index=3, ref=files["ok.png"], dis=tmp_path / "gone.png", label=1.0, label_lower_better=True,
                          dist_type="t", ref_id="ok"))
    batch = [PairDataset(items)[k] for k in range(4)]
    assert [bool(s["error"]) for s in batch] == [False, True, False, True] and batch[1]["ref"] is None
    assert re.match(decode_message("truncated.png", files["truncated.png"], files), batch[1]["error"])
    assert batch[3]["error"] == f"image not found: {tmp_path / 'gone.png'}"
    groups = collate_pairs(batch)
    hint = " (data.on_bad_image=skip records such pairs as failed and goes on)"
    with pytest.raises(InputError, match=r"truncated PNG: .*truncated.png .*\(data.on_bad_image=skip records"):
        failed_groups(groups, "error", hint)  # what evaluation meets
    loaded, failed = failed_groups(groups, "skip")
    assert [g["index"] for g in loaded] == [[0, 2]] and [g["index"] for g in failed] == [[1], [3]]
    with pytest.raises(InputError, match=r"^truncated PNG: .*truncated.png \(image file is truncated[^)]*\); the file"):
        failed_groups(groups)  # what train.py's term computation meets: the file named, no skip hint


# ------------------------------------------------------------------------------------------------ subprocesses

def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zsiqa.cli", *args], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_cli_subprocess_exit_codes_and_no_traceback(files):
    bmp = files["truncated.bmp"]
    proc = run_cli("score", str(files["ok.png"]), str(bmp), *CLI)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert re.fullmatch(f"zsiqa: error: {decode_message('truncated.bmp', bmp, files)}\n", proc.stderr)
    proc = run_cli("score", str(files["ok.png"]), str(files["ok.png"]), "--backbone", "nope", "--random-init")
    assert proc.returncode == 2 and proc.stderr.startswith("zsiqa: error: unknown backbone 'nope'; available:")
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    proc = run_cli("--debug", "score", str(files["text.png"]), str(files["ok.png"]), *CLI)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "zsiqa.errors.InputError: not an image" in proc.stderr


def test_cli_usage_and_config_errors_exit_2(files, capsys, monkeypatch):
    code, _, err = cli(capsys, "score", str(files["ok.png"]), str(files["ok.png"]), *CLI, "--distance", "l3")
    assert code == 2 and err.startswith("zsiqa: error: unknown distance 'l3'; available:") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:  # argparse: a usage error
        cli_main(["score", "a.png", "b.png", "--preset", "bogus"])
    assert exit_.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    monkeypatch.setenv("ZSIQA_DEBUG", "1")  # expected errors propagate with their traceback
    with pytest.raises(InputError, match="empty file"):
        cli_main(["score", str(files["empty.png"]), str(files["ok.png"]), *CLI])


# ------------------------------------------------------------------------------------------------ evaluate.py

def run_evaluate(capsys, *args: str) -> tuple[int, str]:
    """``python evaluate.py ARGS`` behind its entry point's error boundary -> (exit code, stderr).

    The one place these tests reach evaluate.py: re-point it when the entry point changes (e.g. to a subprocess).
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("evaluate_entry_point", REPO / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    code = module.main(list(args))  # the entry point's own boundary: one line, exit code
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    """The entry point's one error line (Lightning's INFO lines and the progress bar share stderr)."""
    assert err.count("evaluate.py: error: ") == 1, err
    return "evaluate.py: error: " + err.split("evaluate.py: error: ")[1].rstrip("\n")


def demo_folder(root: Path, dis: dict[str, bytes], rows: list[tuple[str, str]] | None = None) -> Path:
    """A demo-layout dataset: ref/r0.png (32x32) and the given distorted files, labels 1, 2, ... in meta.csv."""
    (root / "ref").mkdir(parents=True)
    (root / "dis").mkdir()
    Image.fromarray(rgb(32, 32)).save(root / "ref" / "r0.png")
    for name, data in dis.items():
        (root / "dis" / name).write_bytes(data)
    rows = rows or [("ref/r0.png", f"dis/{name}") for name in dis]
    text = "ref_name,dist_name,score,dist_type,level\n" + "".join(
        f"{r},{d},{k + 1},t,{k + 1}\n" for k, (r, d) in enumerate(rows))
    (root / "meta.csv").write_text(text)
    return root


def test_evaluate_py_bad_images_and_labels(tmp_path, capsys):
    """Dataset cases through evaluate.py: a corrupt image mid-run, data.on_bad_image=skip, a wrong-size distorted
    image, a duplicated label line."""
    png = {f"d{k}.png": encoded(Image.fromarray(rgb(32, 32, seed=k)), "PNG") for k in range(4)}
    png["d2.png"] = png["d2.png"][:200]  # truncated, third of four pairs
    root = demo_folder(tmp_path / "data", png)
    common = ["backbone=efficientnet_lite0", "backbone.pretrained=false", "distance=[l2]", "baselines=[]", "data=demo",
              f"data.root={root}", "data.strict=false", f"run.out={tmp_path / 'runs'}", "run.accelerator=cpu",
              "run.batch_size=2"]
    bad = root / "dis" / "d2.png"

    code, err = run_evaluate(capsys, *common, "run.num_workers=1", "run.name=stop")  # raised in the main process
    last = error_line(err)
    assert code == 1 and "Traceback" not in err and "\n" not in last and "\nevaluate.py: error: " in err
    assert last.startswith(f"evaluate.py: error: truncated PNG: {bad} (") and "data.on_bad_image=skip" in last

    code, err = run_evaluate(capsys, *common, "run.num_workers=0", "run.name=skip", "data.on_bad_image=skip")
    assert code == 0, err
    with open(tmp_path / "runs" / "skip" / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["index"] for r in rows] == ["0", "1", "2", "3"] and list(rows[0])[-1] == "error"
    assert rows[2]["l2"] == "" and rows[2]["error"].startswith(f"truncated PNG: {bad} (")
    assert all(float(r["l2"]) > 0 and r["error"] == "" for k, r in enumerate(rows) if k != 2)
    summary = json.loads((tmp_path / "runs" / "skip" / "summary.json").read_text())["metrics"]["l2"]
    assert (summary["n_scored"], summary["n_failed"], summary["failed_indices"]) == (3, 1, [2])
    assert summary["failed_reasons"] == {"2": rows[2]["error"]}

    sizes = demo_folder(tmp_path / "sizes", {"d0.png": png["d0.png"], "d1.png": encoded(Image.fromarray(rgb(24, 32)), "PNG")})
    args = [*common[:5], f"data.root={sizes}", *common[6:], "run.num_workers=0"]
    code, err = run_evaluate(capsys, *args, "run.name=sizes")
    assert code == 1 and error_line(err).startswith(
        f"evaluate.py: error: {sizes / 'dis' / 'd1.png'}: reference (32, 32) and distorted (24, 32) images differ in size")
    code, err = run_evaluate(capsys, *args, "run.name=sizes_skip", "data.on_bad_image=skip")
    assert code == 0, err
    summary = json.loads((tmp_path / "runs" / "sizes_skip" / "summary.json").read_text())["metrics"]["l2"]
    assert summary["n_failed"] == 1 and summary["failed_reasons"]["1"].startswith(f"{sizes / 'dis' / 'd1.png'}: ")

    dup = demo_folder(tmp_path / "dup", {"d0.png": png["d0.png"]}, rows=[("ref/r0.png", "dis/d0.png")] * 2)
    code, err = run_evaluate(capsys, *common[:5], f"data.root={dup}", *common[6:], "run.name=dup")
    meta = dup / "meta.csv"
    assert code == 1 and error_line(err) == (
        f"evaluate.py: error: demo: {meta}:3: pair (ref/r0.png, dis/d0.png) listed twice: 'ref/r0.png,dis/d0.png,1,t,1' "
        f"and 'ref/r0.png,dis/d0.png,2,t,2' (first at {meta}:2); remove one of them")
