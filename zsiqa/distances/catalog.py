"""Registers the ZS-IQA distance heads: paper heads reproduce the official code, quirks included; fixes sit beside."""
from __future__ import annotations

from .basic import (
    cos,
    cos_channel,
    cos_channel_channel_terms,
    cos_channel_layer_terms,
    cos_channel_terms,
    cos_layer_terms,
    embed_cos,
    l2,
    l2_channel_terms,
    l2_layer_terms,
)
from .distribution import jsd, skld, swd, swd_fixed, wsd
from .registry import DistanceHead, register_distance

for _head in (
    DistanceHead(
        "l2", l2, fused="l2", layer_terms=l2_layer_terms, channel_terms=l2_channel_terms,
        doc="Sum over layers of the per-layer MSE between features (paper).",
    ),
    DistanceHead(
        "cos", cos, fused="cos", layer_terms=cos_layer_terms, channel_terms=cos_channel_terms,
        doc="Sum over layers of mean (1 - cosine) along the last axis: channels of tokens, "
        "WIDTH of maps (paper quirk kept).",
    ),
    DistanceHead(
        "cos_channel", cos_channel, fused="cos_channel", layer_terms=cos_channel_layer_terms, channel_terms=cos_channel_channel_terms,
        doc="Sum over layers of mean (1 - cosine over channels) per token or position (fixed cos; same on tokens).",
    ),
    DistanceHead(
        "skld", skld, fused="skld",
        doc="Symmetric KL + weighted L2 over the paper's 64-bin memory-order columns, log(.+1)^0.25 (quirks kept).",
    ),
    DistanceHead(
        "jsd", jsd, fused="jsd",
        doc="Jensen-Shannon (no L2 term) over the paper's 64-bin memory-order columns, log(.+1)^0.25 (quirks kept).",
    ),
    DistanceHead(
        "wsd", wsd, fused="wsd",
        doc="1-D Wasserstein + weighted L2 with the paper's row-wise softmax, in fp32, log(.+1)^0.25 (quirks kept).",
    ),
    DistanceHead(
        "swd", swd, differentiable=False,
        doc="Sliced Wasserstein over layers, fresh global-RNG directions per window: order-dependent (paper quirk).",
    ),
    DistanceHead(
        "swd_fixed", swd_fixed,
        doc="Sliced Wasserstein with one seed-0 direction set per dimension: batch- and order-independent (fixed swd).",
    ),
    DistanceHead(
        "embed_cos", embed_cos, kind="embed",
        doc="1 - cosine of the L2-normalised final embedding, averaged over tokens for [M, T, D] (paper embed_* cos).",
    ),
):
    register_distance(_head)
