"""Spatial merging (spec §3, §4, §7): static / dynamic split, dominant and contextual tokens, VisionZip.

Per-frame work is batched over frames: all frames of a video are ranked by attention in one stable sort
of an (F, N) matrix, and the contextual clustering runs once per segment on a (W, R, E) batch (all frames
of a segment have the same number R of remaining tokens). Only the selected tokens are gathered.

Ties: attention ties go to the lower spatial index (stable descending sort); key-similarity ties in
VisionZip go to the lower-index target.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lmms_holitom.ops.cluster import _merge, _select, gather_rows

__all__ = [
    "first_true_positions",
    "segment_contextual_tokens",
    "segment_static_tokens",
    "select_dominant",
    "static_means",
    "visionzip_tokens",
]


def select_dominant(attention: Tensor, candidates: Tensor, counts: Tensor) -> Tensor:
    """Mark, in every frame, the `counts[f]` candidate tokens with the highest attention.

    Args:
        attention: (F, N) finite saliency.
        candidates: (F, N) bool, the tokens that may be chosen (the frame's dynamic tokens).
        counts: (F,) long, how many to choose per frame (<= candidates per frame).

    Returns:
        (F, N) bool mask of the chosen (dominant) tokens. Ties go to the lower index.
    """
    F, N = attention.shape
    score = attention.float().masked_fill(~candidates, float("-inf"))
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(N, device=order.device).expand(F, N))
    return rank < counts.unsqueeze(1)


def first_true_positions(mask: Tensor) -> Tensor:
    """Column indices ordered True-first, each part increasing: (…, N) bool -> (…, N) long.

    ``first_true_positions(mask)[f, :c]`` are the positions of the ``c`` True entries of row f (when it
    has c of them) in increasing order, without a host sync.
    """
    return torch.argsort((~mask).to(torch.uint8), dim=-1, stable=True)


def static_means(features: Tensor, windows: list[tuple[int, int, Tensor]]) -> Tensor:
    """Mean over its segment's frames of every static position, for all segments in one op.

    Args:
        features: (F, N, E).
        windows: ``(start, end, positions)`` per segment; positions (S_i,) long on the features' device.

    Returns:
        (sum S_i, E) in features' dtype, segment by segment, positions in the given order. One
        ``embedding_bag(mode="mean")`` over the flattened features: it reads only the W_i * S_i rows
        needed (no gathered copy, no pass over the dynamic positions).
    """
    F, N, E = features.shape
    device = features.device
    index, sizes = [], []
    for start, end, positions in windows:
        frames = torch.arange(start, end + 1, device=device)
        index.append((positions.unsqueeze(1) + frames.unsqueeze(0) * N).flatten())  # bag per position
        sizes += [end - start + 1] * positions.shape[0]
    offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0).to(device)
    return torch.nn.functional.embedding_bag(torch.cat(index), features.reshape(F * N, E), offsets, mode="mean")


def segment_static_tokens(
    static: Tensor,
    static_positions: Tensor,
    clusters: int,
    k: int,
    beta: float,
    beta_merge: bool,
) -> tuple[Tensor, Tensor]:
    """Static tokens of one segment (spec §4b): DPC-kNN centres of the static means, merged.

    Args:
        static: (S, E) the segment's static tokens (means over its frames, `static_means`).
        static_positions: (S,) long, increasing static positions, S >= clusters >= 1.
        clusters: ``round(S * r')``; k: ``min(knn_k, clusters)``.

    Returns:
        ``(tokens, positions)``: (clusters, E) in static's dtype, centre-index order; (clusters,) long.
        Distances and the merge are computed in fp32 and cast once at the end.
    """
    xb = static.unsqueeze(0)
    with torch.no_grad():
        centres, dist = _select(xb, clusters, k)
    tokens = _merge(xb, centres, dist, beta, beta_merge)[0]
    return tokens, static_positions[centres[0]]


def segment_contextual_tokens(
    features: Tensor,
    start: int,
    end: int,
    remaining_positions: Tensor,
    contextual: int,
    k: int,
    beta: float,
    beta_merge: bool,
) -> tuple[Tensor, Tensor]:
    """Contextual tokens of every frame of segment [start, end] (spec §4a, our semantics).

    In every frame, the remaining dynamic tokens (not dominant) are clustered with DPC-kNN into
    `contextual` centres, merged as in §4c; all W frames of the segment are one batch.

    Args:
        features: (F, N, E).
        remaining_positions: (W, R) long, increasing per row, the frames' remaining dynamic positions.
        contextual: centres per frame, 1 <= contextual <= R; k: ``min(knn_k, contextual)``.

    Returns:
        ``(tokens, positions)``: (W, contextual, E) in features' dtype; (W, contextual) long.
    """
    x = gather_rows(features[start : end + 1], remaining_positions)  # (W, R, E)
    with torch.no_grad():
        centres, dist = _select(x, contextual, k)
    tokens = _merge(x, centres, dist, beta, beta_merge)
    return tokens, torch.gather(remaining_positions, 1, centres)


def visionzip_tokens(
    features: Tensor, attention: Tensor, keys: Tensor, tokens: int, dominant: int
) -> tuple[Tensor, Tensor]:
    """VisionZip, video adaptation (spec §7), all frames at once.

    Per frame: the `dominant` tokens of highest attention (original order), then ``tokens - dominant``
    contextual tokens: the remaining R = N - dominant tokens (increasing position) provide evenly spaced
    targets ``arange(0, R, step)[:contextual]`` with ``step = max(1, R // contextual)``; every other
    remaining token joins the target whose key is most cosine-similar (ties: lower target); a contextual
    token is ``target + mean(members)`` (mean 0 without members).

    Args:
        features: (F, N, E); attention: (F, N); keys: (F, N, Dk).
        tokens: tokens per frame (1..N); dominant: 0..tokens.

    Returns:
        ``(tokens, positions)``: (F, tokens, E) in features' dtype; (F, tokens) long.
    """
    F, N, _ = features.shape
    device = features.device
    contextual = tokens - dominant
    counts = torch.full((F,), dominant, dtype=torch.long, device=device)
    everything = torch.ones((F, N), dtype=torch.bool, device=device)
    chosen = select_dominant(attention, everything, counts)
    order = first_true_positions(chosen)  # dominant positions first, then the remaining ones
    dom_pos, rest_pos = order[:, :dominant], order[:, dominant:]
    dom_tokens = gather_rows(features, dom_pos)
    if contextual == 0:
        return dom_tokens, dom_pos
    R = N - dominant
    step = max(1, R // contextual)
    target_idx = torch.arange(0, R, step, device=device)[:contextual]
    is_target = torch.zeros(R, dtype=torch.bool, device=device)
    is_target[target_idx] = True
    other_idx = first_true_positions(~is_target)[: R - contextual]
    target_pos, other_pos = rest_pos[:, target_idx], rest_pos[:, other_idx]  # (F, c), (F, R-c)
    kt = gather_rows(keys, target_pos).float()
    ko = gather_rows(keys, other_pos).float()
    kt = kt / torch.linalg.vector_norm(kt, dim=-1, keepdim=True).clamp_min(1e-12)
    ko = ko / torch.linalg.vector_norm(ko, dim=-1, keepdim=True).clamp_min(1e-12)
    assign = torch.bmm(ko, kt.transpose(1, 2)).argmax(dim=-1)  # (F, R-c) index into targets
    # sums of the members straight from the features: a 0/1 (F, c, N) matrix times (F, N, E)
    onehot = torch.zeros((F, contextual * N), dtype=features.dtype, device=device)
    onehot.scatter_(1, assign * N + other_pos, 1.0)
    sums = torch.bmm(onehot.view(F, contextual, N), features).float()
    member_counts = onehot.view(F, contextual, N).sum(dim=-1, dtype=torch.float32).unsqueeze(-1)
    ctx = gather_rows(features, target_pos).float() + sums / member_counts.clamp_min(1)
    out = torch.cat([dom_tokens, ctx.to(features.dtype)], dim=1)
    return out, torch.cat([dom_pos, target_pos], dim=1)
