"""Torch dataset over reader items: image pairs for scoring.

Images are loaded with PIL, converted to RGB (LIVE's BMPs and palette images included) and returned as float32
tensors ``[3, H, W]`` in [0, 1] with no normalisation. Images keep their own size, so batches of more than one
pair need equal sizes (true within PIPAL, TID2013, KADID-10k, CSIQ and the demo set; not within LIVE).
"""
from __future__ import annotations

from typing import Callable, Sequence

from PIL import Image
from torch.utils.data import Dataset

from ..io import load_image, pil_to_tensor
from .items import PairItem

PairTransform = Callable[[Image.Image, Image.Image], tuple[Image.Image, Image.Image]]


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
