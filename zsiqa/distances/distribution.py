"""Distribution distances (skld, jsd, wsd) as ZS-IQA applies Liao et al.'s code, and sliced Wasserstein (swd).

skld/jsd/wsd keep the official construction bit for bit (docs/zsiqa-method.md section 4): the token stack
``[M, L, T, C]`` of each window is zero-padded or cropped to multiples of 8 (``round(T/8)*8`` rows at the bottom,
``round(C/8)*8`` columns at the left), flattened in memory order and read as ``[64, N/64]``: 64-bin
pseudo-distributions, one per column, mixing layers, tokens and channels. A window scores ``log(final + 1) ** 0.25``.

For maps (CNNs; the official code crashes on them) each layer is read as one token stack ``[1, H*W, C]``
(positions x channels), ``final`` is computed per layer and averaged over layers before ``log(. + 1) ** 0.25``,
as Liao et al.'s CNN code averages per-layer distances. This is a zsiqa extension.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from .basic import feature_layout
from .registry import Feats

WIN = 8
EPS = 1e-10
JSD_MEAN_EPS = 1e-17


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _token_stack(feats: Feats) -> torch.Tensor:
    """``[M, L, T, C]`` from equally shaped token layers."""
    _token_stack_shape(feats)
    return torch.stack(list(feats), 1)


def _token_stack_shape(feats: Feats) -> None:
    shapes = {tuple(f.shape) for f in feats}
    if len(shapes) > 1:
        raise ValueError(f"token layers must share one shape [M, T, C] to be stacked; got {sorted(shapes)}")


def map_as_tokens(x: torch.Tensor) -> torch.Tensor:
    """``[M, C, H, W] -> [M, 1, H*W, C]``: one layer, row-major positions as tokens."""
    return x.flatten(2).transpose(1, 2).unsqueeze(1)


def _paper_padding(rows: int, cols: int) -> tuple[int, int]:
    """``(rp, cp)``: the paper's rows added at the bottom and columns at the left (negative: cropped there)."""
    rp = round(rows / WIN) * WIN - rows
    cp = round(cols / WIN) * WIN - cols
    if rows + rp == 0 or cols + cp == 0:
        raise ValueError(
            f"{rows} tokens x {cols} channels: one rounds to zero under the paper's round(n/8)*8 rule; "
            "need at least 5 tokens (positions) and 5 channels (Python's round(4/8) is 0)"
        )
    return rp, cp


def paper_columns(x: torch.Tensor) -> torch.Tensor:
    """``[M, L, T, C] -> [M, 64, N/64]`` after the paper's pad/crop to multiples of 8.

    Paper quirk, kept: ZeroPad2d((cp, 0, 0, rp)) with rp = round(T/8)*8 - T and cp = round(C/8)*8 - C (Python round):
    zero tokens are appended at the bottom and zero channels prepended at the left; a negative value crops there.
    Its reshape([8, 8, L, -1]) then reshape([-1, L*patch_num]) is a plain memory-order reshape to [64, N/64].
    """
    rp, cp = _paper_padding(*x.shape[-2:])
    x = F.pad(x, (cp, 0, 0, rp))
    return x.reshape(x.shape[0], WIN * WIN, -1)


def stack_columns(feats: Feats) -> torch.Tensor:
    """``paper_columns(_token_stack(feats))`` with one copy: each layer is written straight into the padded stack."""
    _token_stack_shape(feats)
    m, rows, cols = feats[0].shape
    rp, cp = _paper_padding(rows, cols)
    out = feats[0].new_empty(m, len(feats), rows + rp, cols + cp)
    kept_rows, kept_cols = min(rows, rows + rp), min(cols, cols + cp)
    out[:, :, kept_rows:] = 0  # tokens appended at the bottom
    out[..., : max(cp, 0)] = 0  # channels prepended at the left
    for layer, f in enumerate(feats):
        out[:, layer, :kept_rows, max(cp, 0) :] = f[:, :kept_rows, cols - kept_cols :]
    return out.reshape(m, WIN * WIN, -1)


def adaptive_weight(z: torch.Tensor) -> torch.Tensor:
    """Liao et al.'s weight of the L2 term, w(z) = 1 / (sqrt(exp(-1/(z+10))) * (z+10)^2), written as they do."""
    return 1 / (torch.sqrt(torch.exp(-1 / (z + 10))) * (z + 10) ** 2)


def inf_to_zero(x: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(x == float("inf"), 0)


def _bin_distributions(xr: torch.Tensor, xd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``p`` (dis), ``q`` (ref): softmax over the 64 rows, + EPS, clamped at EPS (both as the paper does)."""
    p = (F.softmax(xd, dim=1) + EPS).clamp(min=EPS)
    q = (F.softmax(xr, dim=1) + EPS).clamp(min=EPS)
    return p, q


def _skld_final(xr: torch.Tensor, xd: torch.Tensor) -> torch.Tensor:
    """Symmetric KL per column plus the weighted column L2, averaged over columns: ``[M, 64, J] -> [M]``."""
    p, q = _bin_distributions(xr, xd)
    part1 = inf_to_zero(F.kl_div(q.log(), p, reduction="none").sum(1))
    part2 = inf_to_zero(F.kl_div(p.log(), q, reduction="none").sum(1))
    kld = (part1 + part2) / 2
    l2 = ((xd - xr) ** 2).sum(1)
    return (kld + l2 * adaptive_weight(kld)).mean(1)


def _jsd_final(xr: torch.Tensor, xd: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon per column, averaged over columns; no L2 term (the paper copies Liao's EfficientNet JSD)."""
    p, q = _bin_distributions(xr, xd)
    log_mean = ((p + q) / 2 + JSD_MEAN_EPS).log()
    part1 = inf_to_zero(F.kl_div(log_mean, p, reduction="none").sum(1))
    part2 = inf_to_zero(F.kl_div(log_mean, q, reduction="none").sum(1))
    return ((part1 + part2) / 2).mean(1)


def _wsd_final(xr: torch.Tensor, xd: torch.Tensor) -> torch.Tensor:
    """1-D Wasserstein per column plus the weighted column L2, averaged over columns.

    Paper quirk, kept: the softmax runs over the columns (each of the 64 rows sums to 1), so a column's masses are not
    normalised. POT's wasserstein_1d with positions 0..63 and p=1 then equals sum_{k=0}^{62} |cumsum P - cumsum Q|.
    """
    u = F.softmax(xd, dim=2).cumsum(1)
    v = F.softmax(xr, dim=2).cumsum(1)
    wsd = (u - v).abs()[:, :-1].sum(1)
    l2 = ((xd - xr) ** 2).sum(1)
    return (wsd + l2 * adaptive_weight(wsd)).mean(1)


def _squashed(ref: Feats, dis: Feats, final: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``log(final + 1) ** 0.25`` per window; ``final`` on the whole token stack, or averaged over map layers."""
    if feature_layout(ref, dis) == "tokens":
        value = final(stack_columns(ref), stack_columns(dis))
    else:
        value = torch.stack(
            [final(paper_columns(map_as_tokens(r)), paper_columns(map_as_tokens(d))) for r, d in zip(ref, dis)], 1
        ).mean(1)
    # Guard (not in the paper): rounding can leave jsd's final at about -1e-16 for identical inputs (its 1e-17 in the
    # mean), where the 0.25 power gives nan in fp64; clamping at 0 changes nothing wherever the paper gives a number.
    return torch.log(value.clamp(min=0) + 1) ** 0.25


def skld(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: symmetric-KL distribution distance (computed in the feature dtype, as the paper does)."""
    return _squashed(ref, dis, _skld_final)


def jsd(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: Jensen-Shannon distribution distance (computed in the feature dtype, as the paper does)."""
    return _squashed(ref, dis, _jsd_final)


def wsd(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: 1-D Wasserstein distribution distance; features are upcast to at least fp32, as the paper does."""
    return _squashed([at_least_fp32(r) for r in ref], [at_least_fp32(d) for d in dis], _wsd_final)


def _swd_inputs(ref: Feats, dis: Feats) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(ref, dis)`` pairs of ``[M, dim, n]`` in at least fp32 (the paper upcasts with ``.float()``).

    Tokens: one pair, dim = L layers, n = T*C (the paper's view of the stack). Maps: one pair per layer,
    dim = C channels, n = H*W positions (a zsiqa extension; the paper crashes on maps).
    """
    if feature_layout(ref, dis) == "tokens":
        pairs = [(_token_stack(ref).flatten(2), _token_stack(dis).flatten(2))]
    else:
        pairs = [(r.flatten(2), d.flatten(2)) for r, d in zip(ref, dis)]
    return [(at_least_fp32(r), at_least_fp32(d)) for r, d in pairs]


def _unit_rows(d: torch.Tensor) -> torch.Tensor:
    return d / torch.sqrt(torch.sum(d**2, dim=-1, keepdim=True))


def _sliced_wasserstein(xr: torch.Tensor, xd: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``[M]``: sum over samples of the mean over directions of (sorted projections of dis - of ref)^2.

    ``xr, xd``: ``[M, dim, n]``; ``directions``: ``[M, k, dim]`` (one set per window) or ``[k, dim]`` (shared).
    """
    pr = torch.sort(directions @ xr, dim=-1).values
    pd = torch.sort(directions @ xd, dim=-1).values
    return ((pd - pr) ** 2).mean(1).sum(-1)


def swd(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: sliced Wasserstein with fresh random directions per window from the global torch RNG.

    Paper quirk, kept: each window draws ``torch.randn(dim, dim)`` on the CPU global generator (the paper seeds it with
    0 once per run), one window after the other and, for maps, layer after layer, so scores depend on how many windows
    were scored before: a run is reproducible only in the same order. Use ``swd_fixed`` for order-free scores.
    """
    pairs = _swd_inputs(ref, dis)
    windows = pairs[0][0].shape[0]
    dims = [r.shape[1] for r, _ in pairs]
    draws = [[torch.randn(dim, dim, dtype=torch.float32) for dim in dims] for _ in range(windows)]
    return sum(
        _sliced_wasserstein(r, d, _unit_rows(torch.stack([w[i] for w in draws])).to(r.device, r.dtype))
        for i, (r, d) in enumerate(pairs)
    )


@functools.lru_cache(maxsize=None)
def _fixed_directions(dim: int) -> torch.Tensor:
    """``dim`` unit directions in ``R^dim`` from a dedicated generator seeded 0: the same for every window and call."""
    return _unit_rows(torch.randn(dim, dim, dtype=torch.float32, generator=torch.Generator().manual_seed(0)))


def swd_fixed(ref: Feats, dis: Feats) -> torch.Tensor:
    """``[M]``: sliced Wasserstein with one fixed direction set per dimension (batch- and order-independent)."""
    return sum(
        _sliced_wasserstein(r, d, _fixed_directions(r.shape[1]).to(r.device, r.dtype)) for r, d in _swd_inputs(ref, dis)
    )
