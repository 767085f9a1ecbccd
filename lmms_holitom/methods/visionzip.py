"""``visionzip``: VisionZip's video adaptation (algorithm §7) — per frame, the tokens the vision tower attends to
most (dominant) plus contextual tokens merged by key similarity; ``spatial_tokens`` (or ``round(retain_ratio · N)``)
per frame, ``dominant_ratio`` of them dominant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmms_holitom.methods.base import Method

if TYPE_CHECKING:
    from torch import Tensor

    from lmms_holitom.config import HoliTomConfig
    from lmms_holitom.ops import CompressedVideo

__all__ = ["METHOD", "tokens_per_frame"]


def tokens_per_frame(config: HoliTomConfig, tokens: int) -> int:
    """Tokens kept per frame of ``tokens``: ``spatial_tokens`` (at most N) or ``round(retain_ratio · N)``, >= 1."""
    if config.spatial_tokens is not None:
        return min(config.spatial_tokens, tokens)
    return max(1, min(tokens, round(config.retain_ratio * tokens)))


def _outer(features: Tensor, attention: Tensor | None, keys: Tensor | None, config: HoliTomConfig) -> CompressedVideo:
    """`ops.visionzip_merge` with the config's per-frame counts; r' reported as ``min(retain_ratio, 1)``."""
    import dataclasses

    from lmms_holitom.ops import renormalised_ratio, visionzip_merge

    if keys is None:
        raise ValueError("keys must be given (an (F, N, Dk) tensor) for method 'visionzip', got None")
    if attention is None:
        raise ValueError("attention must be given (an (F, N) tensor) for method 'visionzip', got None")
    frames, tokens = int(features.shape[0]), int(features.shape[1])
    per_frame = tokens_per_frame(config, tokens)
    out = visionzip_merge(features, attention, keys, tokens=per_frame, dominant=int(per_frame * config.dominant_ratio))
    stats = dict(out.stats)
    stats["renormalised_ratio"] = renormalised_ratio(config.retain_ratio, frames, tokens, 0)  # keeps the key's place
    return dataclasses.replace(out, stats=stats)


def _budget(config: HoliTomConfig, frames: int, tokens: int) -> int:
    return frames * tokens_per_frame(config, tokens)


METHOD = Method(
    name="visionzip",
    label="VisionZip",
    reads=frozenset({"retain_ratio", "spatial_tokens", "dominant_ratio", "fidelity"}),
    headline=("retain_ratio",),
    saliency=True,
    keys=True,
    outer=_outer,
    budget=_budget,
    reference="VisionZip, arXiv 2412.04467, as HoliTom's authors adapted it to video",
)
