"""Checkpoint names: the original lmms-lab names map to their Hugging Face-format twins.

The authors' scripts load ``lmms-lab/llava-onevision-qwen2-7b-ov`` and friends through the LLaVA-NeXT code
base; transformers loads the converted ``llava-hf/...-hf`` twins. `resolve_model_name` accepts either (and
``tiny``, the offline test model) and returns what ``from_pretrained`` should load, logging one line when it
maps a name.

Note on LLaVA-Video-7B-Qwen2: its HF-format conversion (``llava-hf/LLaVA-Video-7B-Qwen2-hf``) is a
LLaVA-OneVision-architecture checkpoint, so it runs through this package; transformers applies the OneVision
layout to it (bilinear 27→14 pooling, one newline after the whole video), not LLaVA-Video's own ``grid``
layout (spec §5).
"""

from __future__ import annotations

import logging

__all__ = ["LMMS_LAB_TO_HF", "resolve_model_name"]

logger = logging.getLogger(__name__)

#: Original (LLaVA-NeXT format) checkpoint name -> converted transformers checkpoint name.
LMMS_LAB_TO_HF: dict[str, str] = {
    "lmms-lab/llava-onevision-qwen2-0.5b-ov": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
    "lmms-lab/llava-onevision-qwen2-7b-ov": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
    "lmms-lab/llava-onevision-qwen2-72b-ov": "llava-hf/llava-onevision-qwen2-72b-ov-hf",
    "lmms-lab/llava-onevision-qwen2-0.5b-si": "llava-hf/llava-onevision-qwen2-0.5b-si-hf",
    "lmms-lab/llava-onevision-qwen2-7b-si": "llava-hf/llava-onevision-qwen2-7b-si-hf",
    "lmms-lab/llava-onevision-qwen2-72b-si": "llava-hf/llava-onevision-qwen2-72b-si-hf",
    "lmms-lab/LLaVA-Video-7B-Qwen2": "llava-hf/LLaVA-Video-7B-Qwen2-hf",
}
_LOWER = {k.lower(): v for k, v in LMMS_LAB_TO_HF.items()}


def resolve_model_name(name: str) -> str:
    """Return the checkpoint to load for ``name``.

    ``tiny`` -> the folder of the offline tiny model (built on first use); an lmms-lab name -> its ``llava-hf``
    twin (one log line); anything else (a local folder, another hub id) is returned unchanged.
    """
    from lmms_holitom.tiny import resolve_pretrained

    name = str(name)
    if name == "tiny":
        return resolve_pretrained(name)
    mapped = _LOWER.get(name.strip().rstrip("/").lower())
    if mapped is not None:
        logger.warning("lmms-holitom: %s is an LLaVA-NeXT checkpoint; loading its transformers twin %s", name, mapped)
        return mapped
    return name
