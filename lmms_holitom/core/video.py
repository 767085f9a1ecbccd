"""`EncodedVideo`: one video after a model's vision side, the unit every backend hands to the outer merge."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["EncodedVideo"]


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
