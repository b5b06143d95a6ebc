import pytest

from zsiqa.data import read_dataset


def test_full_set_counts_labels_and_parsing(official_root, layouts):
    items = read_dataset("tid2013", official_root("tid2013"))
    layouts.assert_official_set(items, "tid2013")
    assert {i.dist_type for i in items} == {f"{t:02d}" for t in range(1, 25)}
    assert {i.level for i in items} == {"1", "2", "3", "4", "5"}
    first = items[0]
    assert (first.ref_id, first.dist_type, first.level, first.dis.name) == ("I01", "01", "1", "I01_01_1.bmp")
    assert first.label == pytest.approx(layouts.tid_mos(1, 1, 1))
    item = items[(3 - 1) * 120 + (7 - 1) * 5 + (4 - 1)]  # file order: ref, type, level
    assert (item.ref_id, item.dist_type, item.level, item.dis.name) == ("I03", "07", "4", "i03_07_4.bmp")
    assert item.label == pytest.approx(layouts.tid_mos(3, 7, 4))


def test_case_quirks_resolve_to_the_real_files(official_root):
    items = read_dataset("tid2013", official_root("tid2013"))
    by_name = {i.dis.name: i for i in items}
    assert by_name["I05_11_1.BMP"].dis.is_file() and by_name["I05_13_1.BMP"].level == "1"
    assert by_name["i05_11_2.bmp"].dist_type == "11"
    refs = {i.ref_id: i.ref for i in items}
    assert refs["I25"].name == "i25.bmp" and refs["I24"].name == "I24.BMP"
    assert all(p.is_file() for p in refs.values())


def test_label_names_in_another_case_still_resolve(layouts, tmp_path):
    root = layouts.build_tid2013(tmp_path, refs=[1, 25], types=[1, 11], levels=[1, 2], lower_case_labels=True)
    items = read_dataset("tid2013", root, strict=False)
    assert [i.dis.name for i in items[:4]] == ["I01_01_1.bmp", "i01_01_2.bmp", "I01_11_1.BMP", "i01_11_2.bmp"]
    assert items[-1].ref.name == "i25.bmp"


def test_subset_needs_strict_false(layouts, tmp_path):
    root = layouts.build_tid2013(tmp_path, refs=[2], types=[3], levels=[1, 2, 3])
    with pytest.raises(ValueError, match="found 3 labelled pairs from 1 references .* 3000 pairs from 25"):
        read_dataset("tid2013", root)
    assert read_dataset("tid2013", root, strict=False) == read_dataset("tid2013", root, strict=False)


def test_malformed_line_reports_file_and_line(layouts, tmp_path):
    root = layouts.build_tid2013(tmp_path, refs=[1], types=[1], levels=[1, 2, 3])
    label = root / "mos_with_names.txt"
    lines = label.read_text().splitlines()
    lines[1] = "5.1 i01_01_2.png"
    label.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"mos_with_names.txt:2: malformed label line '5.1 i01_01_2.png'; expected"):
        read_dataset("tid2013", root, strict=False)
    lines[1] = "five i01_01_2.bmp"
    label.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"mos_with_names.txt:2: malformed label line 'five i01_01_2.bmp'"):
        read_dataset("tid2013", root, strict=False)


def test_missing_image_reports_line_and_folder(layouts, tmp_path):
    root = layouts.build_tid2013(tmp_path, refs=[1], types=[1, 2], levels=[1, 2, 3])
    (root / "distorted_images" / "i01_02_3.bmp").unlink()
    with pytest.raises(FileNotFoundError) as err:
        read_dataset("tid2013", root, strict=False)
    msg = str(err.value)
    assert f"{root / 'mos_with_names.txt'}:6: distorted image 'i01_02_3.bmp' not found in" in msg
    assert str(root / "distorted_images") in msg


def test_missing_label_file_and_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="label file not found: .*mos_with_names.txt"):
        read_dataset("tid2013", tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        read_dataset("tid2013", tmp_path / "nowhere")
