"""What the engine needs from a model family: `EncodedVideo` and the `HoliTomAdapter` methods.

A family's model class (``lmms_holitom/models/<family>.py``) subclasses the transformers class and
`engine.model.HoliTomModelMixin`, and implements these methods; the engine never names a family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from lmms_holitom.engine.splice import Spliced, VisualRun
from lmms_holitom.engine.stats import StageTimer

__all__ = ["EncodedVideo", "HoliTomAdapter"]


@dataclass(frozen=True)
class EncodedVideo:
    """One video after the vision side (docs/algorithm.md §1).

    Attributes:
        features: (F, N, E) projected, pooled features of the patch grid (no newlines), model dtype.
        saliency: (F, N) fp32 received attention pooled like the features, or None (not probed).
        keys: (F, N, Dk) fp32 head-averaged keys pooled like the features (VisionZip), or None.
        newline: (E,) the layout's newline embedding, or None (no newlines).
        streams: further (F, N, E') tensors aligned with ``features`` (Qwen3-VL's deepstack).
        peak_elements: elements of the largest score tensor the probe created.
        image_streams: the same kind of streams for the prompt's images (each (I, E'), all images), added at
            ``image_rows`` — images are not compressed, but their streams must still be added.
        image_rows: (I,) long, the dense (un-spliced) rows of the image placeholders, or None.
    """

    features: torch.Tensor
    saliency: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    newline: torch.Tensor | None = None
    streams: tuple[torch.Tensor, ...] = ()
    peak_elements: int = 0
    image_streams: tuple[torch.Tensor, ...] = ()
    image_rows: torch.Tensor | None = None

    @property
    def frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def tokens_per_frame(self) -> int:
        return int(self.features.shape[1])


class HoliTomAdapter(Protocol):
    """The family-specific methods `engine.prefill.compressed_prefill` calls (implemented by the model class)."""

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
