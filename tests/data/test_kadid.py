import pytest

from zsiqa.data import read_dataset


def test_full_set(official_root, layouts):
    items = read_dataset("kadid10k", official_root("kadid10k"))
    layouts.assert_official_set(items, "kadid10k")
    assert {i.dist_type for i in items} == {f"{t:02d}" for t in range(1, 26)}
    assert {i.level for i in items} == {"1", "2", "3", "4", "5"}
    item = items[(7 - 1) * 125 + (12 - 1) * 5 + (3 - 1)]
    assert (item.ref_id, item.dist_type, item.level) == ("I07", "12", "3")
    assert (item.dis.name, item.ref.name) == ("I07_12_03.png", "I07.png")
    assert item.label == pytest.approx(layouts.kadid_mos(7, 12, 3))
    assert read_dataset("kadid10k", official_root("kadid10k")) == items


def test_subset_and_errors(layouts, tmp_path):
    root = layouts.build_kadid(tmp_path, n_refs=1)
    with pytest.raises(ValueError, match="found 125 labelled pairs from 1 references"):
        read_dataset("kadid10k", root)
    assert len(read_dataset("kadid10k", root, strict=False)) == 125

    (root / "images" / "I01_02_05.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"dmos.csv:11: distorted image 'I01_02_05.png' not found in"):
        read_dataset("kadid10k", root, strict=False)

    label = root / "dmos.csv"
    lines = label.read_text().splitlines()
    lines[3] = "I01_01_03.png,I02.png,4.1,0.5"  # reference does not match the distorted name
    label.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"dmos.csv:4: malformed label line 'I01_01_03.png,I02.png,4.1,0.5'"):
        read_dataset("kadid10k", root, strict=False)
    label.write_text("image,score\nI01_01_01.png,4\n")
    with pytest.raises(ValueError, match=r"dmos.csv:1: .*expected a header with the columns dist_img, ref_img, dmos"):
        read_dataset("kadid10k", root, strict=False)
