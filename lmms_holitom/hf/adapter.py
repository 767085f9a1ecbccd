"""What the engine needs from a model family: the `HoliTomAdapter` methods (returning `core.video.EncodedVideo`).

A family's model class (``lmms_holitom/hf/models/<family>.py``) subclasses the transformers class and
`hf.model.HoliTomModelMixin`, and implements these methods; the engine never names a family.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from lmms_holitom.core.splice import Spliced, VisualRun
from lmms_holitom.core.stats import StageTimer
from lmms_holitom.core.video import EncodedVideo

__all__ = ["HoliTomAdapter"]


class HoliTomAdapter(Protocol):
    """The family-specific methods `hf.prefill.compressed_prefill` calls (implemented by the model class)."""

    config: Any
    lm_head: nn.Module
    holitom_sync_timings: bool

    def holitom_language_model(self) -> nn.Module:
        """The decoder (``layers``, ``rotary_emb``, ``norm``, ``config``)."""

    def holitom_video_count(self, media: dict[str, Any]) -> int | None:
        """Videos in ``media`` (None if it cannot tell before encoding)."""

    def holitom_encode(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, media: dict[str, Any],
        timer: StageTimer,
    ) -> tuple[torch.Tensor, EncodedVideo]:
        """(1, L, E) prompt embeddings (images already in place) and the encoded video."""

    def holitom_layout(self, video: EncodedVideo, compressed: Any) -> VisualRun:
        """The visual run of the video: the compressed tokens (None: all of them) laid out with newlines."""

    def holitom_dense_runs(self, video: EncodedVideo) -> tuple[int, ...]:
        """Placeholder count of each placeholder run of the dense video."""

    def holitom_placeholder_mask(self, input_ids: torch.Tensor | None, embeds: torch.Tensor) -> torch.Tensor:
        """(L,) bool, the video placeholder rows of the prompt."""

    def holitom_positions(
        self, spliced: Spliced, *, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
        media: dict[str, Any],
    ) -> torch.Tensor:
        """Position ids of the spliced sequence: (1, L') or (3, 1, L') — the family's policy (§10)."""
