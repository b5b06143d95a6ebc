"""Training / validation split by reference image: no reference (so no image content) is on both sides."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data import PairItem


def split_by_reference(items: Sequence[PairItem], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Reference ids for training and validation: no reference (so no content) is in both. Seeded."""
    refs = sorted({it.ref_id for it in items})
    if not 0 < val_fraction < 1:
        raise ValueError(f"split.val_fraction must be in (0, 1), got {val_fraction}")
    if len(refs) < 2:
        raise ValueError(f"a split by reference needs at least 2 reference images, the data have {len(refs)}")
    n_val = min(len(refs) - 1, max(1, round(val_fraction * len(refs))))
    order = torch.randperm(len(refs), generator=torch.Generator().manual_seed(seed)).tolist()
    val = sorted(refs[i] for i in order[:n_val])
    return {"train": [r for r in refs if r not in set(val)], "val": val}


def positions_of(items: Sequence[PairItem], refs: Sequence[str]) -> torch.Tensor:
    """Positions of the items whose reference is in ``refs``."""
    wanted = set(refs)
    return torch.tensor([i for i, it in enumerate(items) if it.ref_id in wanted], dtype=torch.long)
