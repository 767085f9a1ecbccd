"""Pruning methods (keep some tokens as they are, drop the rest): EVS and VidCom2, and the selection's merge plan.

* `evs_count` / `evs_keep` — EVS (Efficient Video Sampling, arXiv 2510.14624; vLLM's ``--video-pruning-rate``):
  a token's score is its dissimilarity to the same position in the previous frame, ``1 − cos``; the first
  frame scores above every other token (it is kept whole); the ``evs_count`` tokens of highest score are kept
  (a stable sort: on equal scores the earlier token wins). algorithm §7.1.
* `vidcom2_count` / `vidcom2_keep` — VidCom2 (Video Compression Commander, EMNLP 2025, arXiv 2505.14454; vLLM's
  ``--video-pruning-method vidcom2``): on the half of the channels with the lowest variance over the video, a
  token's redundancy is its multi-scale Gaussian similarity to the video's centre plus its frame's centre;
  frames far from the video centre get a larger share of the budget; each frame keeps its least redundant
  tokens, then the total is reconciled to ``vidcom2_count`` by redundancy over the whole video. algorithm §7.2.
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

__all__ = ["evs_count", "evs_keep", "selection_merge", "vidcom2_count", "vidcom2_keep", "vidcom2_scores"]

_FIRST_FRAME_SCORE = 255.0  # above any 1 − cos (<= 2): the first frame is always kept
_ALPHAS = tuple(2.0**k for k in range(-3, 2))  # VidCom2's Gaussian bandwidths, 1/8 .. 2
_LOW_VARIANCE_SHARE = 0.5  # VidCom2 scores on this share of the channels (the lowest-variance ones)
_TEMPERATURE = 0.01  # VidCom2's softmax temperature over the frames' distinctiveness


def _check_ratio(retain_ratio: float) -> float:
    ratio = float(retain_ratio)
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"retain_ratio must be in (0, 1], got {retain_ratio!r}")
    return ratio


def evs_count(frames: int, tokens_per_frame: int, retain_ratio: float) -> int:
    """Tokens EVS keeps: ``max(N, floor(F · N · retain_ratio))`` (the first frame whole, at least)."""
    return max(tokens_per_frame, int(frames * tokens_per_frame * _check_ratio(retain_ratio)))


def vidcom2_count(frames: int, tokens_per_frame: int, retain_ratio: float) -> int:
    """Tokens VidCom2 keeps: ``max(F, min(floor(F · N · retain_ratio), F · N))`` (one per frame, at least)."""
    total = frames * tokens_per_frame
    return max(frames, min(int(total * _check_ratio(retain_ratio)), total))


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


def _gaussian_similarity(x: Tensor, centre: Tensor) -> Tensor:
    """(F, N, C) tokens vs a broadcastable centre -> (F, N): ``Σ_a exp(−|x − c|² / 2a)`` over `_ALPHAS`."""
    squared = ((x - centre) ** 2).sum(dim=-1)
    total = torch.exp(-squared / (2.0 * _ALPHAS[0]))
    for alpha in _ALPHAS[1:]:
        total = total + torch.exp(-squared / (2.0 * alpha))
    return total


def _lowest(scores: Tensor, counts: Tensor) -> Tensor:
    """(R, N) scores, (R,) counts -> (R, N) bool: each row's ``counts[r]`` lowest scores."""
    rank = torch.argsort(torch.argsort(scores, dim=-1, stable=True), dim=-1)
    return rank < counts.unsqueeze(-1)


def vidcom2_scores(features: Tensor, retain_ratio: float) -> tuple[Tensor, Tensor]:
    """VidCom2's redundancy of each token (F, N) and each frame's budget (F,) long in [1, N] (steps 1–3 of
    `vidcom2_keep`), in the features' dtype."""
    features = check_features(features)
    F, N, E = features.shape
    ratio = _check_ratio(retain_ratio)
    flat = features.reshape(F * N, E)
    channels = max(1, int(E * _LOW_VARIANCE_SHARE))
    low = torch.topk(flat.var(dim=0, unbiased=False), k=channels, largest=False).indices
    x = torch.nn.functional.normalize(flat.index_select(-1, low).view(F, N, channels), dim=-1)
    video_score = _gaussian_similarity(x, x.mean(dim=(0, 1), keepdim=True))
    redundancy = video_score + _gaussian_similarity(x, x.mean(dim=1, keepdim=True))
    distinct = -video_score.mean(dim=-1)
    share = torch.softmax((distinct - distinct.max()) / _TEMPERATURE, dim=0)
    scale = (ratio * (1.0 + share - share.mean())).clamp(max=1.0)
    return redundancy, (scale * N).round().long().clamp(min=1, max=N)


def vidcom2_keep(features: Tensor, retain_ratio: float) -> Tensor:
    """VidCom2's kept tokens of one video: (F, N, E) -> (F, N) bool with exactly `vidcom2_count` True.

    1. channels: the ``max(1, floor(E / 2))`` of lowest variance over all F·N tokens (population variance);
    2. redundancy ``s = g(x, video centre) + g(x, frame centre)`` on the L2-normalised selected channels, ``g``
       the multi-scale Gaussian similarity (bandwidths 1/8 .. 2), centres the means of the normalised tokens;
    3. frame budgets ``k_f = clamp(round(N · min(ρ (1 + p_f − mean p), 1)), 1, N)``, ρ = ``retain_ratio``,
       ``p = softmax(−mean_n g(x_f, video centre) / 0.01)`` (distinctive frames get more);
    4. each frame keeps its ``k_f`` least redundant tokens (so every frame keeps one, at this step);
    5. the total is brought to the count: the most redundant kept tokens are dropped, or the least redundant
       others added, over the whole video — as vLLM does, a drop may take a frame's last token.
    """
    F, N, _ = check_features(features).shape
    count = min(vidcom2_count(F, N, retain_ratio), F * N)
    redundancy, budgets = vidcom2_scores(features, retain_ratio)
    keep = _lowest(redundancy, budgets).view(-1)
    drift = int(budgets.sum()) - count  # one host sync
    flat_redundancy = redundancy.view(-1)
    if drift > 0:  # drop the most redundant kept tokens
        ranked = torch.where(keep, flat_redundancy, flat_redundancy.new_tensor(-float("inf")))
        keep[torch.topk(ranked, k=drift, largest=True).indices] = False
    elif drift < 0:  # add the least redundant others
        ranked = torch.where(keep, flat_redundancy.new_tensor(float("inf")), flat_redundancy)
        keep[torch.topk(ranked, k=-drift, largest=False).indices] = True
    return keep.view(F, N)


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
