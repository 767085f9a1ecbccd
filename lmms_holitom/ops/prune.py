"""Pruning methods (keep some tokens as they are, drop the rest) and the selection's merge plan.

* `evs_count` / `evs_keep` — EVS (Efficient Video Sampling, arXiv 2510.14624; vLLM's ``--video-pruning-rate``):
  a token's score is its dissimilarity to the same position in the previous frame, ``1 − cos``; the first
  frame scores above every other token (it is kept whole); the ``evs_count`` tokens of highest score are kept
  (a stable sort: on equal scores the earlier token wins). algorithm §7.1.
* `selection_merge` — a `CompressedVideo` of the kept tokens (each its own output, in frame-major order).

Each is written to select exactly what vLLM 0.32's ``compute_retention_mask`` selects for the same embeddings and
``retain_ratio = 1 − q`` (the counts follow vLLM's rules, so equal ratios do not give equal counts across methods);
``tests/test_method_<name>.py`` checks it against recorded vLLM selections, ``make test-vllm`` against vLLM itself.
Scores are computed in the features' dtype, as vLLM does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lmms_holitom.ops._checks import check_features
from lmms_holitom.ops.compress import CompressedVideo, _check_finite_features, make_stats
from lmms_holitom.ops.plan import MergePlan

__all__ = ["evs_count", "evs_keep", "selection_merge"]

_FIRST_FRAME_SCORE = 255.0  # above any 1 − cos (<= 2): the first frame is always kept


def _check_ratio(retain_ratio: float) -> float:
    ratio = float(retain_ratio)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"retain_ratio must be in (0, 1], got {retain_ratio!r}")
    return ratio


def evs_count(frames: int, tokens_per_frame: int, retain_ratio: float) -> int:
    """Tokens EVS keeps: ``max(N, floor(F · N · retain_ratio))`` (the first frame whole, at least)."""
    return max(tokens_per_frame, int(frames * tokens_per_frame * _check_ratio(retain_ratio)))


def evs_keep(features: Tensor, retain_ratio: float) -> Tensor:
    """EVS's kept tokens of one video: (F, N, E) -> (F, N) bool with exactly `evs_count` True.

    Score of token (f, n): ``1 − cos(x[f, n], x[f−1, n])`` in the features' dtype for f >= 1; 255 for f = 0.
    The highest scores are kept; equal scores go to the lower flat index (``f · N + n``).
    """
    features = check_features(features)
    F, N, _ = features.shape
    count = evs_count(F, N, retain_ratio)
    scores = torch.cat([
        torch.full((1, N), _FIRST_FRAME_SCORE, dtype=features.dtype, device=features.device),
        1 - torch.nn.functional.cosine_similarity(features[1:], features[:-1], dim=-1),
    ])
    order = torch.argsort(scores.reshape(-1), descending=True, stable=True)
    keep = torch.zeros(F * N, dtype=torch.bool, device=features.device)
    return keep.index_fill_(0, order[:count], True).view(F, N)


def selection_merge(features: Tensor, keep: Tensor, **stats: object) -> CompressedVideo:
    """The kept tokens of ``features`` (F, N, E) where ``keep`` (F, N) is True, in frame-major order, as a
    `CompressedVideo` (each output is one dense token, weight 1; segments ``[(f, f)]``; ``stats`` added)."""
    features = check_features(features).contiguous()
    F, N, E = features.shape
    if keep.shape != (F, N) or keep.dtype != torch.bool:
        raise ValueError(f"keep must be a ({F}, {N}) bool tensor, got {tuple(keep.shape)} {keep.dtype}")
    _check_finite_features(features)
    keep = keep.to(features.device)
    source = keep.reshape(-1).nonzero().squeeze(-1)
    M = int(source.shape[0])
    counts = keep.sum(dim=1).tolist()  # host-side per-frame counts (one sync)
    target = torch.arange(M, device=features.device)
    plan = MergePlan.from_entries(F, N, [(target, source, torch.ones(M, device=features.device))],
                                  source // N, source % N, counts)
    segments = [(f, f) for f in range(F)]
    return CompressedVideo(
        tokens=features.reshape(F * N, E).index_select(0, source),
        positions=plan.origin_position,
        frames=plan.origin_frame,
        segments=segments,
        plan=plan,
        stats=make_stats(F, N, M, segments, reduced=0, renormalised_ratio=None, static_tokens=0,
                         static_positions=0, dominant_tokens=M, contextual_tokens=0, **stats),
    )
