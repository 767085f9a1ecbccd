"""Global temporal segmentation (algorithm §2): frame similarity, static runs, gain table, DP.

Shapes: ``F`` frames, ``N`` tokens per frame, ``E`` embedding width.

* `frame_similarity` — cosine of every token position between consecutive frames, (F-1, N), fp32, from
  dot products over norms (no normalised copy of the features).
* `static_runs` — for every frame t and position n, how many consecutive transitions t, t+1, ... keep the
  position static (``sim > tau``). Window [s, e] keeps n static iff ``runs[s, n] >= e - s``. (F, N).
* `static_counts` — ``counts[s, d]`` = number of positions static over the window [s, s + d]; the gain
  of that window is ``counts[s, d] * d``. (F, F), from one histogram + reverse cumsum (O(F·N)).
* `segment_video` — the dynamic programme of §2.3 on the CPU with the reference's tie rules, returning
  the segments and ``reduced``.
* `renormalised_ratio` — r' of §2.5, evaluated exactly as the spec writes it.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

from lmms_holitom.ops._checks import check_features, check_finite, check_int, check_tensor

__all__ = [
    "check_tau",
    "frame_similarity",
    "renormalised_ratio",
    "segment_video",
    "similarity_and_norms",
    "static_counts",
    "static_runs",
    "optimal_segments",
    "token_norms",
]

Segment = tuple[int, int]

#: Lower bound of the product of norms in the cosine (same role as torch's cosine_similarity eps):
#: a zero vector has cosine 0 with everything.
COS_EPS = 1e-8

#: Bytes of one operand chunk in the dot-product loop: small on CPU (stays in cache), large on GPUs.
_CHUNK_BYTES_CPU = 4 << 20
_CHUNK_BYTES_ACCEL = 256 << 20


def token_norms(x: Tensor) -> Tensor:
    """L2 norm over the last dimension in fp32 (accumulated in fp32 for half types, fp64 for fp64)."""
    if x.dtype == torch.float64:
        return torch.linalg.vector_norm(x, dim=-1).float()
    return torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32)


@torch.no_grad()  # only discrete decisions (segments, static masks) depend on it
def similarity_and_norms(features: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine similarity of consecutive frames and the token norms, both fp32.

    Args:
        features: (F, N, E) floating tensor (already validated).

    Returns:
        ``(sim, norms)``: sim (F-1, N) fp32 with ``sim[t, n] = cos(features[t, n], features[t+1, n])``;
        norms (F, N) fp32. Non-finite features show up as non-finite norms. No autograd graph.

    Cost: one pass for the norms and one for the dot products, done in frame chunks so that the
    element-wise product stays in cache on CPU; fp16/bf16 chunks are upcast to fp32 chunk by chunk.
    """
    F, N, E = features.shape
    norms = token_norms(features)
    dots = torch.empty((max(F - 1, 0), N), dtype=torch.float32, device=features.device)
    if F > 1:
        budget = _CHUNK_BYTES_CPU if features.device.type == "cpu" else _CHUNK_BYTES_ACCEL
        step = max(1, budget // max(1, N * E * 4))
        for s in range(0, F - 1, step):
            e = min(F - 1, s + step)
            a, b = features[s:e], features[s + 1 : e + 1]
            if a.dtype != torch.float32:
                a, b = a.float(), b.float()
            torch.sum(a * b, dim=-1, out=dots[s:e])
    sim = dots / (norms[:-1] * norms[1:]).clamp_min(COS_EPS)
    return sim, norms


def frame_similarity(features: Tensor) -> Tensor:
    """Cosine similarity of each token position between consecutive frames (algorithm §2.1).

    Args:
        features: (F, N, E) floating tensor, any device/dtype.

    Returns:
        (F-1, N) fp32 tensor on the features' device; shape (0, N) for a single frame.

    Raises:
        ValueError: wrong rank, empty, or non-finite features.
    """
    features = check_features(features)
    sim, norms = similarity_and_norms(features)
    check_finite("features", norms, "checked through the per-token norms")
    return sim


def static_runs(similarity: Tensor, tau: float) -> Tensor:
    """Length of the static run starting at every frame.

    Args:
        similarity: (F-1, N) fp32 cosine of consecutive frames.
        tau: threshold; a transition is static iff ``sim > tau`` (strict).

    Returns:
        (F, N) long: ``runs[t, n]`` = number of consecutive transitions t, t+1, ... with ``sim > tau``
        (so window [s, e] keeps n static iff ``runs[s, n] >= e - s``); the last row is 0.
    """
    T, N = similarity.shape
    device = similarity.device
    runs = torch.zeros((T + 1, N), dtype=torch.long, device=device)
    if T == 0:
        return runs
    t_idx = torch.arange(T, device=device).unsqueeze(1)
    # index of the first non-static transition at or after t (T if none): reverse cumulative minimum
    breaks = torch.where(similarity > tau, torch.full_like(t_idx, T), t_idx)
    next_break = torch.flip(torch.cummin(torch.flip(breaks, (0,)), dim=0).values, (0,))
    runs[:T] = next_break - t_idx
    return runs


def static_counts(runs: Tensor) -> Tensor:
    """Number of static positions of every window.

    Args:
        runs: (F, N) long from `static_runs`.

    Returns:
        (F, F) long on the same device: ``counts[s, d]`` = #positions n with ``runs[s, n] >= d``, i.e. the
        static count S(s, s + d) for d >= 1 (entries with s + d > F - 1 are 0). ``counts[s, 0] = N``.
    """
    F = runs.shape[0]
    hist = torch.zeros((F, F), dtype=torch.long, device=runs.device)
    hist.scatter_add_(1, runs, torch.ones_like(runs))
    return torch.flip(torch.cumsum(torch.flip(hist, (1,)), dim=1), (1,))


def optimal_segments(counts: np.ndarray, max_window_size: int) -> tuple[list[Segment], int]:
    """The dynamic programme of algorithm §2.3 on the CPU.

    ``dp[i] = max(dp[i-1], max_{w=2..min(i+1, W)} dp[i-w] + gain(i-w+1, i))`` with
    ``gain(s, e) = counts[s, e-s] * (e-s)``. Ties keep the earlier candidate in the order single frame,
    then windows of 2, 3, ... frames (strict ``>``, as the reference). Integer arithmetic throughout.

    Args:
        counts: (F, F) int64 array from `static_counts`.
        max_window_size: longest segment in frames, >= 1.

    Returns:
        ``(segments, reduced)``: inclusive ``(start, end)`` pairs covering 0..F-1 in order, and dp[F-1].
    """
    F = counts.shape[0]
    best = np.zeros(F + 1, dtype=np.int64)  # best[i + 1] = dp[i]; best[0] = dp[-1] = 0
    start = np.zeros(F, dtype=np.int64)
    for i in range(F):
        value, first = best[i], i
        widest = min(i + 1, max_window_size)
        if widest >= 2:
            lengths = np.arange(1, widest)  # e - s for windows of 2..widest frames
            starts = i - lengths
            cand = best[starts] + counts[starts, lengths] * lengths
            k = int(np.argmax(cand))  # first maximum: the shortest window among equal gains
            if cand[k] > value:
                value, first = cand[k], int(starts[k])
        best[i + 1] = value
        start[i] = first
    segments: list[Segment] = []
    i = F - 1
    while i >= 0:
        segments.append((int(start[i]), i))
        i = int(start[i]) - 1
    segments.reverse()
    return segments, int(best[F])


def segment_video(similarity: Tensor, tau: float, max_window_size: int) -> tuple[list[Segment], int]:
    """Partition the frames into segments maximising the temporally merged tokens (algorithm §2).

    Args:
        similarity: (F-1, N) cosine of consecutive frames (`frame_similarity`); F = rows + 1.
        tau: static threshold (``sim > tau``).
        max_window_size: longest segment in frames, >= 1.

    Returns:
        ``(segments, reduced)``: inclusive ``(start, end)`` int pairs covering 0..F-1 in temporal order,
        and the number of tokens removed by temporal merging (``dp[F-1]``).

    Raises:
        ValueError: non-2-D or non-finite similarity, non-finite tau, max_window_size < 1.
    """
    check_tensor("similarity", similarity, 2)
    check_finite("similarity", similarity)
    tau = check_tau(tau)
    max_window_size = check_int("max_window_size", max_window_size, minimum=1)
    runs = static_runs(similarity.float(), tau)
    counts = static_counts(runs).cpu().numpy()
    return optimal_segments(counts, max_window_size)


def renormalised_ratio(retain_ratio: float, frames: int, tokens_per_frame: int, reduced: int) -> float:
    """r' of algorithm §2.5: ``min(retain_ratio / ((F*N - reduced) / (F*N)), 1)``, in exactly that order."""
    total = frames * tokens_per_frame
    return float(min(retain_ratio / ((total - reduced) / total), 1))


def check_tau(tau: object) -> float:
    """tau as a float; any finite number (a cosine threshold: > 1 disables temporal merging)."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not math.isfinite(float(tau)):
        raise ValueError(f"tau must be a finite number, got {tau!r}")
    return float(tau)
