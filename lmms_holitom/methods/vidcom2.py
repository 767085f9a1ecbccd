"""``vidcom2``: VidCom2, Video Compression Commander (EMNLP 2025, arXiv 2505.14454; vLLM's ``--video-pruning-method
vidcom2``) — per-frame budgets from each frame's distinctiveness, then each frame's least redundant tokens against
the video and frame centres, reconciled to ``max(F, floor(F · N · retain_ratio))`` tokens (`ops.prune.vidcom2_keep`,
algorithm §7.2). ``retain_ratio = 1 − q`` selects what vLLM selects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmms_holitom.methods.base import Method

if TYPE_CHECKING:
    from torch import Tensor

    from lmms_holitom.config import HoliTomConfig
    from lmms_holitom.ops import CompressedVideo

__all__ = ["METHOD"]


def _outer(features: Tensor, attention: Tensor | None, keys: Tensor | None, config: HoliTomConfig) -> CompressedVideo:
    from lmms_holitom.ops.prune import selection_merge, vidcom2_keep

    return selection_merge(features, vidcom2_keep(features, config.retain_ratio))


def _budget(config: HoliTomConfig, frames: int, tokens: int) -> int:
    from lmms_holitom.ops.prune import vidcom2_count

    return vidcom2_count(frames, tokens, config.retain_ratio)


METHOD = Method(
    name="vidcom2",
    label="VidCom2",
    reads=frozenset({"retain_ratio"}),
    headline=("retain_ratio",),
    outer=_outer,
    budget=_budget,
    reference="VidCom2, arXiv 2505.14454; equal to vLLM 0.32's vllm/multimodal/video_prune/vidcom2.py",
)
