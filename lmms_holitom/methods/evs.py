"""``evs``: EVS, Efficient Video Sampling (arXiv 2510.14624; vLLM's ``--video-pruning-rate q``) — keep the tokens
that changed most since the previous frame, the first frame whole: ``max(N, floor(F · N · retain_ratio))`` tokens
(`ops.prune.evs_keep`, algorithm §7.1). ``retain_ratio = 1 − q`` selects what vLLM selects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmms_holitom.methods.base import Method

if TYPE_CHECKING:
    from torch import Tensor

    from lmms_holitom.config import HoliTomConfig
    from lmms_holitom.ops import CompressedVideo

__all__ = ["METHOD"]


def _outer(features: Tensor, attention: Tensor | None, keys: Tensor | None, config: HoliTomConfig) -> CompressedVideo:
    from lmms_holitom.ops.prune import evs_keep, selection_merge

    return selection_merge(features, evs_keep(features, config.retain_ratio))


def _budget(config: HoliTomConfig, frames: int, tokens: int) -> int:
    from lmms_holitom.ops.prune import evs_count

    return evs_count(frames, tokens, config.retain_ratio)


METHOD = Method(
    name="evs",
    label="EVS",
    reads=frozenset({"retain_ratio"}),
    headline=("retain_ratio",),
    outer=_outer,
    budget=_budget,
    reference="EVS, arXiv 2510.14624; equal to vLLM 0.32's vllm/multimodal/video_prune/evs.py",
)
