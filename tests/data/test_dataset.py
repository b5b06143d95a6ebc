import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from zsiqa.data import DATASETS, PairDataset, PairItem, read_dataset, reference_paths
from zsiqa.images import to_float


def _pixels(seed: int, h: int = 6, w: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def pairs(tmp_path):
    """Two references (RGB PNG, palette BMP) and three distorted images (RGB, grey-scale, RGB)."""
    Image.fromarray(_pixels(0)).save(tmp_path / "r0.png")
    Image.fromarray(_pixels(1)).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "r1.bmp")
    Image.fromarray(_pixels(2)).save(tmp_path / "d0.png")
    Image.fromarray(_pixels(3)[..., 0]).save(tmp_path / "d1.png")
    Image.fromarray(_pixels(4)).save(tmp_path / "d2.png")
    spec = [("r0.png", "d0.png", "r0"), ("r1.bmp", "d1.png", "r1"), ("r0.png", "d2.png", "r0")]
    return [PairItem(index=10 + k, ref=tmp_path / r, dis=tmp_path / d, label=0.5 * k, label_lower_better=True,
                     dist_type="t", ref_id=ref_id) for k, (r, d, ref_id) in enumerate(spec)]


def test_pair_tensors_are_rgb_uint8_that_become_the_unit_range(pairs):
    ds = PairDataset(pairs)
    assert len(ds) == 3
    sample = ds[0]
    assert set(sample) == {"index", "ref", "dis", "label", "ref_id", "error"} and sample["error"] == ""
    assert (sample["index"], sample["label"], sample["ref_id"]) == (10, 0.0, "r0")
    assert sample["ref"].shape == (3, 6, 8) and sample["ref"].dtype == torch.uint8  # 8-bit images stay 8-bit
    assert torch.equal(to_float(sample["ref"]), torch.from_numpy(_pixels(0)).permute(2, 0, 1).float() / 255)
    grey = ds[1]["dis"]  # an L image becomes three equal channels
    assert grey.shape == (3, 6, 8) and torch.equal(grey[0], grey[2])
    assert torch.equal(to_float(grey[1]), torch.from_numpy(_pixels(3)[..., 0]).float() / 255)
    palette = ds[1]["ref"]
    with Image.open(pairs[1].ref) as img:
        assert torch.equal(palette, torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1))


def test_pair_transform_sees_both_pil_images(pairs):
    def crop_both(ref, dis):
        assert ref.mode == dis.mode == "RGB"
        return ref.crop((0, 0, 5, 6)), dis.crop((3, 0, 8, 6))

    sample = PairDataset(pairs, pair_transform=crop_both)[0]
    assert sample["ref"].shape == sample["dis"].shape == (3, 6, 5)
    assert torch.equal(sample["dis"], torch.from_numpy(_pixels(2)[:, 3:]).permute(2, 0, 1))


def test_batches_collate(pairs):
    batch = next(iter(DataLoader(PairDataset(pairs[::2]), batch_size=2)))
    assert batch["ref"].shape == (2, 3, 6, 8) and batch["index"].tolist() == [10, 12]
    assert batch["ref_id"] == ["r0", "r0"]
    assert list(reference_paths(pairs)) == ["r0", "r1"]


def test_one_ref_id_must_mean_one_file(pairs, tmp_path):
    clash = PairItem(index=0, ref=tmp_path / "r1.bmp", dis=pairs[0].dis, label=0.0, label_lower_better=True,
                     dist_type="t", ref_id="r0")
    with pytest.raises(ValueError, match="ref_id 'r0' names two reference files"):
        reference_paths([*pairs, clash])


def test_dataset_table_and_dispatch(tmp_path):
    assert sorted(DATASETS) == ["csiq", "demo", "kadid10k", "live", "pipal", "tid2013"]
    sizes = {name: (spec.num_items, spec.num_refs, spec.lower_better) for name, spec in DATASETS.items()}
    assert sizes["live"] == (779, 29, True) and sizes["tid2013"] == (3000, 25, False)
    assert sizes["pipal"] == (23200, 200, False) and sizes["kadid10k"] == (10125, 81, False)
    assert sizes["csiq"] == (866, 30, True) and sizes["demo"] == (144, 6, True)
    with pytest.raises(ValueError, match="unknown dataset 'tid'; available: csiq, demo, kadid10k, live, pipal, tid2013"):
        read_dataset("tid", tmp_path)
    with pytest.raises(ValueError, match="TID2013: no dataset root given"):
        read_dataset("tid2013")
