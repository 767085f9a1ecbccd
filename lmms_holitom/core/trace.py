"""`HoliTomTrace`: what one compressed prefill fed to the decoder (``model.holitom_trace = True`` to record).

With the trace, a prefill can be replayed through the stock decoder (``inputs_embeds`` + ``position_ids``, and for
Qwen3-VL the deepstack streams at ``visual_mask``) and its compression inspected token by token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["NEWLINE_ORIGIN", "HoliTomTrace"]

#: The origin of a row that is not a token of the video's patch grid (a newline embedding): ``(-1, -1)``.
NEWLINE_ORIGIN = (-1, -1)


@dataclass(frozen=True)
class HoliTomTrace:
    """One compressed prefill as the decoder saw it (tensors detached, on the model's device).

    Attributes:
        inputs_embeds: (1, L', E) the sequence entering the first decoder layer.
        position_ids: the position ids fed to the decoder: (1, L') for 1-D RoPE, (3, 1, L') for M-RoPE.
        visual_mask: (L',) bool, True at the rows that are visual tokens (newlines included).
        origins: (M, 2) long, M = visual_mask.sum(): each visual row's ``(frame, spatial index)`` of origin, in
            sequence order (a static token: its segment's first frame and its cluster centre's position); a
            newline row is ``(-1, -1)`` (`NEWLINE_ORIGIN`).
        inner_keep: (L'',) long, indices into the L' rows kept for layers >= K, or None without an inner step.
        deepstack: Qwen3-VL's compressed deepstack streams, each (M, E), or None.
        segments: the temporal segments ``(start, end)`` (inclusive frames) of the outer merge, or None (no outer
            merge: FastV).
        saliency: (F, N) the vision saliency that ranked the tokens, or None.
        inner_attention: (V,) the last prompt token's attention over the visual run at layer K-1, or None.
    """

    inputs_embeds: torch.Tensor
    position_ids: torch.Tensor
    visual_mask: torch.Tensor
    origins: torch.Tensor
    inner_keep: torch.Tensor | None = None
    deepstack: tuple[torch.Tensor, ...] | None = None
    segments: tuple[tuple[int, int], ...] | None = None
    saliency: torch.Tensor | None = None
    inner_attention: torch.Tensor | None = None

    @property
    def visual_start(self) -> int:
        """Row of the first visual token."""
        return int(self.visual_mask.nonzero()[0])

    @property
    def visual_length(self) -> int:
        """Visual rows (newlines included)."""
        return int(self.visual_mask.sum())
