from collections import Counter

import numpy as np
import pytest
import scipy.io

from zsiqa.data import read_dataset


def test_full_set_counts_order_and_refs(official_root, layouts):
    items = read_dataset("live", official_root("live"))
    layouts.assert_official_set(items, "live")
    per_folder = Counter(i.dist_type for i in items)
    assert list(per_folder) == ["jp2k", "jpeg", "wn", "gblur", "fastfading"]  # the official folder order
    assert sum(per_folder.values()) == 779 and per_folder["jp2k"] == 227 - 58
    assert all(i.level == "" for i in items)
    assert all(i.ref == official_root("live") / "refimgs" / f"{i.ref_id}.bmp" for i in items)


def test_entries_map_to_folder_images_and_labels(official_root):
    mat = scipy.io.loadmat(official_root("live") / "dmos_realigned.mat")
    orgs, dmos_new = mat["orgs"].ravel(), mat["dmos_new"].ravel()
    names = [str(c[0]) for c in scipy.io.loadmat(official_root("live") / "refnames_all.mat")["refnames_all"].ravel()]
    kept = np.flatnonzero(orgs == 0)
    items = read_dataset("live", official_root("live"))
    # entry 227 + 233 + k - 1 (0-based) is wn/img{k}.bmp
    for item, entry in zip(items, kept):
        if entry >= 460 and entry < 634:
            k = entry - 460 + 1
            assert item.dis == official_root("live") / "wn" / f"img{k}.bmp"
            assert item.dist_type == "wn"
        assert item.label == pytest.approx(dmos_new[entry])
        assert item.ref.name == names[entry]
    assert items[-1].dis == official_root("live") / "fastfading" / f"img{kept[-1] - 808 + 1}.bmp"


def test_original_dmos_is_an_option(official_root):
    dmos = scipy.io.loadmat(official_root("live") / "dmos.mat")["dmos"].ravel()
    orgs = scipy.io.loadmat(official_root("live") / "dmos.mat")["orgs"].ravel()
    items = read_dataset("live", official_root("live"), label="dmos")
    assert [i.label for i in items] == pytest.approx(dmos[orgs == 0].tolist())
    realigned = read_dataset("live", official_root("live"))
    assert [i.label for i in items] != [i.label for i in realigned]
    assert read_dataset("live", official_root("live"), label="dmos") == items
    with pytest.raises(ValueError, match="unknown label 'mos'"):
        read_dataset("live", official_root("live"), label="mos")


def test_subset_needs_strict_false(layouts, tmp_path):
    root = layouts.build_live(tmp_path, keep=2)
    with pytest.raises(ValueError, match="found 10 labelled pairs .* official set has 779 pairs"):
        read_dataset("live", root)
    items = read_dataset("live", root, strict=False)
    assert [(i.dist_type, i.dis.name) for i in items[:3]] == [("jp2k", "img1.bmp"), ("jp2k", "img2.bmp"),
                                                              ("jpeg", "img1.bmp")]


def test_missing_image_names_entry_and_path(layouts, tmp_path):
    root = layouts.build_live(tmp_path, keep=2)
    (root / "jpeg" / "img2.bmp").unlink()
    with pytest.raises(FileNotFoundError) as err:
        read_dataset("live", root, strict=False)
    msg = str(err.value)
    assert "1 image(s)" in msg and "dmos_realigned.mat entry 229" in msg and "'img2.bmp'" in msg
    assert str(root / "jpeg") in msg


def test_missing_reference_folder_and_label_file(layouts, tmp_path):
    root = layouts.build_live(tmp_path, keep=1)
    for ref in (root / "refimgs").iterdir():
        ref.unlink()
    (root / "refimgs").rmdir()
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        read_dataset("live", root, strict=False)
    (root / "dmos.mat").unlink()
    with pytest.raises(FileNotFoundError, match="label file not found: .*dmos.mat"):
        read_dataset("live", root, label="dmos")


def test_wrong_entry_count_is_rejected(layouts, tmp_path):
    root = layouts.build_live(tmp_path, keep=1)
    scipy.io.savemat(root / "dmos_realigned.mat", {"dmos_new": np.zeros((1, 900)), "orgs": np.zeros((1, 900))})
    with pytest.raises(ValueError, match="'dmos_new' has 900 entries, expected 982"):
        read_dataset("live", root, strict=False)
