"""Checkpoint names: ``tiny`` (and the other built-in offline models) -> their folders; anything else unchanged.

The authors' LLaVA-NeXT-format checkpoints (``lmms-lab/llava-onevision-qwen2-7b-ov``,
``lmms-lab/LLaVA-Video-7B-Qwen2``, ...) load as they are (`checkpoints.load_checkpoint`); no name is mapped to
another checkpoint.
"""

from __future__ import annotations

__all__ = ["resolve_model_name"]


def resolve_model_name(name: str) -> str:
    """The folder of a built-in tiny model (built on first use), or ``name`` unchanged."""
    from lmms_holitom.testing import resolve_pretrained

    return resolve_pretrained(str(name))
