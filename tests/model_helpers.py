"""Helpers shared by the model tests (imported as a plain module, like `reference_loops`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def llm_input_embeds(model: Any, inputs: dict[str, Any], **forward_kwargs: Any) -> torch.Tensor:
    """The (outer-merged) sequence entering the decoder's first layer during one forward of ``model``."""
    captured: dict[str, torch.Tensor] = {}

    def capture(module: Any, args: tuple) -> None:
        captured.setdefault("embeds", args[0].detach().clone())

    hook = model.model.language_model.layers[0].register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            model(**inputs, **forward_kwargs)
    finally:
        hook.remove()
    return captured["embeds"]


@contextmanager
def traced(model: Any) -> Iterator[None]:
    """Record `model.holitom_last_trace` for the prefills inside the block (tracing is off by default)."""
    before = model.holitom_trace
    model.holitom_trace = True
    try:
        yield
    finally:
        model.holitom_trace = before


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any op creates."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out
