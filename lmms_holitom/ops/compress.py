"""Outer-LLM compression of one video (spec §2–§5, §7): `compress_video` -> `CompressedVideo`.

Flow for ``holitom`` / ``holitom_wo_m`` (identical here; the inner merge is a separate step):

1. similarity + norms (two passes over the features); non-finite features are caught on the norms;
2. static runs and the (F, F) static-count table on the device, copied to the CPU once; DP -> segments,
   ``reduced``, r';
3. a host-side plan of every count (static clusters per segment, dominant / contextual per frame), all
   evaluated exactly as the spec writes them (``round``, ``math.ceil``);
4. one (F, N) static mask and one stable sort for the dominant tokens of every frame; one gather;
5. static tokens: the means of all segments in one ``embedding_bag`` (reads only the static rows), then
   one ragged DPC-kNN batch over all segments; contextual tokens: one ragged DPC-kNN batch over all
   frames that have some (`cluster.dpc_knn_ragged`: the only loop is one Gram matmul per set);
6. concatenation in the order of spec §5 (without the newline token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.ops._checks import check_attention, check_features, check_finite, check_keys
from lmms_holitom.ops.cluster import dpc_knn_ragged, host_tensor
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
    select_dominant,
    static_means,
    take_first,
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


def _static_tokens(
    features: Tensor, static_mask: Tensor, plans: list[_SegmentPlan], config: HoliTomConfig
) -> dict[int, tuple[Tensor, Tensor]]:
    """Static tokens of the given segments (all with clusters > 0), one DPC-kNN batch for all of them.

    Returns ``{segment start: (tokens (clusters, E), positions (clusters,))}``.
    """
    if not plans:
        return {}
    starts = [p.start for p in plans]
    sizes = [p.static for p in plans]
    clusters = [p.clusters for p in plans]
    positions = take_first(first_true_positions(static_mask[starts]), sizes)  # (sum S,) static positions
    means = static_means(features, starts, [p.end for p in plans], positions, sizes)  # (sum S, E)
    ks = [min(config.knn_k, c) for c in clusters]
    tokens, rows = dpc_knn_ragged(means, sizes, clusters, ks, config.beta, config.beta_merge)
    return _by_set(starts, clusters, tokens, positions[rows])


def _contextual_tokens(
    features: Tensor, taken: Tensor, plans: list[_SegmentPlan], config: HoliTomConfig
) -> dict[int, tuple[Tensor, Tensor]]:
    """Contextual tokens of every frame that has some (spec §4a, our semantics), one DPC-kNN batch.

    In each such frame the remaining dynamic tokens (neither static nor dominant, ``~taken``) are clustered
    into the frame's ``contextual`` centres and merged (§4c). Returns ``{frame: (tokens, positions)}``.
    """
    N, E = features.shape[1:]
    frames = [f for p in plans if p.contextual > 0 for f in range(p.start, p.end + 1)]
    if not frames:
        return {}
    by_frame = {f: p for p in plans for f in range(p.start, p.end + 1)}
    sizes = [N - by_frame[f].static - by_frame[f].dominant for f in frames]
    clusters = [by_frame[f].contextual for f in frames]
    positions = take_first(first_true_positions(~taken[frames]), sizes)  # (sum R,) remaining positions
    frame_ids = host_tensor(np.repeat(frames, sizes), features.device)
    x = features.reshape(-1, E).index_select(0, frame_ids * N + positions)  # (sum R, E)
    ks = [min(config.knn_k, c) for c in clusters]
    tokens, rows = dpc_knn_ragged(x, sizes, clusters, ks, config.beta, config.beta_merge)
    return _by_set(frames, clusters, tokens, positions[rows])


def _by_set(keys: list[int], counts: list[int], tokens: Tensor, positions: Tensor) -> dict:
    out, start = {}, 0
    for key, c in zip(keys, counts):
        out[key] = (tokens[start : start + c], positions[start : start + c])
        start += c
    return out


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
    frame_plan = host_tensor(span, device)
    start_of, span_of, dominant_of = frame_plan.unbind(1)
    static_mask = (runs[start_of] >= span_of.unsqueeze(1)) & (span_of > 0).unsqueeze(1)  # (F, N)
    dominant_mask = select_dominant(attention, ~static_mask, dominant_of)  # (F, N)

    dominant_total = sum(p.dominant * (p.end - p.start + 1) for p in plans)
    flat = first_true_positions(dominant_mask.flatten())[:dominant_total]  # frame-major, position order
    dom_pos = flat % N

    # static tokens of every segment that keeps some, contextual tokens of every frame that has some
    static_of = _static_tokens(features, static_mask, [p for p in plans if p.clusters > 0], config)
    context_of = _contextual_tokens(features, static_mask | dominant_mask, plans, config)

    # assembly (spec §5) straight into the output: the dominant rows are gathered into their place
    M = sum(p.clusters + (p.end - p.start + 1) * (p.dominant + p.contextual) for p in plans)
    out = features.new_empty((M, E))
    rows = features.reshape(F * N, E)
    positions: list[Tensor] = []
    frame_of: list[int] = []  # host-side run-length code of the output frames
    frame_count: list[int] = []
    o = d = 0  # write offset into out, read offset into the frame-major dominant tokens
    differentiable = features.requires_grad and torch.is_grad_enabled()  # out= does not record autograd

    def put(tok: Tensor | None, pos: Tensor, n: int, frames: list[int], counts: list[int]) -> None:
        nonlocal o, d
        if tok is None and differentiable:
            out[o : o + n] = rows.index_select(0, flat[d : d + n])
            d += n
        elif tok is None:  # dominant tokens: gathered from the features straight into place
            torch.index_select(rows, 0, flat[d : d + n], out=out[o : o + n])
            d += n
        else:
            out[o : o + n] = tok
        positions.append(pos)
        frame_of.extend(frames)
        frame_count.extend(counts)
        o += n

    for p in plans:
        W = p.end - p.start + 1
        if p.clusters > 0:
            put(*static_of[p.start], p.clusters, [p.start], [p.clusters])
        if p.contextual == 0:  # the segment's dominant tokens are one contiguous run
            n = W * p.dominant
            put(None, dom_pos[d : d + n], n, list(range(p.start, p.end + 1)), [p.dominant] * W)
        else:  # per frame: dominant, then contextual
            for f in range(p.start, p.end + 1):
                put(None, dom_pos[d : d + p.dominant], p.dominant, [f], [p.dominant])
                put(*context_of[f], p.contextual, [f], [p.contextual])
    assert o == M and d == dominant_total

    frames = host_tensor(np.repeat(frame_of, frame_count), device)
    return CompressedVideo(
        tokens=out,
        positions=torch.cat(positions),
        frames=frames,
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
