"""Per-sample scores gathered exactly once across devices, de-duplicated by dataset index.

DistributedSampler pads the last round with repeated samples so every rank gets the same count, and torchmetrics'
``cat`` reduction keeps those repeats (7 samples on 2 ranks -> 8 rows). Correlations need each sample exactly once,
so every row carries its dataset index and ``compute()`` drops repeats and sorts by index.
"""
from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def cat_state(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A ``cat`` state as one CPU float64 tensor (a list before sync, a tensor after)."""
    if isinstance(state, list) and not state:
        return torch.zeros(0, dtype=torch.float64)
    return dim_zero_cat(state).cpu()


def unique_rows(index: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Positions of the rows to keep, sorted by index: the first row gathered (lowest rank) of each index.

    Repeats with a different label mean two samples share an index: a ``ValueError``.
    """
    order = torch.argsort(index, stable=True)  # stable: among repeats, gather order (rank 0 first) decides
    sorted_index = index[order]
    first = torch.ones(index.numel(), dtype=torch.bool)
    first[1:] = sorted_index[1:] != sorted_index[:-1]
    group = torch.cumsum(first.to(torch.int64), 0) - 1
    sorted_label = label[order]
    kept_label = sorted_label[first][group]
    same = (sorted_label == kept_label) | (sorted_label.isnan() & kept_label.isnan())
    if not bool(same.all()):
        clashes = sorted(set(sorted_index[~same].tolist()))
        raise ValueError(f"rows with the same index have different labels at indices {clashes[:10]}: "
                         "every sample needs a unique dataset index")
    return order[first]


class IndexedScores(Metric):
    """Collects ``(index, score, label[, per-layer terms])`` rows; ``compute()`` returns them gathered, unique, index-sorted.

    States are 1-D float64 ``cat`` lists (terms are stored flattened) so that a rank that saw no data (an unrepeated
    sampler with fewer samples than ranks) still gathers cleanly. Indices are exact in float64 up to 2**53.
    ``compute()`` returns numpy arrays (torchmetrics would squeeze one-element tensors): ``index`` (int64 [N]),
    ``score`` and ``label`` (float64 [N]), ``terms`` (float64 [N, L] or None) and ``duplicates`` (how many repeated
    rows were dropped); feed ``score`` and ``label`` to ``zsiqa.stats.correlations``. For each repeated index the row
    gathered first (lowest rank) is kept; repeats with a different label mean two samples share an index: an error.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("index", "score", "label", "terms"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        # torchmetrics fills an empty rank with a tensor of the metric dtype; it must match the float64 states.
        self.set_dtype(torch.float64)

    def update(
        self, index: torch.Tensor, score: torch.Tensor, label: torch.Tensor, terms: torch.Tensor | None = None
    ) -> None:
        """Add a batch: ``index`` integer [B], ``score`` [B], ``label`` [B], optional ``terms`` [B, L] (same L every call)."""
        if index.ndim != 1 or index.numel() == 0:
            raise ValueError(f"index must be a non-empty 1-D tensor, got shape {tuple(index.shape)}")
        if index.dtype.is_floating_point or index.dtype == torch.bool:
            raise ValueError(f"index must be an integer tensor (dataset indices), got {index.dtype}")
        b = index.numel()
        for name, t in (("score", score), ("label", label)):
            if t.shape != (b,):
                raise ValueError(f"{name} must have shape ({b},) like index, got {tuple(t.shape)}")
        has_terms = len(self.terms) > 0
        if len(self.index) > 0 and (terms is not None) != has_terms:
            raise ValueError("terms must be passed on every update or on none")
        if terms is not None:
            if terms.ndim != 2 or terms.shape[0] != b or terms.shape[1] == 0:
                raise ValueError(f"terms must have shape ({b}, L) with L >= 1, got {tuple(terms.shape)}")
            if has_terms and terms.shape[1] != self.terms[-1].numel() // self.index[-1].numel():
                raise ValueError(
                    f"terms width changed: got L={terms.shape[1]}, earlier batches had "
                    f"L={self.terms[-1].numel() // self.index[-1].numel()}"
                )
            self.terms.append(terms.detach().to(torch.float64).reshape(-1))
        self.index.append(index.detach().to(torch.float64))
        self.score.append(score.detach().to(torch.float64))
        self.label.append(label.detach().to(torch.float64))

    def compute(self) -> dict:
        index, score, label, terms = (cat_state(s) for s in (self.index, self.score, self.label, self.terms))
        index = index.to(torch.int64)
        n_rows = index.numel()
        if terms.numel():
            if terms.numel() % n_rows:
                raise ValueError(
                    f"gathered {terms.numel()} term values for {n_rows} rows: terms were passed on some ranks only"
                )
            terms = terms.reshape(n_rows, -1)

        keep = unique_rows(index, label)
        return {
            "index": index[keep].numpy(),
            "score": score[keep].numpy(),
            "label": label[keep].numpy(),
            "terms": terms[keep].numpy() if terms.numel() else None,
            "duplicates": int(n_rows - keep.numel()),
        }
