"""Per-layer distances (l2, cosine) and the embedding cosine, as ZS-IQA computes them, vectorised over windows.

Every function takes ``ref, dis``: lists with one tensor per tapped layer, ``[M, T, C]`` (tokens) or
``[M, C, H, W]`` (maps), and works window by window along the leading axis ``M``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Feats

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


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least fp32: the paper sums per-layer Python floats (``.item()``), so fp16 layer terms are summed in fp32."""
    return torch.promote_types(dtype, torch.float32)


def _guarded_mean(x: torch.Tensor) -> torch.Tensor:
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
    return terms.to(_sum_dtype(terms.dtype)).sum(1)


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
    return torch.stack([_guarded_mean(_one_minus_cos(r, d, -1)) for r, d in zip(ref, dis)], 1)


def cos(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: sum over layers of ``cos_layer_terms``."""
    terms = cos_layer_terms(ref, dis)
    return terms.to(_sum_dtype(terms.dtype)).sum(1)


def _token_cos_channel_terms(ref: Feats, dis: Feats) -> list[torch.Tensor]:
    # For unit vectors 1 - cos = sum_c (u_D,c - u_R,c)^2 / 2; exact unless a feature vector has norm < COS_EPS.
    return [((_unit(d, -1) - _unit(r, -1)) ** 2 / 2).mean(1) for r, d in zip(ref, dis)]


def cos_channel_terms(ref: Feats, dis: Feats) -> list[torch.Tensor]:
    """Per layer ``[M, C]`` summing over C to the ``cos`` layer term.

    Tokens: unit-feature squared differences / 2, averaged over tokens. Maps (width-axis cosine): each channel's
    share of the guarded mean over (C, H): the sum over H of its finite ``1 - cos`` values / the count over (C, H).
    """
    if feature_layout(ref, dis) == "tokens":
        return _token_cos_channel_terms(ref, dis)
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
    return torch.stack([_guarded_mean(_one_minus_cos(r, d, dim)) for r, d in zip(ref, dis)], 1)


def cos_channel(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: sum over layers of ``cos_channel_layer_terms``."""
    terms = cos_channel_layer_terms(ref, dis)
    return terms.to(_sum_dtype(terms.dtype)).sum(1)


def cos_channel_channel_terms(ref: Feats, dis: Feats) -> list[torch.Tensor]:
    """Per layer ``[M, C]``: unit-feature (over channels) squared differences / 2, averaged over tokens or positions."""
    if feature_layout(ref, dis) == "tokens":
        return _token_cos_channel_terms(ref, dis)
    return [((_unit(d, 1) - _unit(r, 1)) ** 2 / 2).mean((2, 3)) for r, d in zip(ref, dis)]


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
    return _guarded_mean(_one_minus_cos(F.normalize(r, dim=-1), F.normalize(d, dim=-1), -1))
