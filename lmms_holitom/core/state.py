"""What decoding needs to know about a compressed prefill: `PrefillState` (per prompt) and `SequenceState` (per row).

Framework-free: the transformers backend keeps it in its cache (`hf.cache.HoliTomCache`); another backend can
keep it wherever its per-request state lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["HoliTomRuntime", "PrefillState", "SequenceState"]


@dataclass(frozen=True)
class SequenceState:
    """One sequence of a compressed prefill.

    Attributes:
        prompt_length: tokens cached by layers < K (the outer-merged prompt, L').
        prompt_length_high: tokens cached by layers >= K (L' minus the tokens the inner step removed).
        next_position: RoPE position of the first decoded token (the largest prompt position + 1).
        mask_low / mask_high: (n,) padding masks of the cached prompt per layer group; None = no padding.
    """

    prompt_length: int
    prompt_length_high: int
    next_position: int
    mask_low: torch.Tensor | None = None
    mask_high: torch.Tensor | None = None


@dataclass(frozen=True)
class PrefillState:
    """What decoding needs to know about a compressed prefill.

    Attributes:
        method: the HoliTom method of the prefill.
        merge_layer: K, or None when every layer holds the same tokens.
        rope_dims: 1 (1-D RoPE, position ids (B, q)) or 3 (M-RoPE, position ids (3, B, q)).
        sequences: one `SequenceState` per batch row.
    """

    method: str
    merge_layer: int | None
    rope_dims: int
    sequences: tuple[SequenceState, ...] = field(default_factory=tuple)

    def group_of(self, layer_idx: int) -> str:
        """``high`` for layers >= K (they hold the inner-merged sequence), else ``low``."""
        return "high" if self.merge_layer is not None and layer_idx >= self.merge_layer else "low"


@dataclass
class HoliTomRuntime:
    """A HoliTom model's runtime state, one object shared by the model and its vision side (which encodes videos,
    also when ``generate`` calls it before the first forward).

    Attributes:
        config: the active `HoliTomConfig` (set by ``set_holitom``); the vision side probes saliency when its method
            needs it.
        probe_chunk: frames per chunk of the saliency probe (>= 1).
        sync_timings: see `core.stats.StageTimer`.
    """

    config: Any = None
    probe_chunk: int = 8
    sync_timings: bool = False
