"""Torch datasets over reader items: image pairs for scoring, and each reference once for the feature cache.

Images are loaded with PIL, converted to RGB (LIVE's BMPs and palette images included) and returned as float32
tensors ``[3, H, W]`` in [0, 1] with no normalisation. Images keep their own size, so batches of more than one
pair need equal sizes (true within PIPAL, TID2013, KADID-10k, CSIQ and the demo set; not within LIVE).
"""
from __future__ import annotations

from typing import Callable, Sequence

from PIL import Image
from torch.utils.data import Dataset

from ..io import load_image, pil_to_tensor
from .items import PairItem, reference_paths

PairTransform = Callable[[Image.Image, Image.Image], tuple[Image.Image, Image.Image]]
ImageTransform = Callable[[Image.Image], Image.Image]


class PairDataset(Dataset):
    """(reference, distorted) pairs: ``{"index", "ref", "dis", "label", "ref_id"}`` per item.

    ``pair_transform(ref, dis) -> (ref, dis)`` acts on the RGB PIL images before tensor conversion (the
    robustness transforms: shift, dilation, rotation).
    """

    def __init__(self, items: Sequence[PairItem], pair_transform: PairTransform | None = None) -> None:
        self.items = list(items)
        self.pair_transform = pair_transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        ref, dis = load_image(item.ref), load_image(item.dis)
        if self.pair_transform is not None:
            ref, dis = self.pair_transform(ref, dis)
        return {"index": item.index, "ref": pil_to_tensor(ref), "dis": pil_to_tensor(dis), "label": item.label,
                "ref_id": item.ref_id}


class ReferenceDataset(Dataset):
    """Each distinct reference of ``items`` once, in first-appearance order: ``{"ref_id", "ref"}``.

    ``transform`` acts on the reference alone, for robustness transforms that also change the reference
    (the paper's shift crops it).
    """

    def __init__(self, items: Sequence[PairItem], transform: ImageTransform | None = None) -> None:
        self.refs = list(reference_paths(items).items())
        self.transform = transform

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> dict:
        ref_id, path = self.refs[i]
        img = load_image(path)
        if self.transform is not None:
            img = self.transform(img)
        return {"ref_id": ref_id, "ref": pil_to_tensor(img)}
