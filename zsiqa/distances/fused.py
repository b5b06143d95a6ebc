"""Several distance heads on the same windows at once, the reference broadcast against many distorted images.

Run one by one, the paper's heads each rebuild the same intermediates from the same features (token stack, the
64-row columns, their softmax, the squared difference), and the reference is copied once per distorted image. Here
the reference side is computed once per window slice and broadcast (never copied) against the distorted images, and
each intermediate is computed once for all heads that use it. Every element goes through the heads' own operations in
their order, so the scores are the heads' alone (the tests check it).

A head declares the kernel that computes it here (``DistanceHead.fused``: l2, cos, cos_channel, skld, jsd, wsd); heads
without one (swd, swd_fixed, embed_cos, deepssim, any newly registered head) run as they are, on the reference
repeated for the distorted images of the call: in call order, so swd's global-RNG draws are unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .basic import COS_EPS, feature_layout, guarded_mean, sum_dtype
from .distribution import (
    EPS,
    JSD_MEAN_EPS,
    adaptive_weight,
    at_least_fp32,
    inf_to_zero,
    map_as_tokens,
    paper_columns,
    stack_columns,
)
from .registry import DistanceHead, Feats

KERNELS = ("l2", "cos", "cos_channel", "skld", "jsd", "wsd")  # what a head may declare as its ``fused`` kernel
DISTRIBUTION = ("skld", "jsd", "wsd")
BINNED = ("skld", "jsd")  # the heads on the 64-row softmax p (distorted) and q (reference)
# skld, jsd and wsd run one reference window at a time against as many distorted images' windows as fit in this
# many bytes of taps (4 images for dino_vitb16): the reference side is reused while in cache, and each operation
# covers several images. Bounds the heads' memory (a few times this) whatever the chunk.
HEAD_BYTES = 32 * 2**20
# skld and jsd treat every column on its own: they run on blocks of columns of about this many elements (over all
# images of the step), whose intermediates stay in cache. A block is a whole number of 64 columns: PyTorch's fp32
# sum over the rows rounds a column as it does in the whole row only when blocks start on such a multiple.
BLOCK_ELEMENTS = 2**18
BLOCK_COLUMNS = 64


def is_fused(head: DistanceHead) -> bool:
    """Whether ``head`` declares a fused kernel (an unknown kernel name is an error)."""
    if head.fused is not None and head.fused not in KERNELS:
        raise ValueError(f"distance {head.name!r}: unknown fused kernel {head.fused!r}; choose one of {', '.join(KERNELS)}")
    return head.fused is not None


def window_scores(heads: Sequence[DistanceHead], ref: Feats, dis: Feats) -> dict[str, torch.Tensor]:
    """``{head name: [M_d]}`` per-window scores of ``dis`` against ``ref``, as each ``head.fn`` would give them.

    ``ref``: the taps of ``M_r`` windows; ``dis``: of ``M_d = n * M_r`` windows, image-major (``n`` distorted images
    compared with the same reference windows). Window heads only (``kind`` "window" or "embed").
    """
    m_r, m_d = ref[0].shape[0], dis[0].shape[0]
    if m_r == 0 or m_d % m_r:
        raise ValueError(f"{m_d} distorted windows are not a whole number of images of the reference's {m_r} windows")
    n = m_d // m_r
    kernels = {h.fused: h.name for h in heads if is_fused(h)}  # kernel -> the head it scores
    names = list(kernels)
    out = {}
    if names:
        layout = feature_layout(ref, [d[:m_r] for d in dis])
        per_image = [t.view(n, m_r, *t.shape[1:]) for t in dis]
        scores = _taps_scores(ref, per_image, layout, names)
        if any(name in DISTRIBUTION for name in names):
            scores.update(_distribution_scores(ref, per_image, layout, [x for x in names if x in DISTRIBUTION]))
        out = {kernels[kernel]: v.reshape(m_d) for kernel, v in scores.items()}
    others = [h for h in heads if not is_fused(h)]
    if others:
        repeated = ref if n == 1 else [r.repeat(n, *([1] * (r.ndim - 1))) for r in ref]
        out.update({h.name: h.fn(repeated, dis) for h in others})
    return out


def _distribution_scores(ref: list[torch.Tensor], dis: list[torch.Tensor], layout: str, names: list[str]) -> dict:
    """skld, jsd and wsd ``[n, w]`` of distorted taps ``[n, w, ...]`` against reference taps ``[w, ...]``, one
    reference window at a time against a step of images (``HEAD_BYTES``), its side computed once for all images.
    The per-column values of every window are kept and averaged over columns at once, a reduction of the same shape
    as the heads' alone."""
    n, m_r = dis[0].shape[:2]
    window_bytes = sum(t[0, 0].numel() * t.element_size() for t in dis)
    step = max(1, min(n, HEAD_BYTES // window_bytes))
    columns: dict[str, list[torch.Tensor]] = {}
    for s in range(m_r):
        w = slice(s, s + 1)
        shared = _reference_side([r[w] for r in ref], layout, names)
        for a in range(0, n, step):
            for name, layers in _slice_columns(shared, [d[a : a + step, w] for d in dis], layout, names).items():
                if name not in columns:
                    columns[name] = [v.new_empty(n, m_r, v.shape[-1]) for v in layers]
                for whole, v in zip(columns[name], layers):
                    whole[a : a + step, w] = v
    out = {}
    for name, layers in columns.items():
        value = layers[0].mean(-1) if layout == "tokens" else torch.stack([v.mean(-1) for v in layers], 2).mean(2)
        out[name] = torch.log(value.clamp(min=0) + 1) ** 0.25  # as distribution._squashed
    return out


def _columns_of(feats: list[torch.Tensor], layout: str) -> list[torch.Tensor]:
    """The paper's ``[..., 64, J]`` columns: one of the whole token stack, or one per map layer. ``feats`` carry a
    leading image axis ``[g, M, ...]``, folded into the window axis for the construction and restored after."""
    g, m = feats[0].shape[:2]
    flat = [f.reshape(g * m, *f.shape[2:]) for f in feats]
    columns = [stack_columns(flat)] if layout == "tokens" else [paper_columns(map_as_tokens(f)) for f in flat]
    return [c.view(g, m, *c.shape[1:]) for c in columns]


def _reference_side(ref: list[torch.Tensor], layout: str, names: list[str]) -> dict:
    """What skld, jsd and wsd need from the reference windows alone, each with a leading axis 1 to broadcast."""
    r = [t.unsqueeze(0) for t in ref]
    cols = _columns_of(r, layout)
    shared: dict = {"cols": cols}
    if any(name in BINNED for name in names):
        qs = [F.softmax(xr, dim=-2).add_(EPS) for xr in cols]  # the heads' clamp at EPS: see _binned
        shared["bins"] = [(q, q.log(), torch.xlogy(q, q), q / 2) for q in qs]
    if "wsd" in names:  # wsd runs in at least fp32: its own columns only for lower-precision features
        wide = cols if _is_wide(r[0]) else _columns_of([at_least_fp32(t) for t in r], layout)
        shared["wsd"] = [(xr, F.softmax(xr, dim=-1).cumsum(-2)) for xr in wide]
    return shared


def _is_wide(x: torch.Tensor) -> bool:
    return at_least_fp32(x).dtype == x.dtype


def _taps_scores(ref: list[torch.Tensor], dis: list[torch.Tensor], layout: str, names: list[str]) -> dict:
    """l2, cos and cos_channel ``[n, w]`` of distorted taps ``[n, w, ...]`` against the reference ``[w, ...]``, a few
    images and one layer at a time (a whole chunk's intermediates would be fresh pages every time), as the heads alone
    reduce them. ``F.cosine_similarity(d, r)`` is ``((d / |d|) * (r / |r|)).sum()`` with both norms clamped at its
    eps: the reference's unit vectors are computed once, by the same operations."""
    cos_dims = {name: dim for name, dim in (("cos", -1), ("cos_channel", -1 if layout == "tokens" else -3))
                if name in names}
    units = {dim: [_unit(r, dim) for r in ref] for dim in set(cos_dims.values())}
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in names if name in ("l2", *cos_dims)}
    for images in _image_groups(dis[0].shape[0], dis[0].shape[1]):
        group = [d[images] for d in dis]
        if "l2" in rows:
            rows["l2"].append(torch.stack([((d - r) ** 2).flatten(2).mean(2) for r, d in zip(ref, group)], 2))
        for name, dim in cos_dims.items():
            rows[name].append(torch.stack([_window_mean(1 - (_unit(d, dim) * u).sum(dim))
                                           for u, d in zip(units[dim], group)], 2))
    out = {}
    for name, parts in rows.items():
        terms = torch.cat(parts)
        out[name] = terms.to(sum_dtype(terms.dtype)).sum(2)
    return out


def _image_groups(n: int, windows: int) -> list[slice]:
    """Slices of ``n`` images holding at least two windows each where there are two: PyTorch sums a single output
    row in parallel halves, which rounds differently from the same row among others (as the heads alone see it)."""
    per = max(1, -(-2 // windows))
    starts = list(range(0, n, per))
    if len(starts) > 1 and n - starts[-1] < per:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], n])]


def _unit(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` over its L2 norm along ``dim``, the norm clamped at COS_EPS: F.cosine_similarity's first step."""
    return x / torch.linalg.vector_norm(x, 2, dim=dim, keepdim=True).clamp_min(COS_EPS)


def _slice_columns(shared: dict, dis: list[torch.Tensor], layout: str, names: list[str]) -> dict:
    """Per column, before the mean over columns: ``{name: one [g, w, J] per column set}`` for skld, jsd and wsd of
    distorted taps ``[g, w, ...]`` against the reference side ``shared`` (one set for tokens, one per map layer).

    skld's and jsd's steps are per column (a reduction over the 64 rows, or elementwise): they run on blocks of
    columns whose intermediates stay in cache, and the per-column finals (inf to 0, the halves, the adaptive L2
    weight) once on the whole rows. wsd's softmax runs over the columns: it takes whole rows, image by image."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in DISTRIBUTION if name in names}
    wide = _is_wide(dis[0])
    cols = _columns_of(dis, layout)
    # The column L2 term of skld and wsd: computed once when both run in the features' dtype.
    sq = "skld" in out or (wide and "wsd" in out)
    sq_rows: list[torch.Tensor | None] = [None] * len(cols)
    for i, (xr, xd) in enumerate(zip(shared["cols"], cols)):
        bins = shared["bins"][i] if "bins" in shared else None
        if bins is None and not sq:  # wsd alone below fp32: nothing per block
            continue
        width = max(1, BLOCK_ELEMENTS // xd[..., :1].numel() // BLOCK_COLUMNS) * BLOCK_COLUMNS
        blocks = [_column_block(xd, xr, bins, sq, out, slice(c, c + width)) for c in range(0, xd.shape[-1], width)]
        rows = {key: torch.cat([b[key] for b in blocks], -1) for key in blocks[0]}
        for name in BINNED:
            if name in out:
                value = (inf_to_zero(rows[name + "_p"]) + inf_to_zero(rows[name + "_q"])) / 2
                out[name].append(value + rows["sq"] * adaptive_weight(value) if name == "skld" else value)
        sq_rows[i] = rows.get("sq")
    if "wsd" in out:
        out["wsd"] = _wsd_columns(shared["wsd"], dis, cols if wide else None, sq_rows, layout)
    return out


def _wsd_columns(ref_side: list[tuple[torch.Tensor, torch.Tensor]], dis: list[torch.Tensor],
                 cols: list[torch.Tensor] | None, sq_rows: list[torch.Tensor | None], layout: str) -> list[torch.Tensor]:
    """wsd per column ``[g, w, J]``, one per column set, one distorted image at a time (its softmax over whole rows
    and cumsum hold a few copies of the image's columns). ``cols``/``sq_rows``: the columns and column L2 terms of
    features already in at least fp32; ``None`` for lower precision, where wsd builds its own in fp32."""
    per_set: list[list[torch.Tensor]] = [[] for _ in ref_side]
    for j in range(dis[0].shape[0]):
        own = [c[j : j + 1] for c in cols] if cols is not None else _columns_of(
            [at_least_fp32(d[j : j + 1]) for d in dis], layout)
        for i, ((wxr, v), wxd) in enumerate(zip(ref_side, own)):
            wsd = F.softmax(wxd, dim=-1).cumsum(-2).sub_(v).abs_()[..., :-1, :].sum(-2)
            wsq = sq_rows[i][j : j + 1] if cols is not None else ((wxd - wxr) ** 2).sum(-2)
            per_set[i].append(wsd + wsq * adaptive_weight(wsd))
    return [torch.cat(v) for v in per_set]


def _column_block(xd: torch.Tensor, xr: torch.Tensor, bins: tuple | None, sq: bool, names, c: slice
                  ) -> dict[str, torch.Tensor]:
    """The per-column sums ``[g, w, c]`` of one block of columns ``c``: the column L2 term ("sq") and the four KL
    rows of skld and jsd ("skld_p", "skld_q", "jsd_p", "jsd_q"; inf not yet set to 0)."""
    xd_c = xd[..., c]
    out = {"sq": ((xd_c - xr[..., c]) ** 2).sum(-2)} if sq else {}
    if bins is not None:
        out.update(_binned(xd_c, *(b[..., c] for b in bins), names))
    return out


def _binned(xd: torch.Tensor, q: torch.Tensor, log_q: torch.Tensor, q_log_q: torch.Tensor, half_q: torch.Tensor,
            names) -> dict[str, torch.Tensor]:
    """skld's and jsd's KL rows per column of a block of columns ``[g, w, 64, c]``, sharing p.

    ``F.kl_div(input, target)`` is ``xlogy(target, target) - target * input``: the same operations run here, with
    ``xlogy(p, p)`` computed once for both heads, so every element rounds as in the heads alone. Two steps are
    rewritten exactly: the heads' clamp at EPS after adding EPS to a softmax never changes a value (rounding is
    monotone), and ``(p + q) / 2`` is ``q / 2 + 0.5 * p`` (halving is exact above the subnormals, p and q >= EPS)."""
    p = F.softmax(xd, dim=-2).add_(EPS)
    p_log_p = torch.xlogy(p, p)
    out = {}
    if "skld" in names:
        out["skld_p"] = _kl_rows(p_log_p, p, log_q)
        out["skld_q"] = _kl_rows(q_log_q, q, p.log())
    if "jsd" in names:
        log_mean = torch.add(half_q, p, alpha=0.5).add_(JSD_MEAN_EPS).log_()
        out["jsd_p"] = _kl_rows(p_log_p, p, log_mean)
        out["jsd_q"] = _kl_rows(q_log_q, q, log_mean)
    return out


def _kl_rows(target_log_target: torch.Tensor, target: torch.Tensor, log_input: torch.Tensor) -> torch.Tensor:
    """``F.kl_div(log_input, target, reduction="none").sum(-2)`` from ``xlogy(target, target)`` (inf kept)."""
    return (target_log_target - target * log_input).sum(-2)


def _window_mean(x: torch.Tensor) -> torch.Tensor:
    """``guarded_mean`` per window of ``[g, w, ...]`` -> ``[g, w]``."""
    return guarded_mean(x.reshape(x.shape[0] * x.shape[1], -1)).view(x.shape[0], x.shape[1])
