"""The ``holitom`` entry of a vLLM model config (``hf_overrides``), validated once into a `HoliTomConfig`.

vLLM applies ``hf_overrides`` to the Hugging Face config that both the prompt processor (placeholder counts) and
the model (the merge) read, so one entry drives both. Absent entry: the plugin is inert (stock vLLM behaviour).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lmms_holitom.config import HoliTomConfig

__all__ = [
    "DEFAULT_METHOD", "KEY", "RECORD_ENV", "VLLM_METHODS", "HoliTomVllmError", "video_token_count", "vllm_settings",
]

KEY = "holitom"
#: the method an entry without ``method`` runs: HoliTom's outer merge (full HoliTom cannot run in vLLM)
DEFAULT_METHOD = "holitom_wo_m"
#: a folder: every compressed video is saved there (``<pid>-<n>.pt``: origins, rows, counts), for checks
RECORD_ENV = "LMMS_HOLITOM_VLLM_RECORD"
#: the methods vLLM can run: no step at decoder layer K, and a count known before the video is encoded
VLLM_METHODS = ("dense", "visionzip", "holitom_wo_m", "evs", "vidcom2")
_NOT_HERE = {
    "holitom": "it merges at decoder layer K, and vLLM V1 keeps one KV length per request across all layers; "
    "use holitom_wo_m (HoliTom's outer merge)",
    "fastv": "it drops tokens at decoder layer K, and vLLM V1 keeps one KV length per request across all layers",
}


class HoliTomVllmError(ValueError):
    """A ``holitom`` entry vLLM cannot run (the message is one line naming the field)."""


def _mapping(raw: Any) -> Mapping[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HoliTomVllmError(f"hf_overrides.{KEY} is not valid JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise HoliTomVllmError(f"hf_overrides.{KEY} must be a mapping of HoliTom settings, got {type(raw).__name__}")
    return raw


def vllm_settings(hf_config: Any) -> HoliTomConfig | None:
    """The validated settings of ``hf_config.holitom``, or None when the config has no such entry.

    Raises:
        HoliTomVllmError: a value out of range, an unknown key, or a method vLLM cannot run (one line).
    """
    raw = getattr(hf_config, KEY, None)
    if raw is None:
        return None
    values = dict(_mapping(raw))
    values.setdefault("method", DEFAULT_METHOD)
    try:
        config = HoliTomConfig.from_dict(values)
    except ValueError as exc:
        raise HoliTomVllmError(f"hf_overrides.{KEY}: {exc}") from None
    if config.method in _NOT_HERE:
        raise HoliTomVllmError(
            f"hf_overrides.{KEY}.method={config.method!r} cannot run in vLLM: {_NOT_HERE[config.method]}; "
            f"methods here: {', '.join(VLLM_METHODS)}"
        )
    return _exact(config, values)


def _exact(config: HoliTomConfig, values: Mapping[str, Any]) -> HoliTomConfig:
    """HoliTom's outer merge runs at its exact budget here (vLLM sizes the placeholders before encoding)."""
    if config.method != "holitom_wo_m":
        return config
    if "budget" in values and config.budget != "exact":
        raise HoliTomVllmError(
            f"hf_overrides.{KEY}.budget={config.budget!r} cannot run in vLLM: the video's token count must be known "
            "before it is encoded; use budget=exact"
        )
    return config.replace(budget="exact")


def video_token_count(config: HoliTomConfig | None, frames: int, tokens_per_frame: int) -> int:
    """Visual tokens one video of ``frames`` frames enters the LLM with (no separators): ``F · N`` when inert."""
    if config is None:
        return frames * tokens_per_frame
    return config.visual_budget(frames, tokens_per_frame)
