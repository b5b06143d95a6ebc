from collections import Counter

import pytest

from zsiqa.data import read_dataset


@pytest.mark.parametrize(("label", "images"), [("txt", "nested"), ("csv", "flat"), ("txt_noext", "all")])
def test_full_set_in_every_accepted_layout(layouts, tmp_path, label, images):
    root = layouts.build_csiq(tmp_path, label=label, images=images)
    items = read_dataset("csiq", root)
    pairs = layouts.csiq_pairs()
    assert len(items) == 866 and len({i.ref_id for i in items}) == 30
    assert [i.index for i in items] == list(range(866))
    assert [i.label for i in items] == pytest.approx([p[4] for p in pairs])
    assert [i.dis.name for i in items] == [p[2] for p in pairs]
    assert all(i.label_lower_better for i in items)
    assert Counter(i.dist_type for i in items) == {"awgn": 150, "jpeg": 150, "jpeg2000": 150, "fnoise": 150,
                                                   "blur": 150, "contrast": 116}
    item = items[0]
    assert (item.ref_id, item.dist_type, item.level, item.ref.name) == ("1600", "awgn", "1", "1600.png")


def test_explicit_label_file_and_subset(layouts, tmp_path):
    root = layouts.build_csiq(tmp_path, label="csv", refs=["boston", "lake"])
    (root / "meta_info_CSIQDataset.csv").rename(root / "labels.csv")
    with pytest.raises(FileNotFoundError, match="expected one of csiq_label.txt, meta_info_CSIQDataset.csv"):
        read_dataset("csiq", root, strict=False)
    with pytest.raises(ValueError, match="found 58 labelled pairs from 2 references"):
        read_dataset("csiq", root, label_file="labels.csv")
    items = read_dataset("csiq", root, label_file="labels.csv", strict=False)
    assert {i.ref_id for i in items} == {"boston", "lake"} and items[-1].dis.name == "lake.contrast.4.png"


def test_malformed_lines_and_missing_image(layouts, tmp_path):
    root = layouts.build_csiq(tmp_path, refs=["1600"])
    label = root / "csiq_label.txt"
    (root / "dst_imgs" / "blur" / "1600.BLUR.2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"csiq_label.txt:22: distorted image '1600.BLUR.2.png' not found"):
        read_dataset("csiq", root, strict=False)
    lines = label.read_text().splitlines()
    for bad in ("1600.AWGN.png 0.1", "1600.AWGN.1.png", "1600.AWGN.1.png low"):
        lines[2] = bad
        label.write_text("\n".join(lines) + "\n")
        with pytest.raises(ValueError, match=rf"csiq_label.txt:3: malformed label line '{bad}'; expected"):
            read_dataset("csiq", root, strict=False)


def test_csv_reference_must_match_the_distorted_name(layouts, tmp_path):
    root = layouts.build_csiq(tmp_path, label="csv", refs=["1600", "elk"])
    label = root / "meta_info_CSIQDataset.csv"
    lines = label.read_text().splitlines()
    lines[5] = lines[5].replace("1600.png", "elk.png", 1)
    label.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"meta_info_CSIQDataset.csv:6: malformed label line 'elk.png,1600"):
        read_dataset("csiq", root, strict=False)
