"""How a LLaVA checkpoint lays a video out in the LLM sequence (docs/algorithm.md §5, §5b, §11).

LLaVA-NeXT checkpoints name their video layout with three settings, which `VideoLayout` carries:

* ``mm_spatial_pool_mode``: how the vision tower's ``side × side`` patch map is pooled per frame —
  ``bilinear`` (LLaVA-OneVision: ``ceil(side / 2)``, 27 → 14, 196 tokens) or ``average`` (LLaVA-Video:
  2×2 average pooling, ``side // 2``, 27 → 13, 169 tokens);
* ``mm_spatial_pool_stride``: only 2 (the only value the evaluated checkpoints use; LLaVA-Video's average path
  of the reference code never reads it);
* ``mm_newline_position``: ``one_token`` (one ``image_newline`` after the whole video) or ``grid`` (one after each
  row of each frame: ``p · (p + 1)`` tokens per frame).

Anything else is rejected with the setting's name: a layout we do not implement must never silently fall back to
another one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["NEWLINE_POSITIONS", "POOL_MODES", "VideoLayout"]

POOL_MODES = ("bilinear", "average")
NEWLINE_POSITIONS = ("one_token", "grid")
_SETTINGS = {
    "pool_mode": "mm_spatial_pool_mode",
    "pool_stride": "mm_spatial_pool_stride",
    "newline": "mm_newline_position",
}


@dataclass(frozen=True)
class VideoLayout:
    """Pooling and newline layout of a video (validated on construction).

    Attributes:
        pool_mode: ``bilinear`` or ``average``.
        pool_stride: 2.
        newline: ``one_token`` or ``grid``.
    """

    pool_mode: str = "bilinear"
    pool_stride: int = 2
    newline: str = "one_token"

    def __post_init__(self) -> None:
        if self.pool_mode not in POOL_MODES:
            raise ValueError(
                f"mm_spatial_pool_mode must be one of {', '.join(POOL_MODES)}, got {self.pool_mode!r}"
            )
        if isinstance(self.pool_stride, bool) or self.pool_stride != 2:
            raise ValueError(f"mm_spatial_pool_stride must be 2 (the only supported stride), got {self.pool_stride!r}")
        if self.newline not in NEWLINE_POSITIONS:
            raise ValueError(
                f"mm_newline_position must be one of {', '.join(NEWLINE_POSITIONS)}, got {self.newline!r}"
            )

    @property
    def grid(self) -> bool:
        """Newline after every row of every frame (LLaVA-Video)."""
        return self.newline == "grid"

    def pooled_side(self, side: int) -> int:
        """Side of the pooled map for a ``side × side`` patch map."""
        return math.ceil(side / self.pool_stride) if self.pool_mode == "bilinear" else side // self.pool_stride

    def tokens_per_frame(self, side: int) -> int:
        """N, visual tokens of one frame before any newline."""
        return self.pooled_side(side) ** 2

    def placeholder_count(self, frames: int, side: int) -> int:
        """Visual tokens (= video placeholder ids) of a dense ``frames``-frame video, newlines included."""
        p = self.pooled_side(side)
        if self.grid:
            return frames * p * (p + 1)
        return frames * p * p + 1

    @classmethod
    def from_config_dict(cls, config: Mapping[str, Any], **overrides: Any) -> VideoLayout:
        """The layout a (LLaVA-NeXT) config dict names, with ``overrides`` winning (None = not given).

        Keys read: ``mm_spatial_pool_mode``, ``mm_spatial_pool_stride``, ``mm_newline_position``; absent keys take
        LLaVA-OneVision's values. ``overrides`` use the same names (``mm_spatial_pool_mode=...``).
        """
        unknown = sorted(set(overrides) - set(_SETTINGS.values()))
        if unknown:
            raise TypeError(f"unknown layout setting(s) {', '.join(unknown)}; known: {', '.join(_SETTINGS.values())}")
        values: dict[str, Any] = {}
        for field, key in _SETTINGS.items():
            value = overrides.get(key)
            if value is None:
                value = config.get(key)
            if value is not None:
                if field == "pool_stride" and isinstance(value, str) and value.strip().isdigit():
                    value = int(value)
                values[field] = value
        return cls(**values)

    def to_config_dict(self) -> dict[str, Any]:
        """The LLaVA-NeXT names of this layout (``mm_spatial_pool_mode`` ...)."""
        return {key: getattr(self, field) for field, key in _SETTINGS.items()}
