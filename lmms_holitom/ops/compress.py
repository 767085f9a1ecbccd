"""Outer-LLM compression of one video (spec §2–§5, §7): `compress_video` -> `CompressedVideo`.

Flow for ``holitom`` / ``holitom_wo_m`` (identical here; the inner merge is a separate step):

1. similarity + norms (two passes over the features); non-finite features are caught on the norms;
2. static runs and the (F, F) static-count table on the device, copied to the CPU once; DP -> segments,
   ``reduced``, r';
3. a host-side plan of every count (static clusters per segment, dominant / contextual per frame), all
   evaluated exactly as the spec writes them (``round``, ``math.ceil``);
4. one (F, N) static mask and one stable sort for the dominant tokens of every frame; one gather;
5. per segment (loop over segments only): static mean + DPC-kNN merge, contextual clustering of the
   segment's frames as one batch;
6. concatenation in the order of spec §5 (without the newline token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.ops._checks import check_attention, check_features, check_finite, check_keys
from lmms_holitom.ops.segment import (
    Segment,
    optimal_segments,
    renormalised_ratio,
    similarity_and_norms,
    static_counts,
    static_runs,
    token_norms,
)
from lmms_holitom.ops.spatial import (
    first_true_positions,
    segment_contextual_tokens,
    segment_static_tokens,
    select_dominant,
    static_means,
    visionzip_tokens,
)

__all__ = ["CompressedVideo", "compress_video"]


@dataclass(frozen=True)
class CompressedVideo:
    """The visual tokens of one video after outer-LLM compression.

    Attributes:
        tokens: (M, E), dtype/device of the input features, in the order of spec §5 (segments in
            temporal order; per segment its static tokens, then per frame its dominant then contextual
            tokens), without the ``image_newline`` token. For ``dense``/``fastv`` a view of the features.
        positions: (M,) long, spatial index 0..N-1 each token is anchored at (cluster tokens: their
            centre's position).
        frames: (M,) long, frame of each token (static tokens: their segment's first frame).
        segments: inclusive ``(start, end)`` frame pairs covering 0..F-1 in order.
        stats: ``frames``, ``tokens_per_frame``, ``tokens_in`` (F*N), ``tokens_out`` (M),
            ``static_tokens`` (static tokens in the output), ``static_positions`` (static positions before
            clustering, summed over segments), ``dominant_tokens``, ``contextual_tokens``, ``segments``
            (count), ``reduced``, ``effective_ratio`` (M / (F*N)), ``renormalised_ratio`` (r'), ``method``.
    """

    tokens: Tensor
    positions: Tensor
    frames: Tensor
    segments: list[Segment]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])


def compress_video(
    features: Tensor, attention: Tensor, config: HoliTomConfig, keys: Tensor | None = None
) -> CompressedVideo:
    """Compress one video's visual tokens as ``config.method`` prescribes.

    Args:
        features: (F, N, E) projected, pooled features (fp32/fp16/bf16, any device).
        attention: (F, N) saliency of each token (moved to the features' device).
        config: the method and its parameters.
        keys: (F, N, Dk) pooled key vectors, required for ``visionzip`` only.

    Returns:
        `CompressedVideo`. Methods: ``holitom`` / ``holitom_wo_m`` (spec §2–§5); ``visionzip`` (§7, F *
        ``config.visionzip_tokens(N)`` tokens, segments ``[(f, f)]``); ``dense`` / ``fastv`` (identity:
        tokens = ``features.reshape(F*N, E)``, segments ``[(f, f)]`` — no temporal merging — reduced 0,
        r' reported as 1.0).

    Raises:
        ValueError: bad shapes/ranks, mismatched F/N, empty video, NaN/inf in features, attention or keys,
            missing keys for visionzip, config not a HoliTomConfig.
    """
    if not isinstance(config, HoliTomConfig):
        raise ValueError(f"config must be a HoliTomConfig, got {type(config).__name__}")
    features = check_features(features).contiguous()  # no-op for the usual contiguous input
    F, N, _ = features.shape
    attention = check_attention(attention, F, N).to(features.device)
    if config.method == "visionzip":
        if keys is None:
            raise ValueError("keys must be given (an (F, N, Dk) tensor) for method 'visionzip', got None")
        keys = check_keys(keys, F, N).to(features.device)
        return _visionzip(features, attention, keys, config)
    if keys is not None:
        check_keys(keys, F, N)
    if config.method in ("dense", "fastv"):
        norms = token_norms(features)
        check_finite("features", norms, "checked through the per-token norms")
        return _identity(features, config)
    return _holitom(features, attention, config)


# ---------------------------------------------------------------------------------------------- helpers
def _stats(config: HoliTomConfig, F: int, N: int, M: int, segments: list[Segment], **extra: Any) -> dict:
    stats: dict[str, Any] = {
        "method": config.method,
        "frames": F,
        "tokens_per_frame": N,
        "tokens_in": F * N,
        "tokens_out": M,
        "segments": len(segments),
        "effective_ratio": M / (F * N),
    }
    stats.update(extra)
    return stats


def _identity(features: Tensor, config: HoliTomConfig) -> CompressedVideo:
    F, N, E = features.shape
    device = features.device
    segments = [(f, f) for f in range(F)]
    return CompressedVideo(
        tokens=features.reshape(F * N, E),
        positions=torch.arange(N, device=device).repeat(F),
        frames=torch.arange(F, device=device).repeat_interleave(N),
        segments=segments,
        stats=_stats(
            config,
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


def _visionzip(features: Tensor, attention: Tensor, keys: Tensor, config: HoliTomConfig) -> CompressedVideo:
    F, N, E = features.shape
    norms = token_norms(features)
    check_finite("features", norms, "checked through the per-token norms")
    check_finite("keys", token_norms(keys), "checked through norms")
    per_frame = config.visionzip_tokens(N)
    dominant = int(per_frame * config.dominant_ratio)
    tokens, positions = visionzip_tokens(features, attention, keys, per_frame, dominant)
    segments = [(f, f) for f in range(F)]
    frames = torch.arange(F, device=features.device).repeat_interleave(per_frame)
    return CompressedVideo(
        tokens=tokens.reshape(F * per_frame, E),
        positions=positions.reshape(-1),
        frames=frames,
        segments=segments,
        stats=_stats(
            config,
            F,
            N,
            F * per_frame,
            segments,
            reduced=0,
            renormalised_ratio=renormalised_ratio(config.retain_ratio, F, N, 0),
            static_tokens=0,
            static_positions=0,
            dominant_tokens=F * dominant,
            contextual_tokens=F * (per_frame - dominant),
        ),
    )


@dataclass(frozen=True)
class _SegmentPlan:
    start: int
    end: int
    static: int  # S: static positions
    clusters: int  # round(S * r)
    dominant: int  # per frame
    contextual: int  # per frame


def _plan(segments: list[Segment], counts: Any, N: int, r: float, config: HoliTomConfig) -> list[_SegmentPlan]:
    plans = []
    for s, e in segments:
        S = int(counts[s, e - s]) if e > s else 0
        L = N - S
        clusters = round(S * r)
        budget = math.ceil(L * r)
        dominant = round(budget * (1 - config.contextual_ratio))
        plans.append(_SegmentPlan(s, e, S, clusters, dominant, budget - dominant))
    return plans


def _holitom(features: Tensor, attention: Tensor, config: HoliTomConfig) -> CompressedVideo:
    F, N, E = features.shape
    device = features.device
    sim, norms = similarity_and_norms(features)
    runs = static_runs(sim, config.tau)
    counts_dev = static_counts(runs)
    finite = torch.isfinite(norms).all().to(torch.long).view(1)
    host = torch.cat([finite, counts_dev.flatten()]).cpu().numpy()  # the one device -> host copy
    if not host[0]:
        raise ValueError(f"features must be finite, found NaN or inf (per-token norms); shape {(F, N, E)}")
    counts = host[1:].reshape(F, F)
    segments, reduced = optimal_segments(counts, config.max_window_size)
    r = renormalised_ratio(config.retain_ratio, F, N, reduced)
    plans = _plan(segments, counts, N, r, config)

    # per-frame views of the plan (frame -> its segment)
    span = [(p.start, p.end - p.start, p.dominant) for p in plans for _ in range(p.start, p.end + 1)]
    frame_plan = torch.tensor(span, dtype=torch.long).to(device)
    start_of, span_of, dominant_of = frame_plan.unbind(1)
    static_mask = (runs[start_of] >= span_of.unsqueeze(1)) & (span_of > 0).unsqueeze(1)  # (F, N)
    dominant_mask = select_dominant(attention, ~static_mask, dominant_of)  # (F, N)

    dominant_total = sum(p.dominant * (p.end - p.start + 1) for p in plans)
    flat = first_true_positions(dominant_mask.flatten())[:dominant_total]  # frame-major, position order
    dom_tokens = features.reshape(F * N, E).index_select(0, flat)
    dom_pos = flat % N

    need_static = [p for p in plans if p.clusters > 0]
    need_context = any(p.contextual > 0 for p in plans)
    static_split: list[Tensor] = []
    if need_static:
        static_order = first_true_positions(static_mask)
        windows = [(p.start, p.end, static_order[p.start, : p.static]) for p in need_static]
        static_split = list(torch.split(static_means(features, windows), [p.static for p in need_static]))
    remaining_order = first_true_positions(~(static_mask | dominant_mask)) if need_context else None

    tokens: list[Tensor] = []
    positions: list[Tensor] = []
    frame_of: list[int] = []  # host-side run-length code of the output frames: (frame, count) pairs
    frame_count: list[int] = []

    def emit(tok: Tensor, pos: Tensor, frames: list[int], counts: list[int]) -> None:
        tokens.append(tok)
        positions.append(pos)
        frame_of.extend(frames)
        frame_count.extend(counts)

    offset = 0  # into the frame-major dominant tokens
    for p in plans:
        if p.clusters > 0:
            static, positions_ = static_split.pop(0), windows.pop(0)[2]
            tok, pos = segment_static_tokens(
                static,
                positions_,
                p.clusters,
                min(config.knn_k, p.clusters),
                config.beta,
                config.beta_merge,
            )
            emit(tok, pos, [p.start], [p.clusters])
        ctx_tok = ctx_pos = None
        if p.contextual > 0:
            assert remaining_order is not None
            remaining = N - p.static - p.dominant
            ctx_tok, ctx_pos = segment_contextual_tokens(
                features,
                p.start,
                p.end,
                remaining_order[p.start : p.end + 1, :remaining],
                p.contextual,
                min(config.knn_k, p.contextual),
                config.beta,
                config.beta_merge,
            )
        W = p.end - p.start + 1
        if ctx_tok is None or ctx_pos is None:  # the segment's dominant tokens are one contiguous run
            n = W * p.dominant
            frames = list(range(p.start, p.end + 1))
            emit(dom_tokens[offset : offset + n], dom_pos[offset : offset + n], frames, [p.dominant] * W)
            offset += n
        else:  # per frame: dominant, then contextual
            for f in range(p.start, p.end + 1):
                d = p.dominant
                emit(dom_tokens[offset : offset + d], dom_pos[offset : offset + d], [f], [d])
                emit(ctx_tok[f - p.start], ctx_pos[f - p.start], [f], [p.contextual])
                offset += d

    out = torch.cat(tokens) if len(tokens) > 1 else tokens[0]
    M = int(out.shape[0])
    frames = torch.repeat_interleave(torch.tensor(frame_of), torch.tensor(frame_count), output_size=M)
    return CompressedVideo(
        tokens=out,
        positions=torch.cat(positions) if len(positions) > 1 else positions[0],
        frames=frames.to(device),
        segments=segments,
        stats=_stats(
            config,
            F,
            N,
            M,
            segments,
            reduced=reduced,
            renormalised_ratio=r,
            static_tokens=sum(p.clusters for p in plans),
            static_positions=sum(p.static for p in plans),
            dominant_tokens=dominant_total,
            contextual_tokens=sum(p.contextual * (p.end - p.start + 1) for p in plans),
        ),
    )
