import numpy as np
import pytest
from PIL import Image

from zsiqa.data import build_demo, demo, read_dataset


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo") / "set")


def _mse(a, b):
    with Image.open(a) as x, Image.open(b) as y:
        return float(np.mean((np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2))


def test_counts_labels_and_files(demo_root):
    items = read_dataset("demo", demo_root)
    assert len(items) == 144 and len({i.ref_id for i in items}) == 6
    assert [i.index for i in items] == list(range(144))
    assert {i.dist_type for i in items} == {"noise", "blur", "jpeg", "contrast", "brightness", "shift"}
    assert all(i.label_lower_better and i.label == float(i.level) for i in items)
    with Image.open(items[0].ref) as ref, Image.open(items[0].dis) as dis:
        assert ref.size == dis.size == (288, 288) and ref.mode == dis.mode == "RGB"
    header = (demo_root / "meta.csv").read_text().splitlines()[0]
    assert header == "ref_name,dist_name,score,dist_type,level"
    readme = (demo_root / "README.txt").read_text()
    assert "NOT HUMAN OPINION" in readme and "CC0" in readme and "public domain" in readme


def test_error_grows_with_level(demo_root):
    items = read_dataset("demo", demo_root)
    for ref_id in {i.ref_id for i in items}:
        for dist_type in ("noise", "blur", "jpeg", "contrast", "brightness", "shift"):
            group = sorted((i for i in items if i.ref_id == ref_id and i.dist_type == dist_type), key=lambda i: i.level)
            mse = [_mse(i.ref, i.dis) for i in group]
            assert all(a < b for a, b in zip(mse, mse[1:])), (ref_id, dist_type, mse)
            assert mse[0] > 0


def test_deterministic_and_idempotent(demo_root, monkeypatch):
    noise = np.asarray(demo._noise(demo._photo("chelsea"), 3, 1000 * 1 + 0 + 3))
    assert np.array_equal(noise, np.asarray(Image.open(demo_root / "dis" / "chelsea_noise_3.png")))
    before = {p: p.stat().st_mtime_ns for p in demo_root.rglob("*")}
    assert build_demo(demo_root) == demo_root
    assert {p: p.stat().st_mtime_ns for p in demo_root.rglob("*")} == before
    monkeypatch.setenv("ZSIQA_DEMO_ROOT", str(demo_root))
    assert build_demo() == demo_root
    assert read_dataset("demo") == read_dataset("demo", demo_root)


def test_broken_meta_line_and_missing_set(demo_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="build_demo"):
        read_dataset("demo", tmp_path)
    (tmp_path / "ref").mkdir()
    meta = "ref_name,dist_name,score,dist_type,level\nref/a.png,dis/a_blur_1.png,x,blur,1\n"
    (tmp_path / "meta.csv").write_text(meta)
    with pytest.raises(ValueError, match=r"meta.csv:2: malformed label line"):
        read_dataset("demo", tmp_path, strict=False)


def test_data_limit_spreads_the_pairs_over_the_references(demo_root):
    """data.limit=12 used to take the first 12 pairs, all of one reference (no interval can be computed); it takes
    2 of each of the 6 references now, drawn among each reference's pairs with a fixed seed, in the dataset's order."""
    from zsiqa.data.datamodule import FRDataModule

    data = FRDataModule("demo", demo_root, limit=12)
    data.setup()
    items = read_dataset("demo", demo_root)
    assert [it.ref_id for it in data.items] == [r for r in dict.fromkeys(it.ref_id for it in items) for _ in range(2)]
    positions = [items.index(it) for it in data.items]
    assert positions == sorted(positions)
    assert len({it.dist_type for it in data.items}) > 2 and len({it.label for it in data.items}) > 2  # not one level
    again = FRDataModule("demo", demo_root, limit=12)
    again.setup()
    assert again.items == data.items  # a fixed seed
    odd = FRDataModule("demo", demo_root, limit=7)
    odd.setup()
    assert [sum(it.ref_id == r for it in odd.items) for r in dict.fromkeys(it.ref_id for it in items)] == [2, 1, 1, 1, 1, 1]
    assert set(odd.items) < set(data.items)  # nested: raising the limit keeps the pairs already scored
    whole = FRDataModule("demo", demo_root, limit=1000)
    whole.setup()
    assert whole.items == items
