"""Spatial merging (algorithm §3, §4, §7): static / dynamic split, dominant and contextual tokens, VisionZip.

Per-frame work is batched over frames: all frames of a video are ranked by attention in one stable sort
of an (F, N) matrix; the static means of all segments are one ``embedding_bag``; only the selected tokens
are gathered. (The clustering itself is `cluster.dpc_knn_ragged`, one batch for all sets.)

Ties: attention ties go to the lower spatial index (stable descending sort); key-similarity ties in
VisionZip go to the lower-index target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lmms_holitom.ops.cluster import gather_rows, host_tensor, ragged_index

__all__ = [
    "VisionZipMerge",
    "first_true_positions",
    "select_dominant",
    "static_means",
    "take_first",
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


def static_means(
    features: Tensor, starts: list[int], ends: list[int], positions: Tensor, sizes: list[int]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Mean over its segment's frames of every static position, all segments in one op.

    Args:
        features: (F, N, E).
        starts, ends: the B segments [start, end].
        positions: (sum sizes,) long, the static positions of segment 0, then of segment 1, ...

    Returns:
        ``(means, index, bag, width)``: (sum sizes, E) in features' dtype, in the order of
        ``positions``; the (entries,) flat dense indices ``f * N + n`` read and the (entries,) bag (static
        position) each belongs to; (sum sizes,) long frames per bag. One
        ``embedding_bag(mode="mean")`` over the flattened features: a bag per static position holding its
        W_b rows, so it reads only the rows needed (no gathered copy, no pass over dynamic positions).
    """
    F, N, E = features.shape
    device = features.device
    widths = [e - s + 1 for s, e in zip(starts, ends)]
    per_bag = host_tensor(np.repeat(np.array([widths, starts]), sizes, axis=1), device)  # (2, bags)
    width, start = per_bag.unbind(0)
    entries = sum(W * S for W, S in zip(widths, sizes))
    bag = torch.repeat_interleave(torch.arange(positions.shape[0], device=device), width, output_size=entries)
    offsets = torch.cumsum(width, 0) - width
    frame = start[bag] + torch.arange(entries, device=device) - offsets[bag]
    index = frame * N + positions[bag]
    means = torch.nn.functional.embedding_bag(index, features.reshape(F * N, E), offsets, mode="mean")
    return means, index, bag, width


def take_first(order: Tensor, sizes: list[int]) -> Tensor:
    """Row b's first ``sizes[b]`` entries of ``order`` (B, n), concatenated: (sum sizes,)."""
    return order.flatten().index_select(0, ragged_index(sizes, order.shape[1], order.device))


@dataclass(frozen=True)
class VisionZipMerge:
    """VisionZip's tokens and how they were made (F frames, T tokens per frame, D dominant, C = T - D).

    Attributes:
        tokens: (F, T, E) in features' dtype; per frame D dominant then C contextual tokens.
        positions: (F, T) long spatial index of each token (contextual: its target's).
        others: (F, R - C) long positions merged into a target (R = N - D), increasing.
        assign: (F, R - C) long target 0..C-1 each of ``others`` joined.
        members: (F, C) fp32 number of members of each target.
    """

    tokens: Tensor
    positions: Tensor
    others: Tensor
    assign: Tensor
    members: Tensor


def visionzip_tokens(features: Tensor, attention: Tensor, keys: Tensor, tokens: int, dominant: int) -> VisionZipMerge:
    """VisionZip, video adaptation (algorithm §7), all frames at once.

    Per frame: the `dominant` tokens of highest attention (original order), then ``tokens - dominant``
    contextual tokens: the remaining R = N - dominant tokens (increasing position) provide evenly spaced
    targets ``arange(0, R, step)[:contextual]`` with ``step = max(1, R // contextual)``; every other
    remaining token joins the target whose key is most cosine-similar (ties: lower target); a contextual
    token is ``target + mean(members)`` (mean 0 without members).

    Args:
        features: (F, N, E); attention: (F, N); keys: (F, N, Dk).
        tokens: tokens per frame (1..N); dominant: 0..tokens.

    Returns:
        `VisionZipMerge`.
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
        none = torch.zeros((F, 0), dtype=torch.long, device=device)
        return VisionZipMerge(dom_tokens, dom_pos, none, none, torch.zeros((F, 0), device=device))
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
    member_counts = onehot.view(F, contextual, N).sum(dim=-1, dtype=torch.float32)
    ctx = gather_rows(features, target_pos).float() + sums / member_counts.clamp_min(1).unsqueeze(-1)
    out = torch.cat([dom_tokens, ctx.to(features.dtype)], dim=1)
    return VisionZipMerge(out, torch.cat([dom_pos, target_pos], dim=1), other_pos, assign, member_counts)
