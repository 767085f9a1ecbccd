"""HoliTom's outer merge of one video (algorithm §2–§5): `holitom_merge` -> `CompressedVideo` with its plan.

Flow (the same for ``holitom`` and ``holitom_wo_m``; the inner merge is a separate step):

1. similarity + norms (two passes over the features); non-finite features are caught on the norms;
2. static runs and the (F, F) static-count table on the device, copied to the CPU once; DP -> segments,
   ``reduced``, r';
3. a host-side plan of every count (static clusters per segment, dominant / contextual per frame), all
   evaluated exactly as the spec writes them (``round``, ``math.ceil``), with one addition: **an
   all-static segment keeps at least one token** (``max(1, round(N * r'))`` static clusters; a segment
   with a dynamic position already keeps ``ceil(L * r') >= 1`` tokens per frame), so no frame is left
   unrepresented however small ``retain_ratio`` is;
4. one (F, N) static mask and one stable sort for the dominant tokens of every frame; one gather;
5. static tokens: the means of all segments in one ``embedding_bag`` (reads only the static rows), then
   one ragged DPC-kNN batch over all segments; contextual tokens: one ragged DPC-kNN batch over all
   frames that have some (`cluster.ragged_merge`: the only loop is one Gram matmul per set);
6. concatenation in the order of algorithm §5 (without the newline token), and the `MergePlan` from the
   clusterings' own assignments (no recomputation, no host sync).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lmms_holitom.ops._checks import check_attention, check_features, check_int, check_ratio
from lmms_holitom.ops.cluster import host_tensor, ragged_merge
from lmms_holitom.ops.compress import CompressedVideo, make_stats
from lmms_holitom.ops.plan import MergePlan
from lmms_holitom.ops.segment import (
    Segment,
    check_tau,
    optimal_segments,
    renormalised_ratio,
    similarity_and_norms,
    static_counts,
    static_runs,
)
from lmms_holitom.ops.spatial import first_true_positions, select_dominant, static_means, take_first

__all__ = ["holitom_merge"]

Entries = tuple[Tensor, Tensor, Tensor]  # (slot or output row, flat dense source, weight)


@dataclass(frozen=True)
class _Args:
    retain_ratio: float
    tau: float
    max_window_size: int
    contextual_ratio: float
    knn_k: int
    beta: float
    beta_merge: bool


def holitom_merge(
    features: Tensor,
    attention: Tensor,
    *,
    retain_ratio: float,
    tau: float,
    max_window_size: int,
    contextual_ratio: float,
    knn_k: int,
    beta: float,
    beta_merge: bool,
) -> CompressedVideo:
    """HoliTom's outer merge: temporal segments, static clusters, dominant and contextual tokens.

    Args:
        features: (F, N, E) projected, pooled features (fp32/fp16/bf16, any device).
        attention: (F, N) finite saliency of each token (moved to the features' device).
        retain_ratio: target share of tokens kept, in (0, 1].
        tau: static threshold (``sim > tau``), finite; > 1 disables temporal merging.
        max_window_size: longest segment in frames, >= 1.
        contextual_ratio: share of each frame's dynamic budget spent on contextual tokens, in [0, 1].
        knn_k: DPC-kNN neighbours, >= 1 (capped at the number of clusters).
        beta: weight of a cluster centre against the mean of its members, in [0, 1].
        beta_merge: False -> a cluster token is the plain mean of centre and members.

    Returns:
        `CompressedVideo` with M >= number of segments >= 1 tokens: every segment keeps at least one
        token (an all-static segment ``max(1, round(N * r'))`` static tokens). ``stats`` has every key
        but ``method``.

    Raises:
        ValueError: bad shapes/ranks, mismatched F/N, NaN/inf in features or attention, an argument
            outside its range (the message names it).
    """
    features = check_features(features).contiguous()  # no-op for the usual contiguous input
    F, N, _ = features.shape
    attention = check_attention(attention, F, N).to(features.device)
    retain_ratio = check_ratio("retain_ratio", retain_ratio, low=0.0, high=1.0, high_open=False)
    if retain_ratio == 0.0:
        raise ValueError("retain_ratio must be in (0, 1], got 0.0")
    if not isinstance(beta_merge, bool):
        raise ValueError(f"beta_merge must be a bool, got {beta_merge!r}")
    args = _Args(
        retain_ratio=retain_ratio,
        tau=check_tau(tau),
        max_window_size=check_int("max_window_size", max_window_size, minimum=1),
        contextual_ratio=check_ratio("contextual_ratio", contextual_ratio, low=0.0, high=1.0, high_open=False),
        knn_k=check_int("knn_k", knn_k, minimum=1),
        beta=check_ratio("beta", beta, low=0.0, high=1.0, high_open=False),
        beta_merge=beta_merge,
    )
    return _holitom(features, attention, args)


@dataclass(frozen=True)
class _SegmentPlan:
    start: int
    end: int
    static: int  # S: static positions
    clusters: int  # round(S * r), at least 1 when the segment has no dynamic position
    dominant: int  # per frame
    contextual: int  # per frame


def _plan(segments: list[Segment], counts: Any, N: int, r: float, contextual_ratio: float) -> list[_SegmentPlan]:
    plans = []
    for s, e in segments:
        S = int(counts[s, e - s]) if e > s else 0
        L = N - S
        clusters = round(S * r) if L > 0 else max(1, round(S * r))  # never an empty segment
        budget = math.ceil(L * r)
        dominant = round(budget * (1 - contextual_ratio))
        plans.append(_SegmentPlan(s, e, S, clusters, dominant, budget - dominant))
    return plans


def _static_tokens(
    features: Tensor, static_mask: Tensor, plans: list[_SegmentPlan], args: _Args
) -> tuple[dict[int, tuple[Tensor, Tensor]], Entries | None]:
    """Static tokens of the given segments (all with clusters > 0), one DPC-kNN batch for all of them.

    Returns ``{segment start: (tokens (clusters, E), positions (clusters,))}`` and the plan entries
    ``(static slot, dense source, weight)``: a static mean over W frames spreads its weight as w / W.
    """
    if not plans:
        return {}, None
    starts = [p.start for p in plans]
    sizes = [p.static for p in plans]
    clusters = [p.clusters for p in plans]
    positions = take_first(first_true_positions(static_mask[starts]), sizes)  # (sum S,) static positions
    means, source, bag, width = static_means(features, starts, [p.end for p in plans], positions, sizes)
    ks = [min(args.knn_k, c) for c in clusters]
    merge = ragged_merge(means, sizes, clusters, ks, args.beta, args.beta_merge)
    weight = merge.weight.index_select(0, bag) / width.index_select(0, bag)
    entries = (merge.slot.index_select(0, bag), source, weight)
    return _by_set(starts, clusters, merge.tokens, positions[merge.rows]), entries


def _contextual_tokens(
    features: Tensor, taken: Tensor, plans: list[_SegmentPlan], args: _Args
) -> tuple[dict[int, tuple[Tensor, Tensor]], Entries | None]:
    """Contextual tokens of every frame that has some (algorithm §4a, our semantics), one DPC-kNN batch.

    In each such frame the remaining dynamic tokens (neither static nor dominant, ``~taken``) are clustered
    into the frame's ``contextual`` centres and merged (§4c). Returns ``{frame: (tokens, positions)}`` and
    the plan entries ``(contextual slot, dense source, weight)``.
    """
    N, E = features.shape[1:]
    frames = [f for p in plans if p.contextual > 0 for f in range(p.start, p.end + 1)]
    if not frames:
        return {}, None
    by_frame = {f: p for p in plans for f in range(p.start, p.end + 1)}
    sizes = [N - by_frame[f].static - by_frame[f].dominant for f in frames]
    clusters = [by_frame[f].contextual for f in frames]
    positions = take_first(first_true_positions(~taken[frames]), sizes)  # (sum R,) remaining positions
    frame_ids = host_tensor(np.repeat(frames, sizes), features.device)
    source = frame_ids * N + positions
    x = features.reshape(-1, E).index_select(0, source)  # (sum R, E)
    ks = [min(args.knn_k, c) for c in clusters]
    merge = ragged_merge(x, sizes, clusters, ks, args.beta, args.beta_merge)
    return _by_set(frames, clusters, merge.tokens, positions[merge.rows]), (merge.slot, source, merge.weight)


def _by_set(keys: list[int], counts: list[int], tokens: Tensor, positions: Tensor) -> dict:
    out, start = {}, 0
    for key, c in zip(keys, counts):
        out[key] = (tokens[start : start + c], positions[start : start + c])
        start += c
    return out


def _segments(features: Tensor, args: _Args) -> tuple[Tensor, np.ndarray, list[Segment], int, float]:
    """Steps 1-2: static runs (F, N) on the device, the host count table, segments, reduced, r'."""
    F, N, E = features.shape
    sim, norms = similarity_and_norms(features)
    runs = static_runs(sim, args.tau)
    counts_dev = static_counts(runs)
    finite = torch.isfinite(norms).all().to(torch.long).view(1)
    host = torch.cat([finite, counts_dev.flatten()]).cpu().numpy()  # the one device -> host copy
    if not host[0]:
        raise ValueError(f"features must be finite, found NaN or inf (per-token norms); shape {(F, N, E)}")
    counts = host[1:].reshape(F, F)
    segments, reduced = optimal_segments(counts, args.max_window_size)
    return runs, counts, segments, reduced, renormalised_ratio(args.retain_ratio, F, N, reduced)


def _holitom(features: Tensor, attention: Tensor, args: _Args) -> CompressedVideo:
    F, N, E = features.shape
    device = features.device
    runs, counts, segments, reduced, r = _segments(features, args)
    plans = _plan(segments, counts, N, r, args.contextual_ratio)

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
    static_of, static_entries = _static_tokens(features, static_mask, [p for p in plans if p.clusters > 0], args)
    context_of, context_entries = _contextual_tokens(features, static_mask | dominant_mask, plans, args)

    # assembly (algorithm §5) straight into the output: the dominant rows are gathered into their place
    M = sum(p.clusters + (p.end - p.start + 1) * (p.dominant + p.contextual) for p in plans)
    out = features.new_empty((M, E))
    rows = features.reshape(F * N, E)
    positions: list[Tensor] = []
    frame_of: list[int] = []  # host-side run-length code of the output frames
    frame_count: list[int] = []
    out_rows: dict[str, list[np.ndarray]] = {"static": [], "dominant": [], "contextual": []}  # for the plan
    o = d = 0  # write offset into out, read offset into the frame-major dominant tokens
    differentiable = features.requires_grad and torch.is_grad_enabled()  # out= does not record autograd

    def put(kind: str, tok: Tensor | None, pos: Tensor, n: int, frames: list[int], counts: list[int]) -> None:
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
        out_rows[kind].append(np.arange(o, o + n, dtype=np.int64))
        o += n

    for p in plans:
        W = p.end - p.start + 1
        if p.clusters > 0:
            put("static", *static_of[p.start], p.clusters, [p.start], [p.clusters])
        if p.contextual == 0:  # the segment's dominant tokens are one contiguous run
            n = W * p.dominant
            put("dominant", None, dom_pos[d : d + n], n, list(range(p.start, p.end + 1)), [p.dominant] * W)
        else:  # per frame: dominant, then contextual
            for f in range(p.start, p.end + 1):
                put("dominant", None, dom_pos[d : d + p.dominant], p.dominant, [f], [p.dominant])
                put("contextual", *context_of[f], p.contextual, [f], [p.contextual])
    assert o == M and d == dominant_total

    frames = host_tensor(np.repeat(frame_of, frame_count), device)
    per_frame = np.zeros(F, dtype=np.int64)
    np.add.at(per_frame, frame_of, frame_count)
    plan = _merge_plan(F, N, flat, out_rows, static_entries, context_entries, frames, torch.cat(positions), per_frame)
    kinds = np.zeros(M, dtype=np.int64)  # TOKEN_KINDS: 0 static, 1 dominant, 2 contextual
    for code, kind in ((1, "dominant"), (2, "contextual")):
        kinds[np.concatenate([np.zeros(0, np.int64), *out_rows[kind]])] = code
    return CompressedVideo(
        tokens=out,
        positions=plan.origin_position,
        frames=plan.origin_frame,
        segments=segments,
        plan=plan,
        stats=make_stats(
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
        kinds=host_tensor(kinds, device),
    )


def _merge_plan(
    F: int,
    N: int,
    dominant: Tensor,
    out_rows: dict[str, list[np.ndarray]],
    static_entries: Entries | None,
    context_entries: Entries | None,
    origin_frame: Tensor,
    origin_position: Tensor,
    per_frame: np.ndarray,
) -> MergePlan:
    """The plan from the output row of every static slot / dominant token / contextual slot (host-side,
    one copy) and the clusterings' entries. Dominant tokens are single entries of weight 1."""
    device = dominant.device
    parts = {kind: np.concatenate([np.zeros(0, np.int64), *arrays]) for kind, arrays in out_rows.items()}
    row_map = host_tensor(np.concatenate([parts["static"], parts["dominant"], parts["contextual"]]), device)
    ns, nd = len(parts["static"]), len(parts["dominant"])
    entries = [(row_map[ns : ns + nd], dominant, torch.ones(nd, dtype=torch.float32, device=device))]
    for first, found in ((0, static_entries), (ns + nd, context_entries)):
        if found is not None:
            slot, source, weight = found
            entries.append((row_map[first:].index_select(0, slot), source, weight))
    return MergePlan.from_entries(F, N, entries, origin_frame, origin_position, per_frame.tolist())
