"""Typed vision outputs: what HoliTom's ``get_video_features`` / ``get_image_features`` add to the stock output.

Each family returns a subclass of the stock output class (`HoliTomVisionOutput`, or the family's own subclass of a
richer stock class such as Qwen3-VL's deepstack output) with one more field, ``holitom`` (`HoliTomVision`): the
stage timer of the encoding, the pooled features before any layout (LLaVA), the saliency probe's findings and the
token grids (Qwen). With ``return_dict=False`` the tuple is the stock one (what the stock method returns; HoliTom's own
calls always ask for the typed output). `holitom_vision` reads it from any output — a stock one (features encoded
elsewhere) has none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from lmms_holitom.core.stats import StageTimer

__all__ = [
    "HoliTomVision", "HoliTomVisionOutput", "StockTuple", "absorb_encoded", "holitom_vision", "pop_return_dict",
    "typed_output",
]


@dataclass(frozen=True)
class HoliTomVision:
    """What one ``get_*_features`` call of a HoliTom model found besides the stock output.

    Attributes:
        timer: the `StageTimer` holding the ``vision`` stage of this call.
        features: LLaVA: (B, F, N, E) pooled features without newlines; None elsewhere.
        saliency: the probe's findings (the family's saliency record: per-token attention and keys), None when the
            method reads no saliency.
        grids: Qwen: the token grids of the videos (``generate`` drops ``video_grid_thw`` after encoding).
    """

    timer: StageTimer
    features: torch.Tensor | None = None
    saliency: Any = None
    grids: Any = None


class StockTuple:
    """Mixed into a typed vision output: ``to_tuple()`` (what ``return_dict=False`` returns) is the stock tuple —
    ``holitom`` is a record of the call, not a model output."""

    def to_tuple(self) -> tuple:
        return tuple(value for key, value in self.items() if key != "holitom")  # type: ignore[attr-defined]


@dataclass
class HoliTomVisionOutput(StockTuple, BaseModelOutputWithPooling):
    """The stock vision output (``pooler_output``: the features as the stock model lays them out) plus ``holitom``."""

    holitom: HoliTomVision | None = None


def holitom_vision(output: Any) -> HoliTomVision | None:
    """The ``holitom`` field of a vision output, or None (a stock output, or None)."""
    if not isinstance(output, ModelOutput):
        return None
    found = output.get("holitom")
    return found if isinstance(found, HoliTomVision) else None


def typed_output(cls: type[ModelOutput], output: ModelOutput, vision: HoliTomVision) -> ModelOutput:
    """``output`` as ``cls`` (a subclass of its class with the ``holitom`` field) holding ``vision``; its fields keep
    the stock output's order, then ``holitom`` (``to_tuple`` is the stock tuple: `StockTuple`)."""
    typed = cls(**output, holitom=vision)
    for key in [*output.keys(), "holitom"]:
        typed.move_to_end(key)
    return typed


def absorb_encoded(timer: StageTimer, encoded: Mapping[str, object] | None) -> None:
    """Add to ``timer`` the vision stages of every HoliTom output ``generate`` encoded before the forward (they also
    count as ``prefill``)."""
    for output in (encoded or {}).values():
        vision = holitom_vision(output)
        if vision is not None:
            timer.absorb(vision.timer, also_as="prefill")


def pop_return_dict(model: Any, kwargs: dict[str, Any]) -> bool:
    """``return_dict`` as transformers' methods read it: the caller's value (popped from ``kwargs``), else the model's
    ``config.return_dict``."""
    passed = kwargs.pop("return_dict", None)
    return bool(model.config.return_dict if passed is None else passed)
