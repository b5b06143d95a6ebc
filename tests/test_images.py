"""Image decoding and tensor checks (zsiqa.images): every unusual file and tensor has one defined outcome, through the
API and the ``zsiqa`` command line; the error names the file or argument."""
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from corpus import CLI, cli, decode_message, rgb
from PIL import Image, ImageOps

from zsiqa.distances import get_distance
from zsiqa.errors import InputError, MissingFileError
from zsiqa.images import load_image, pil_to_tensor, read_image, to_batch, to_float
from zsiqa.metric import FRMetric
from zsiqa.windows import pad_to_window

# ------------------------------------------------------------------------------------------------ decode errors

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
    code = "import sys; from zsiqa.images import read_image; read_image(sys.argv[1], as_uint8=True)"
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
