"""Dataset folders with bad label files or unreadable images: one error naming the file and line, never a silent
skip."""
import re
from pathlib import Path

import pytest
from corpus import decode_message, rgb
from PIL import Image

from zsiqa.data import read_dataset
from zsiqa.errors import DataError, InputError, MissingFileError

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
