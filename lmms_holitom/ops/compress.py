"""The result of an outer merge, `CompressedVideo`, and the two simple merges.

* `identity_merge(features)` — dense / FastV: every token, no temporal merging;
* `visionzip_merge(features, attention, keys, tokens=, dominant=)` — VisionZip's video adaptation
  (algorithm §7), frame by frame;
* HoliTom's merge is `holitom.holitom_merge`.

Each takes explicit arguments (no configuration object) and returns the tokens with their `MergePlan`.
The method switch (which merge a configuration asks for) lives one level up, in
``lmms_holitom.core.outer.compress_video``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lmms_holitom.ops._checks import check_attention, check_features, check_finite, check_int, check_keys
from lmms_holitom.ops.plan import MergePlan
from lmms_holitom.ops.segment import Segment, token_norms
from lmms_holitom.ops.spatial import visionzip_tokens

__all__ = ["TOKEN_KINDS", "CompressedVideo", "identity_merge", "make_stats", "visionzip_merge"]

#: the codes of `CompressedVideo.kinds`: what made each output token (algorithm §4, §5c)
TOKEN_KINDS = ("static", "dominant", "contextual", "restored")


@dataclass(frozen=True)
class CompressedVideo:
    """The visual tokens of one video after outer-LLM compression.

    Attributes:
        tokens: (M, E), dtype/device of the input features, in the order of algorithm §5 (segments in
            temporal order; per segment its static tokens, then per frame its dominant then contextual
            tokens), without the ``image_newline`` token. For ``dense``/``fastv`` a view of the features.
        positions: (M,) long, spatial index 0..N-1 each token is anchored at (cluster tokens: their
            centre's position); the plan's ``origin_position``.
        frames: (M,) long, frame of each token (static tokens: their segment's first frame); the plan's
            ``origin_frame``.
        segments: inclusive ``(start, end)`` frame pairs covering 0..F-1 in order.
        plan: the `MergePlan` that made ``tokens`` from the features; ``plan.apply`` does the same merge
            on any tensor aligned with them (``plan.apply(features)`` equals ``tokens`` to rounding).
        stats: ``frames``, ``tokens_per_frame``, ``tokens_in`` (F*N), ``tokens_out`` (M),
            ``static_tokens`` (static tokens in the output), ``static_positions`` (static positions before
            clustering, summed over segments), ``dominant_tokens``, ``contextual_tokens``, ``segments``
            (count), ``reduced``, ``effective_ratio`` (M / (F*N)), ``renormalised_ratio`` (r'), and
            ``method`` (set by the method switch; the ops leave it out).
        kinds: (M,) long kind of each output token where the merge records it (HoliTom: `TOKEN_KINDS`,
            ``0`` static, ``1`` dominant, ``2`` contextual, ``3`` restored by the exact budget), else None.
    """

    tokens: Tensor
    positions: Tensor
    frames: Tensor
    segments: list[Segment]
    plan: MergePlan
    stats: dict[str, Any] = field(default_factory=dict)
    kinds: Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])


def make_stats(F: int, N: int, M: int, segments: list[Segment], **extra: Any) -> dict[str, Any]:
    """The shared part of `CompressedVideo.stats` (every key but ``method``), then ``extra``."""
    stats: dict[str, Any] = {
        "frames": F,
        "tokens_per_frame": N,
        "tokens_in": F * N,
        "tokens_out": M,
        "segments": len(segments),
        "effective_ratio": M / (F * N),
    }
    stats.update(extra)
    return stats


def _check_finite_features(features: Tensor) -> None:
    check_finite("features", token_norms(features), "checked through the per-token norms")


def identity_merge(features: Tensor, attention: Tensor | None = None) -> CompressedVideo:
    """No outer merge (dense / FastV): tokens = ``features.reshape(F*N, E)`` (a view).

    Args:
        features: (F, N, E), finite.
        attention: optional (F, N); validated (shape, finite) when given, otherwise unused.

    Returns:
        `CompressedVideo` with segments ``[(f, f)]`` (no temporal merging), reduced 0, r' reported as 1.0,
        an identity plan.
    """
    features = check_features(features).contiguous()
    F, N, E = features.shape
    if attention is not None:
        check_attention(attention, F, N)
    _check_finite_features(features)
    plan = MergePlan.identity(F, N, features.device)
    segments = [(f, f) for f in range(F)]
    return CompressedVideo(
        tokens=features.reshape(F * N, E),
        positions=plan.origin_position,
        frames=plan.origin_frame,
        segments=segments,
        plan=plan,
        stats=make_stats(
            F,
            N,
            F * N,
            segments,
            reduced=0,
            renormalised_ratio=1.0,
            static_tokens=0,
            static_positions=0,
            dominant_tokens=F * N,
            contextual_tokens=0,
        ),
    )


def visionzip_merge(
    features: Tensor, attention: Tensor, keys: Tensor, *, tokens: int, dominant: int
) -> CompressedVideo:
    """VisionZip, video adaptation (algorithm §7): ``tokens`` per frame, ``dominant`` of them by attention.

    Args:
        features: (F, N, E); attention: (F, N) finite; keys: (F, N, Dk) finite.
        tokens: tokens kept per frame, 1 <= tokens <= N (so every frame keeps one).
        dominant: dominant tokens per frame, 0 <= dominant <= tokens; the other ``tokens - dominant``
            are contextual (``target + mean(members)``).

    Returns:
        `CompressedVideo` with F * tokens tokens, segments ``[(f, f)]``, reduced 0. ``stats`` has
        ``renormalised_ratio`` None (VisionZip has no r'; the method switch reports the retain ratio).
    """
    features = check_features(features).contiguous()
    F, N, E = features.shape
    attention = check_attention(attention, F, N).to(features.device)
    keys = check_keys(keys, F, N).to(features.device)
    tokens = check_int("tokens", tokens, minimum=1, maximum=N)
    dominant = check_int("dominant", dominant, minimum=0, maximum=tokens)
    _check_finite_features(features)
    check_finite("keys", token_norms(keys), "checked through norms")
    merge = visionzip_tokens(features, attention, keys, tokens, dominant)
    plan = _visionzip_plan(F, N, tokens, dominant, merge.positions, merge.others, merge.assign, merge.members)
    segments = [(f, f) for f in range(F)]
    return CompressedVideo(
        tokens=merge.tokens.reshape(F * tokens, E),
        positions=plan.origin_position,
        frames=plan.origin_frame,
        segments=segments,
        plan=plan,
        stats=make_stats(
            F,
            N,
            F * tokens,
            segments,
            reduced=0,
            renormalised_ratio=None,
            static_tokens=0,
            static_positions=0,
            dominant_tokens=F * dominant,
            contextual_tokens=F * (tokens - dominant),
        ),
    )


def _visionzip_plan(
    F: int, N: int, T: int, D: int, positions: Tensor, others: Tensor, assign: Tensor, members: Tensor
) -> MergePlan:
    """Each kept token (dominant or contextual target) with weight 1; each other token with weight
    ``1 / members`` into its target's row. positions (F, T), others / assign (F, R - C), members (F, C)."""
    device = positions.device
    frame = torch.arange(F, device=device).unsqueeze(1)
    kept_target = (frame * T + torch.arange(T, device=device)).flatten()
    kept = (kept_target, (frame * N + positions).flatten(), torch.ones(F * T, dtype=torch.float32, device=device))
    weight = 1.0 / members.clamp_min(1).gather(1, assign)
    merged = ((frame * T + D + assign).flatten(), (frame * N + others).flatten(), weight.flatten())
    origin_frame = torch.arange(F, device=device).repeat_interleave(T)
    return MergePlan.from_entries(F, N, [kept, merged], origin_frame, positions.reshape(-1), [T] * F)
