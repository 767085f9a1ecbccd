"""HoliTom's exact budget (algorithm §5c): an outer merge reconciled to a count fixed before the video is seen.

A serving engine sizes a video's placeholders before its encoder runs, so the count must be a function of the
video's shape and the retain ratio alone. HoliTom's own count follows the video (static segments, rounding);
these functions bring it to `exact_count`:

* `exact_count(F, N, retain_ratio) -> F · ceil(retain_ratio · N)`;
* `trim_keep(score, tier, group, count) -> (M,) bool` — which outputs stay when there are too many;
* `restore_pick(saliency, represented, taken, count) -> (count,) long` — which dense tokens come back when there
  are too few;
* `fit_to_count(video, features, attention, count) -> CompressedVideo` — the reconciled merge (tokens, plan,
  origins, kinds, stats), survivors in their order, restored tokens after their frame's tokens.

Deterministic (ties: the lower index), vectorised (sorts and scatters; no loop over tokens or frames).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from lmms_holitom.ops._checks import check_attention, check_features
from lmms_holitom.ops.compress import TOKEN_KINDS, CompressedVideo
from lmms_holitom.ops.plan import MergePlan

__all__ = ["exact_count", "fit_to_count", "restore_pick", "trim_keep"]

_STATIC, _RESTORED = TOKEN_KINDS.index("static"), TOKEN_KINDS.index("restored")


def exact_count(frames: int, tokens_per_frame: int, retain_ratio: float) -> int:
    """Visual tokens of HoliTom's exact budget: ``F · ceil(retain_ratio · N)`` (the product as written), which is
    HoliTom's own count for a video without static positions and lies in ``[F, F · N]`` for ratios in (0, 1]."""
    if not 0.0 < retain_ratio <= 1.0:
        raise ValueError(f"retain_ratio must be in (0, 1], got {retain_ratio!r}")
    return frames * math.ceil(retain_ratio * tokens_per_frame)


def _rank(score: Tensor, tier: Tensor) -> Tensor:
    """(M,) -> (M,) long rank 0..M-1 by (tier high first, score high first, index low first)."""
    order = torch.argsort(score, descending=True, stable=True)
    order = order.index_select(0, torch.argsort(tier.index_select(0, order), descending=True, stable=True))
    return torch.empty_like(order).scatter_(0, order, torch.arange(order.shape[0], device=order.device))


def trim_keep(score: Tensor, tier: Tensor, group: Tensor, count: int) -> Tensor:
    """Which of M outputs stay when only ``count`` may: the best of each group first, then the best of the rest.

    Args:
        score: (M,) finite float, higher is better (saliency at each output's origin).
        tier: (M,) long, compared before ``score`` (higher first; static tokens rank above per-frame ones).
        group: (M,) long group ids 0..G-1 (segments); each group's best output is protected.
        count: outputs kept, ``G <= count <= M``.

    Returns:
        (M,) bool with exactly ``count`` True: every group's best output (by tier, then score, then lower index),
        then the others in that order.
    """
    M = int(score.shape[0])
    groups = int(group.max()) + 1 if M else 0
    if not groups <= count <= M:
        raise ValueError(f"count must be in [{groups}, {M}] (one output per group at least), got {count}")
    rank = _rank(score, tier)
    best = torch.full((groups,), M, dtype=torch.long, device=rank.device).scatter_reduce(0, group, rank, "amin")
    protected = rank == best.index_select(0, group)
    order = torch.argsort((~protected).long() * M + rank)
    return torch.zeros(M, dtype=torch.bool, device=rank.device).index_fill_(0, order[:count], True)


def restore_pick(saliency: Tensor, represented: Tensor, taken: Tensor, count: int) -> Tensor:
    """The ``count`` dense tokens to restore: not taken, unrepresented ones first, then by saliency.

    Args:
        saliency: (U,) finite float, U = F·N in flat order ``f · N + n``.
        represented: (U,) bool, the token feeds some output with a non-zero weight.
        taken: (U,) bool, the token is the origin of an output (never restored).
        count: tokens to restore, ``0 <= count <= (~taken).sum()``.

    Returns:
        (count,) long flat indices, increasing: among the tokens not taken, those not represented first, then
        the represented ones, each by saliency (higher first; ties: lower index).
    """
    free = int((~taken).sum())
    if not 0 <= count <= free:
        raise ValueError(f"count must be in [0, {free}] (the tokens not already an output's origin), got {count}")
    tier = (~represented).long() + 2 * (~taken).long()  # free & unrepresented 3, free & represented 2, taken < 2
    rank = _rank(saliency, tier)
    chosen = torch.argsort(rank)[:count]
    return torch.sort(chosen).values


def _frame_counts(frames: Tensor, F: int) -> list[int]:
    return torch.bincount(frames, minlength=F).tolist()


def _stats(video: CompressedVideo, kinds: Tensor, count: int, dropped: int, restored: int) -> dict:
    by_kind = torch.bincount(kinds, minlength=len(TOKEN_KINDS)).tolist()
    F, N = video.plan.frames, video.plan.tokens_per_frame
    return {**video.stats, "tokens_out": count, "effective_ratio": count / (F * N),
            "static_tokens": by_kind[0], "dominant_tokens": by_kind[1], "contextual_tokens": by_kind[2],
            "budget": "exact", "tokens_merged": video.num_tokens, "dropped_tokens": dropped,
            "restored_tokens": restored}


def _trimmed(video: CompressedVideo, kinds: Tensor, attention: Tensor, count: int) -> CompressedVideo:
    plan = video.plan
    segment_of = torch.zeros(plan.frames, dtype=torch.long)
    for i, (s, e) in enumerate(video.segments):
        segment_of[s : e + 1] = i
    group = segment_of.to(kinds.device).index_select(0, plan.origin_frame)
    keep = trim_keep(plan.take(attention).float(), (kinds == _STATIC).long(), group, count)
    new_row = torch.cumsum(keep.long(), 0) - 1
    entry = keep.index_select(0, plan.target)
    frames, positions = plan.origin_frame[keep], plan.origin_position[keep]
    new_plan = MergePlan.from_entries(plan.frames, plan.tokens_per_frame,
                                      [(new_row[plan.target[entry]], plan.source[entry], plan.weight[entry])],
                                      frames, positions, _frame_counts(frames, plan.frames))
    return dataclasses.replace(video, tokens=video.tokens[keep], positions=positions, frames=frames,
                               plan=new_plan, kinds=kinds[keep],
                               stats=_stats(video, kinds[keep], count, video.num_tokens - count, 0))


def _restored(video: CompressedVideo, kinds: Tensor, features: Tensor, attention: Tensor,
              count: int) -> CompressedVideo:
    plan = video.plan
    F, N = plan.frames, plan.tokens_per_frame
    M, device = video.num_tokens, kinds.device
    taken = torch.zeros(F * N, dtype=torch.bool, device=device)
    taken[plan.origin_frame * N + plan.origin_position] = True
    represented = torch.zeros(F * N, dtype=torch.bool, device=device)
    represented[plan.source[plan.weight != 0]] = True
    picks = restore_pick(attention.reshape(-1).float(), represented, taken, count - M)
    pick_frame, pick_pos = picks // N, picks % N
    # a restored token of frame f goes after the outputs of frames <= f: existing row i sorts at 2i + 1,
    # the tokens restored in frame f at 2 · (outputs up to f); a stable sort keeps them in flat order
    upto = torch.cumsum(torch.tensor(plan.frame_counts, dtype=torch.long, device=device), 0)
    slot = torch.cat([2 * torch.arange(M, device=device) + 1, 2 * upto.index_select(0, pick_frame)])
    order = torch.argsort(slot, stable=True)
    place = torch.empty_like(order).scatter_(0, order, torch.arange(count, device=device))
    frames = torch.cat([plan.origin_frame, pick_frame])[order]
    positions = torch.cat([plan.origin_position, pick_pos])[order]
    new_kinds = torch.cat([kinds, torch.full_like(picks, _RESTORED)])[order]
    entries = [(place[plan.target], plan.source, plan.weight),
               (place[M:], picks, torch.ones(count - M, dtype=torch.float32, device=device))]
    new_plan = MergePlan.from_entries(F, N, entries, frames, positions, _frame_counts(frames, F))
    rows = features.reshape(F * N, -1)
    tokens = torch.cat([video.tokens, rows.index_select(0, picks.to(rows.device))])[order.to(rows.device)]
    return dataclasses.replace(video, tokens=tokens, positions=positions, frames=frames, plan=new_plan,
                               kinds=new_kinds, stats=_stats(video, new_kinds, count, 0, count - M))


def fit_to_count(video: CompressedVideo, features: Tensor, attention: Tensor, count: int) -> CompressedVideo:
    """HoliTom's merge of one video reconciled to exactly ``count`` tokens (algorithm §5c).

    Args:
        video: `holitom_merge`'s result for ``features`` (its ``kinds`` set), M tokens.
        features: (F, N, E) the features it merged (restored tokens are their rows, unmerged).
        attention: (F, N) finite saliency it used.
        count: the exact budget, ``segments <= count <= F · N`` (`exact_count`).

    Returns:
        A `CompressedVideo` of ``count`` tokens. M > count: the `trim_keep` outputs (each segment's best, then
        static tokens, then by saliency at their origin), in their order. M < count: every output, and the
        `restore_pick` dense tokens as themselves (weight 1 at their own frame and position), each after its
        frame's outputs, in spatial order. ``stats`` adds ``budget`` ("exact"), ``tokens_merged`` (M),
        ``dropped_tokens``, ``restored_tokens``, and recounts ``tokens_out`` and the kinds.
    """
    features = check_features(features)
    F, N, _ = features.shape
    attention = check_attention(attention, F, N).to(video.plan.origin_frame.device)
    if video.kinds is None:
        raise ValueError("video must record its token kinds (a holitom_merge result), got kinds=None")
    if (video.plan.frames, video.plan.tokens_per_frame) != (F, N):
        raise ValueError(f"video must be a merge of the ({F}, {N}) features, got a plan over "
                         f"({video.plan.frames}, {video.plan.tokens_per_frame})")
    if not len(video.segments) <= count <= F * N:
        raise ValueError(f"count must be in [{len(video.segments)}, {F * N}] (one token per segment at least, "
                         f"at most every token), got {count}")
    kinds = video.kinds.to(video.plan.origin_frame.device)
    if count < video.num_tokens:
        return _trimmed(video, kinds, attention, count)
    if count > video.num_tokens:
        return _restored(video, kinds, features, attention, count)
    return dataclasses.replace(video, stats=_stats(video, kinds, count, 0, 0))
