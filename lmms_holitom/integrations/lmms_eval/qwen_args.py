"""The Qwen-VL families' video model args, their defaults and their parsing: one place for both backends, the
transformers models (`qwen`: ``qwen2_5_vl_holitom``, ``qwen3_vl_holitom``, ``qwen3_5_holitom``) and
``vllm_holitom``'s Qwen families (`vllm_families`), so a study switches backends without changing its keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmms_holitom.integrations.lmms_eval.prompts import SYSTEM_PROMPT
from lmms_holitom.integrations.lmms_eval.settings import none_if_empty, parse_int
from lmms_holitom.values import MAX_FRAMES

__all__ = ["QWEN3_5_ARGS", "QWEN_ARGS", "QwenArgs"]

#: lmms-eval 0.7.3's ``qwen2_5_vl`` / ``qwen3_vl`` video args (name -> default)
QWEN_ARGS: dict[str, Any] = {"min_pixels": 256 * 28 * 28, "max_pixels": 1605632, "max_num_frames": 32, "fps": None,
                             "system_prompt": SYSTEM_PROMPT}
#: lmms-eval 0.7.3's ``qwen3_5`` video args: its pixel and frame defaults, a ``total_pixels`` budget, thinking
QWEN3_5_ARGS: dict[str, Any] = {**QWEN_ARGS, "min_pixels": 64 * 32 * 32, "max_pixels": 128 * 32 * 32,
                                "max_num_frames": 768, "total_pixels": 224 * 1024 * 32 * 32, "enable_thinking": True}


@dataclass(frozen=True)
class QwenArgs:
    """The parsed video args (`parse`); ``total_pixels`` and ``enable_thinking`` are Qwen3.5's (None elsewhere, or
    when given empty)."""

    min_pixels: int
    max_pixels: int
    max_num_frames: int
    fps: float | None
    system_prompt: str | None
    total_pixels: int | None = None
    enable_thinking: bool | None = None

    @classmethod
    def parse(cls, args: Mapping[str, Any]) -> QwenArgs:
        """The values of ``args`` (the keys of `QWEN_ARGS`, plus those of `QWEN3_5_ARGS` where the family takes
        them), validated: one-line ValueErrors naming the arg and its range."""
        min_pixels = parse_int("min_pixels", args["min_pixels"], 1)
        total = none_if_empty(args.get("total_pixels"))
        return cls(
            min_pixels=min_pixels,
            max_pixels=parse_int("max_pixels", args["max_pixels"], min_pixels),
            max_num_frames=parse_int("max_num_frames", args["max_num_frames"], 1, MAX_FRAMES),
            fps=_parse_fps(args["fps"]),
            system_prompt=none_if_empty(args["system_prompt"]),
            total_pixels=None if total is None else parse_int("total_pixels", total, 1),
            enable_thinking=_parse_thinking(args.get("enable_thinking")),
        )


def _parse_fps(value: Any) -> float | None:
    fps = none_if_empty(value)
    try:
        parsed = None if fps is None else float(fps)
    except ValueError:
        raise ValueError(f"fps must be a number > 0, got {fps!r}") from None
    if parsed is not None and not parsed > 0:
        raise ValueError(f"fps must be a number > 0, got {fps!r}")
    return parsed


def _parse_thinking(value: Any) -> bool | None:
    thinking = none_if_empty(value)
    if thinking is not None and str(thinking).lower() not in ("true", "false"):
        raise ValueError(f"enable_thinking must be true or false, got {thinking!r}")
    return None if thinking is None else str(thinking).lower() == "true"
