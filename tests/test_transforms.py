"""Pair transforms: the paper's robustness protocol exactly, the fixed variants, and the geometry of the disparity suite."""
import numpy as np
import pytest
from PIL import Image

from zsiqa.presets import PRESETS
from zsiqa.transforms import TRANSFORMS, elastic_field, make_transform, perspective_coefficients

BILINEAR = Image.Resampling.BILINEAR


def _noise(w: int, h: int, seed: int = 0, low: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(low, 256, (h, w, 3), dtype=np.uint8))


def _dot(w: int, h: int, x: int, y: int) -> Image.Image:
    a = np.zeros((h, w), np.uint8)
    a[y, x] = 255
    return Image.fromarray(a)


def _column_index_image(w: int, h: int) -> Image.Image:
    """RGB image encoding the column index (R + 256 G), so crops and shifts can be read off the pixels."""
    x = np.tile(np.arange(w), (h, 1))
    return Image.fromarray(np.stack([x % 256, x // 256, np.zeros_like(x)], -1).astype(np.uint8))


def _columns(img: Image.Image) -> np.ndarray:
    a = np.asarray(img).astype(np.int64)
    return a[..., 0] + 256 * a[..., 1]


def _centroid(img: Image.Image) -> tuple[float, float]:
    a = np.asarray(img, dtype=np.float64)
    ys, xs = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    return float((a * xs).sum() / a.sum()), float((a * ys).sum() / a.sum())


def _bright_pixels(img: Image.Image) -> list[tuple[int, int]]:
    return [(int(x), int(y)) for y, x in np.argwhere(np.asarray(img) > 127)]


# ---- paper protocol ----

def test_paper_tra_crops_both_images():
    img = _column_index_image(288, 10)
    ref, dis = make_transform("tra", 1, "paper")(img, img)  # off = ceil(2.88) = 3
    assert ref.size == dis.size == (285, 10)
    np.testing.assert_array_equal(_columns(ref)[0, [0, -1]], [0, 284])  # box (0, 0, 285, H): ref is changed
    np.testing.assert_array_equal(_columns(dis)[0, [0, -1]], [3, 287])  # box (3, 0, 288, H)


@pytest.mark.parametrize(("w", "off"), [(768, 8), (512, 6)])
def test_paper_tra_offsets_on_live_and_tid_widths(w, off):
    ref, dis = make_transform("tra", 1, "paper")(_column_index_image(w, 2), _noise(w, 2))
    assert ref.size == dis.size == (w - off, 2)


def test_paper_sca_resizes_to_292_then_crops_back():
    img = _noise(288, 288)
    ref, dis = make_transform("sca", 1, "paper")(img, img)
    expected = img.resize((292, 292), BILINEAR).crop((2, 2, 290, 290))  # dW = dH = 2*ceil(1.44) = 4
    assert dis.size == (288, 288)
    np.testing.assert_array_equal(np.asarray(dis), np.asarray(expected))
    np.testing.assert_array_equal(np.asarray(ref), np.asarray(img))


def test_paper_sca_odd_size_crops_one_pixel_more_and_resamples():
    img = _noise(101, 51)  # dW = 2*ceil(0.505) = 2, dH = 2*ceil(0.255) = 2
    _, dis = make_transform("sca", 1, "paper")(img, img)
    big = img.resize((103, 53), BILINEAR)  # cx, cy = 51, 26; box (51-51, 26-26, 51+51, 26+26)
    expected = big.crop((0, 0, 102, 52)).resize((101, 51), BILINEAR)
    np.testing.assert_array_equal(np.asarray(dis), np.asarray(expected))


def test_paper_rot_is_nearest_with_black_corners():
    img = _noise(288, 192, low=1)  # no zeros in the input, so a 0 can only come from the black fill
    ref, dis = make_transform("rot", 1, "paper")(img, img)
    out = np.asarray(dis)
    assert dis.size == img.size
    assert set(np.unique(out)) <= set(np.unique(np.asarray(img))) | {0}
    for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        np.testing.assert_array_equal(out[y, x], [0, 0, 0])
    np.testing.assert_array_equal(np.asarray(dis), np.asarray(img.rotate(-1)))
    np.testing.assert_array_equal(np.asarray(ref), np.asarray(img))


# ---- fixed protocol ----

def test_fixed_tra_shifts_dis_right_and_keeps_ref():
    img = _column_index_image(288, 4)
    ref, dis = make_transform("tra", 1, "fixed")(img, img)
    assert ref.size == dis.size == (288, 4)
    np.testing.assert_array_equal(np.asarray(ref), np.asarray(img))
    np.testing.assert_array_equal(_columns(dis)[0, :6], [0, 0, 0, 0, 1, 2])  # 3-px strip repeats column 0
    np.testing.assert_array_equal(_columns(dis)[:, 3:], _columns(img)[:, :-3])


def test_fixed_rot_has_no_black_corners():
    img = _noise(64, 48, low=50)
    _, dis = make_transform("rot", 5, "fixed")(img, img)
    assert np.asarray(dis).min() > 0


def test_fixed_sca_is_isotropic():
    img = _dot(41, 21, 24, 12)  # centre (20, 10); zoom 2x in both axes, whatever the aspect ratio
    _, dis = make_transform("sca", 100, "fixed")(img, img)
    assert dis.size == (41, 21)
    assert _centroid(dis) == (pytest.approx(28, abs=1e-6), pytest.approx(14, abs=1e-6))


# ---- disparity suite geometry ----

@pytest.mark.parametrize("preset", PRESETS)
def test_rotate_90_about_the_centre(preset):
    img = _dot(9, 9, 6, 4)  # centre (4, 4); clockwise 90 on screen: right of centre -> below centre
    for name in ("rot", "rotate"):
        _, dis = make_transform(name, 90, preset)(img, img)
        assert _bright_pixels(dis) == [(4, 6)], (name, preset)


def test_translate_moves_a_dot_by_rounded_percent():
    img = _dot(50, 20, 10, 5)
    _, dis = make_transform("translate", 10, "fixed")(img, img)  # dx = 5, dy = 2
    assert _bright_pixels(dis) == [(15, 7)]
    _, dis = make_transform("translate", -10, "fixed")(img, img)
    assert _bright_pixels(dis) == [(5, 3)]


def test_scale_2_doubles_coordinates():
    img = _dot(20, 10, 7, 3)
    _, dis = make_transform("scale", 100, "paper")(img, img)
    assert dis.size == (40, 20)
    cx, cy = _centroid(dis)
    # pixel centres: continuous (x + 0.5) doubles, so index 7 -> 2 * 7.5 - 0.5
    assert (cx, cy) == (pytest.approx(14.5, abs=1e-6), pytest.approx(6.5, abs=1e-6))


def test_scale_keep_zoom_about_centre():
    img = _dot(21, 21, 13, 10)
    _, dis = make_transform("scale_keep", 100, "paper")(img, img)  # x = 10 + 2 * (13 - 10)
    assert dis.size == (21, 21)
    assert _centroid(dis) == (pytest.approx(16, abs=1e-6), pytest.approx(10, abs=1e-6))


def test_perspective_coefficients_map_the_four_corners():
    out_pts = [(0, 0), (40, 0), (40, 30), (0, 30)]
    in_pts = [(3, 1), (35, 2), (41, 29), (-2, 31)]
    a, b, c, d, e, f, g, h = perspective_coefficients(out_pts, in_pts)
    for (x, y), (u, v) in zip(out_pts, in_pts):
        den = g * x + h * y + 1
        assert ((a * x + b * y + c) / den, (d * x + e * y + f) / den) == (pytest.approx(u), pytest.approx(v))


def test_perspective_moves_a_dot_where_the_homography_says():
    w, h, amount = 40, 30, 20  # top corners of the viewed quad at x = 8 and 32
    ref_dot = (20, 4)
    img = _dot(w, h, *ref_dot)
    _, dis = make_transform("perspective", amount, "paper")(img, img)
    # Output position of the dot: invert the (output -> input) homography, in PIL's continuous coordinates.
    d = amount / 100 * w
    a, b, c, dd, e, f, g, hh = perspective_coefficients([(d, 0), (w - d, 0), (w, h), (0, h)],
                                                       [(0, 0), (w, 0), (w, h), (0, h)])
    u, v = ref_dot[0] + 0.5, ref_dot[1] + 0.5
    den = g * u + hh * v + 1
    expected = ((a * u + b * v + c) / den - 0.5, (dd * u + e * v + f) / den - 0.5)
    assert dis.size == (w, h)
    np.testing.assert_allclose(_centroid(dis), expected, atol=0.3)
    assert np.asarray(make_transform("perspective", 30, "paper")(_noise(w, h), _noise(w, h))[1]).min() > 0


def test_elastic_is_deterministic_with_the_stated_amplitude():
    img = _noise(48, 32)
    a = make_transform("elastic", 3, "paper")(img, img)[1]
    b = make_transform("elastic", 3, "fixed")(img, img)[1]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(img))
    dx, dy = elastic_field(32, 48, 3)
    assert np.sqrt(dx**2 + dy**2).max() == pytest.approx(3.0)


def test_crop_and_retarget():
    img = _column_index_image(50, 8)
    _, dis = make_transform("crop", 10, "paper")(img, img)
    assert dis.size == (45, 8)
    np.testing.assert_array_equal(_columns(dis)[0, [0, -1]], [5, 49])
    _, dis = make_transform("retarget", -20, "paper")(img, img)
    assert dis.size == (40, 8)


# ---- table-wide properties ----

AMOUNTS = {"tra": 10, "sca": 10, "rot": 7, "scale": 50, "scale_keep": 10, "rotate": 7, "translate": 10,
           "perspective": 10, "elastic": 2, "crop": 10, "retarget": 25}
# Documented (ref size, dis size) for a 40 x 30 pair at AMOUNTS, per preset where they differ.
SIZES = {"tra": {"paper": ((36, 30), (36, 30)), "fixed": ((40, 30), (40, 30))},
         "scale": ((40, 30), (60, 45)), "crop": ((40, 30), (36, 30)), "retarget": ((40, 30), (50, 30))}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_sizes_flags_and_identity(name, preset):
    img, other = _noise(40, 30, seed=1), _noise(40, 30, seed=2)
    ref, dis = make_transform(name, 0, preset)(img, other)
    np.testing.assert_array_equal(np.asarray(ref), np.asarray(img))
    np.testing.assert_array_equal(np.asarray(dis), np.asarray(other))

    ref, dis = make_transform(name, AMOUNTS[name], preset)(img, other)
    sizes = SIZES.get(name, ((40, 30), (40, 30)))
    if isinstance(sizes, dict):
        sizes = sizes[preset]
    assert (ref.size, dis.size) == sizes
    assert TRANSFORMS[name].changes_size == (ref.size != dis.size)
    assert ref.mode == dis.mode == "RGB"
    if name != "tra":
        np.testing.assert_array_equal(np.asarray(ref), np.asarray(img))  # only the paper's tra touches ref


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown transform 'shear'"):
        make_transform("shear", 1)
    with pytest.raises(ValueError, match="preset=official: choose one of paper, fixed"):
        make_transform("tra", 1, "official")
    with pytest.raises(ValueError, match=r"'tra': amount -1.0 is outside \[0, 100\)"):
        make_transform("tra", -1)
    with pytest.raises(ValueError, match="outside"):
        make_transform("scale", -100)
    with pytest.raises(ValueError, match="outside"):
        make_transform("rotate", float("nan"))
    with pytest.raises(ValueError, match="empty"):
        make_transform("crop", 99.9)(_noise(40, 30), _noise(40, 30))
    with pytest.raises(ValueError, match="mode 'RGBA'"):
        make_transform("rot", 1)(_noise(8, 8), _noise(8, 8).convert("RGBA"))
    with pytest.raises(TypeError, match="dis must be a PIL image"):
        make_transform("rot", 1)(_noise(8, 8), np.zeros((8, 8)))
