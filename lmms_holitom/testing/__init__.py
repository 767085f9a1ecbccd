"""Test builders of lmms-holitom: the offline tiny models (random weights, the real geometry), built on first use.

Nothing on a production path imports this package except through the one entry point that resolves the names of
the built-in tiny models, `resolve_pretrained` (``pretrained=tiny``, ``--pretrained tiny-qwen3-vl``...).

* `tiny_llava` — ``tiny``: a tiny LLaVA-OneVision (SigLIP 384/14 geometry, Qwen2 decoder);
* `tiny_qwen` — ``tiny-qwen2.5-vl``, ``tiny-qwen3-vl``, ``tiny-qwen3-vl-moe``, ``tiny-qwen3.5``, ``tiny-qwen3.5-moe``;
* `cache` — where they live (``$LMMS_HOLITOM_CACHE`` or ``~/.cache/lmms_holitom``) and the atomic first-use build.
"""

from __future__ import annotations

import os
from pathlib import Path

from lmms_holitom.testing.tiny_llava import (
    TINY_NAME,
    TinySpec,
    build_tiny_model,
    ensure_tiny_model,
    tiny_cache_dir,
)

__all__ = [
    "TINY_NAME",
    "TinySpec",
    "build_tiny_model",
    "ensure_tiny",
    "ensure_tiny_model",
    "resolve_pretrained",
    "tiny_cache_dir",
    "tiny_model_dir",
    "tiny_model_names",
]


def tiny_model_names() -> tuple[str, ...]:
    """Every built-in tiny model: ``tiny`` (LLaVA-OneVision) and the tiny Qwen-VL models (`tiny_qwen`)."""
    from lmms_holitom.testing.tiny_qwen import TINY_QWEN_NAMES

    return (TINY_NAME, *TINY_QWEN_NAMES)


def tiny_model_dir(name: str) -> Path:
    """The default folder of the built-in tiny model ``name`` (built or not). ValueError for an unknown name."""
    from lmms_holitom.testing.tiny_qwen import TINY_QWEN_NAMES, tiny_qwen_cache_dir

    if name == TINY_NAME:
        return tiny_cache_dir()
    if name in TINY_QWEN_NAMES:
        return tiny_qwen_cache_dir(name)
    raise ValueError(f"unknown tiny model {name!r}; known: {', '.join(tiny_model_names())}")


def ensure_tiny(name: str, path: str | os.PathLike | None = None) -> Path:
    """The folder of the built-in tiny model ``name``, built (atomically) on first use into ``path`` or its
    default folder. ValueError for an unknown name."""
    from lmms_holitom.testing.tiny_qwen import TINY_QWEN_NAMES, ensure_tiny_qwen_model

    if name == TINY_NAME:
        return ensure_tiny_model(path)
    if name in TINY_QWEN_NAMES:
        return ensure_tiny_qwen_model(name, path)
    raise ValueError(f"unknown tiny model {name!r}; known: {', '.join(tiny_model_names())}")


def resolve_pretrained(name: str) -> str:
    """Map the name of a built-in tiny model (``tiny``, ``tiny-qwen3.5``, ... `tiny_model_names`) to its folder,
    building it on first use; anything else is returned unchanged."""
    return str(ensure_tiny(name)) if name in tiny_model_names() else name
