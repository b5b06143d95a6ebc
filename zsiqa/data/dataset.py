"""Torch dataset over reader items: image pairs for scoring.

Images are decoded by ``zsiqa.images`` (every Pillow mode to RGB, 16-bit kept at full precision, EXIF orientation per
``exif``) and returned as tensors ``[3, H, W]``: uint8 for 8-bit images (a quarter of float32's memory; the engine
makes them float32 in [0, 1] chunk by chunk with ``zsiqa.images.to_float``), float32 in [0, 1] for 16-bit ones. Images keep their own size, so
batches of more than one pair need equal sizes (true within PIPAL, TID2013, KADID-10k, CSIQ and the demo set; not
within LIVE).

A pair whose image cannot be read (missing since the labels were read, corrupt, truncated) is not raised inside the
loader worker, where its message would gain the worker's traceback: the sample carries the error message (``"error"``)
and the consumer decides (``failed_groups`` in datamodule.py raises it, or hands it on under ``on_bad_image=skip``).
"""
from __future__ import annotations

from typing import Callable, Sequence

from PIL import Image
from torch.utils.data import Dataset

from ..errors import InputError, MissingFileError
from ..images import load_image, pil_to_tensor, read_image
from .items import PairItem

PairTransform = Callable[[Image.Image, Image.Image], tuple[Image.Image, Image.Image]]


class PairDataset(Dataset):
    """(reference, distorted) pairs: ``{"index", "ref", "dis", "label", "ref_id", "error"}`` per item.

    ``pair_transform(ref, dis) -> (ref, dis)`` acts on the 8-bit RGB PIL images before tensor conversion (the
    robustness transforms: shift, dilation, rotation). ``exif``: "apply" or "ignore" (``zsiqa.images.resolve_exif``).
    ``error`` is "" or, when an image could not be read, the message naming the file (``ref`` and ``dis`` are then
    None).
    """

    def __init__(
        self, items: Sequence[PairItem], pair_transform: PairTransform | None = None, exif: str = "apply"
    ) -> None:
        self.items = list(items)
        self.pair_transform = pair_transform
        self.exif = exif

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        sample = {"index": item.index, "ref": None, "dis": None, "label": item.label, "ref_id": item.ref_id,
                  "error": ""}
        try:
            sample["ref"], sample["dis"] = self._load(item)
        except (InputError, MissingFileError) as e:
            sample["error"] = str(e)
        return sample

    def _load(self, item: PairItem):
        if self.pair_transform is None:
            return read_image(item.ref, self.exif, as_uint8=True), read_image(item.dis, self.exif, as_uint8=True)
        ref, dis = self.pair_transform(load_image(item.ref, self.exif), load_image(item.dis, self.exif))
        return pil_to_tensor(ref, as_uint8=True), pil_to_tensor(dis, as_uint8=True)
