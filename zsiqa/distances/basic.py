"""Per-layer distances (l2, cosine) and the embedding cosine, as ZS-IQA computes them, vectorised over windows.

Every function takes ``ref, dis``: lists with one tensor per tapped layer, ``[M, T, C]`` (tokens) or
``[M, C, H, W]`` (maps), and works window by window along the leading axis ``M``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import Feats

COS_EPS = 1e-8  # F.cosine_similarity's default, as the paper used


def _check_lists(ref: Feats, dis: Feats) -> None:
    if not isinstance(ref, (list, tuple)) or not isinstance(dis, (list, tuple)):
        raise ValueError(f"ref and dis must be lists of tensors; got {type(ref).__name__} and {type(dis).__name__}")


def feature_layout(ref: Feats, dis: Feats) -> str:
    """``"tokens"`` if every layer is ``[M, T, C]``, ``"maps"`` if every layer is ``[M, C, H, W]``, else ValueError."""
    _check_lists(ref, dis)
    if not ref or len(ref) != len(dis):
        raise ValueError(f"ref has {len(ref)} layers and dis {len(dis)}; both need the same number, at least one")
    for i, (r, d) in enumerate(zip(ref, dis)):
        if r.shape != d.shape:
            raise ValueError(f"layer {i}: ref is {tuple(r.shape)} but dis is {tuple(d.shape)}; shapes must match")
        if r.ndim not in (3, 4) or r.shape[0] != ref[0].shape[0]:
            raise ValueError(
                f"layer {i} has shape {tuple(r.shape)}; every layer must be [M, T, C] or [M, C, H, W] with the same M"
            )
    ndims = {r.ndim for r in ref}
    if len(ndims) > 1:
        raise ValueError(f"layers mix token and map layouts: {[tuple(r.shape) for r in ref]}")
    return "tokens" if ndims == {3} else "maps"


def sum_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least fp32: the paper sums per-layer Python floats (``.item()``), so fp16 layer terms are summed in fp32."""
    return torch.promote_types(dtype, torch.float32)


def guarded_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the first, with +-inf set to 0 and NaN skipped.

    The paper applied this guard only to CLIP-RN50 (fp16 overflow); we apply it to every cosine: it changes nothing
    when all cosines are finite, and skips the non-finite ones where the paper would have produced inf or nan.
    """
    x = x.reshape(x.shape[0], -1)
    return x.masked_fill(torch.isinf(x), 0).nanmean(1)


def _unit(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Divide by the L2 norm along ``dim``, clamped at COS_EPS as F.cosine_similarity does."""
    return x / torch.linalg.vector_norm(x, dim=dim, keepdim=True).clamp_min(COS_EPS)


def l2_layer_terms(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M, L]``: per-layer mean of ``(dis - ref)^2`` over all non-window axes."""
    feature_layout(ref, dis)
    return torch.stack([((d - r) ** 2).flatten(1).mean(1) for r, d in zip(ref, dis)], 1)


def l2(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: sum over layers of the per-layer MSE."""
    terms = l2_layer_terms(ref, dis)
    return terms.to(sum_dtype(terms.dtype)).sum(1)


def l2_channel_terms(ref: Feats, dis: Feats) -> list[torch.Tensor]:
    """Per layer ``[M, C]``: mean of ``(dis - ref)^2`` over positions, divided by ``C`` (sums to the layer term)."""
    layout = feature_layout(ref, dis)
    if layout == "tokens":
        return [((d - r) ** 2).mean(1) / r.shape[2] for r, d in zip(ref, dis)]
    return [((d - r) ** 2).mean((2, 3)) / r.shape[1] for r, d in zip(ref, dis)]


def _one_minus_cos(r: torch.Tensor, d: torch.Tensor, dim: int) -> torch.Tensor:
    return 1 - F.cosine_similarity(d, r, dim=dim, eps=COS_EPS)


def cos_layer_terms(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M, L]``: mean of ``1 - cos`` along the last axis: channels of tokens, WIDTH of NCHW maps (paper quirk)."""
    feature_layout(ref, dis)
    return torch.stack([guarded_mean(_one_minus_cos(r, d, -1)) for r, d in zip(ref, dis)], 1)


def cos(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: sum over layers of ``cos_layer_terms``."""
    terms = cos_layer_terms(ref, dis)
    return terms.to(sum_dtype(terms.dtype)).sum(1)


def _channel_split_cos(r: torch.Tensor, d: torch.Tensor, dim: int) -> torch.Tensor:
    """``[M, C]``: the guarded mean over positions of ``1 - cos`` along channel axis ``dim``, split over channels.

    For unit vectors ``1 - cos = sum_c (u_D,c - u_R,c)^2 / 2``, the share of channel c. That identity fails where a
    feature vector has norm < COS_EPS (all-zero ReLU maps over black regions, tiny fp16 features): ``1 - cos`` is 1
    there but the shares sum to 0 or 1/2. So each position's ``1 - cos``, computed as the layer term computes it,
    minus the sum of its shares is spread evenly over the C channels: the channel terms sum to the layer term in
    every case, and untrained per-channel weights equal the zero-shot score. Positions the layer term's guard
    skips (NaN, e.g. zero vectors in fp16, where COS_EPS underflows) or zeroes (inf) contribute nothing. Computed in
    at least fp32: for fp16 features the layer term is this sum rounded to fp16.
    """
    work = sum_dtype(r.dtype)
    value = _one_minus_cos(r, d, dim).flatten(1).to(work)  # [M, P], as the layer term
    shares = (_unit(d.to(work), dim) - _unit(r.to(work), dim)) ** 2 / 2
    shares = shares if dim == -1 else shares.flatten(2).transpose(1, 2)  # [M, P, C]
    shares = shares.masked_fill(~torch.isfinite(shares), 0)
    finite = torch.isfinite(value)
    residual = torch.where(finite, value, 0) - shares.sum(2)
    shares = (shares + residual.unsqueeze(2) / shares.shape[2]).masked_fill(~finite.unsqueeze(2), 0)
    count = (~torch.isnan(value)).sum(1, keepdim=True)
    return shares.sum(1) / count


def cos_channel_terms(ref: Feats, dis: Feats) -> list[torch.Tensor]:
    """Per layer ``[M, C]`` summing over C to the ``cos`` layer term.

    Tokens: each channel's share of ``1 - cos`` per token (``_channel_split_cos``). Maps (width-axis cosine): each
    channel's share of the guarded mean over (C, H): the sum over H of its finite ``1 - cos`` values / the count over
    (C, H).
    """
    if feature_layout(ref, dis) == "tokens":
        return [_channel_split_cos(r, d, -1) for r, d in zip(ref, dis)]
    terms = []
    for r, d in zip(ref, dis):
        sim = _one_minus_cos(r, d, -1)
        sim = sim.masked_fill(torch.isinf(sim), 0)
        count = (~torch.isnan(sim)).flatten(1).sum(1, keepdim=True)
        terms.append(sim.nansum(2) / count)
    return terms


def cos_channel_layer_terms(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M, L]``: mean of ``1 - cos`` over the channel axis: per token (tokens) or per spatial position (maps)."""
    dim = -1 if feature_layout(ref, dis) == "tokens" else 1
    return torch.stack([guarded_mean(_one_minus_cos(r, d, dim)) for r, d in zip(ref, dis)], 1)


def cos_channel(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: sum over layers of ``cos_channel_layer_terms``."""
    terms = cos_channel_layer_terms(ref, dis)
    return terms.to(sum_dtype(terms.dtype)).sum(1)


def cos_channel_channel_terms(ref: Feats, dis: Feats) -> list[torch.Tensor]:
    """Per layer ``[M, C]``: each channel's share of ``1 - cos`` over channels, per token or position
    (``_channel_split_cos``), averaged as the ``cos_channel`` layer term averages."""
    dim = -1 if feature_layout(ref, dis) == "tokens" else 1
    return [_channel_split_cos(r, d, dim) for r, d in zip(ref, dis)]


def embed_cos(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: ``1 - cos`` of L2-normalised final embeddings ``[M, D]``, or its mean over tokens for ``[M, T, D]``."""
    _check_lists(ref, dis)
    if len(ref) != 1 or len(dis) != 1:
        raise ValueError(f"embed_cos takes one embedding tensor per side; got {len(ref)} (ref) and {len(dis)} (dis)")
    r, d = ref[0], dis[0]
    if r.shape != d.shape or r.ndim not in (2, 3):
        raise ValueError(
            f"embed_cos needs ref and dis embeddings of one shape, [M, D] or [M, T, D]; "
            f"got {tuple(r.shape)} and {tuple(d.shape)}"
        )
    # The paper F.normalize()s the embeddings before the cosine.
    return guarded_mean(_one_minus_cos(F.normalize(r, dim=-1), F.normalize(d, dim=-1), -1))
