from collections import Counter

import pytest

from zsiqa.data import read_dataset


def test_full_train_set(official_root, layouts):
    items = read_dataset("pipal", official_root("pipal"))
    layouts.assert_official_set(items, "pipal")
    groups = Counter(i.dist_type for i in items)
    assert groups == {"00": 2400, "01": 3200, "02": 2000, "03": 4800, "04": 2600, "05": 2800, "06": 5400}
    assert not any(i.label_lower_better for i in items)
    first, last = items[0], items[-1]
    assert (first.ref_id, first.dis.name, first.ref.name) == ("A0001", "A0001_00_00.bmp", "A0001.bmp")
    assert first.label == pytest.approx(layouts.pipal_elo(1, 0, 0))
    ref = layouts.PIPAL_IDS[-1]
    assert last.dis.name == f"A{ref:04d}_06_26.bmp" and last.label == pytest.approx(layouts.pipal_elo(ref, 6, 26))


def test_label_files_are_read_in_sorted_order(layouts, tmp_path):
    root = layouts.build_pipal(tmp_path, n_refs=3)  # files created A0003, A0002, A0001
    items = read_dataset("pipal", root, strict=False)
    assert [i.ref_id for i in items[::116]] == ["A0001", "A0002", "A0003"]
    assert [i.dis.name for i in items[:2]] == ["A0001_00_00.bmp", "A0001_00_01.bmp"]


@pytest.mark.parametrize("layout", ["Distortion", "nested"])
def test_distorted_images_found_in_split_or_nested_folders(layouts, tmp_path, layout):
    root = layouts.build_pipal(tmp_path, n_refs=5, layout=layout)
    items = read_dataset("pipal", root, strict=False)
    assert len(items) == 5 * 116
    assert len({i.dis.parent for i in items}) > 1
    assert all(i.dis.is_file() for i in items)


def test_duplicate_file_names_are_an_error(layouts, tmp_path):
    root = layouts.build_pipal(tmp_path, n_refs=2, layout="nested")
    dup = root / "copy" / "A0002_03_05.bmp"
    dup.parent.mkdir()
    dup.write_bytes(b"x")
    with pytest.raises(ValueError, match="'A0002_03_05.bmp' is ambiguous"):
        read_dataset("pipal", root, strict=False)


def test_subset_needs_strict_false(layouts, tmp_path):
    root = layouts.build_pipal(tmp_path, n_refs=2)
    with pytest.raises(ValueError, match="found 232 labelled pairs from 2 references"):
        read_dataset("pipal", root)
    assert len(read_dataset("pipal", root, strict=False)) == 232


def test_malformed_line_and_missing_image(layouts, tmp_path):
    root = layouts.build_pipal(tmp_path, n_refs=1)
    label = root / "Train_Label" / "A0001.txt"
    (root / "Train_Dis" / "A0001_02_04.bmp").unlink()
    with pytest.raises(FileNotFoundError, match=r"A0001.txt:33: distorted image 'A0001_02_04.bmp' not found in"):
        read_dataset("pipal", root, strict=False)
    lines = label.read_text().splitlines()
    lines[4] = "A0001_00_04.bmp 1500.0"
    label.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"A0001.txt:5: malformed label line 'A0001_00_04.bmp 1500.0'; expected "
                                         r"\"<name>,<elo>\""):
        read_dataset("pipal", root, strict=False)


def test_missing_labels_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no label files .*Train_Label/\*.txt"):
        read_dataset("pipal", tmp_path)
