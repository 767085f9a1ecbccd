"""``dense``: no compression — every visual token enters the LLM and every layer sees it."""

from __future__ import annotations

from lmms_holitom.methods.base import Method

__all__ = ["METHOD"]

METHOD = Method(name="dense", label="dense", reads=frozenset(), reference="the stock model")
