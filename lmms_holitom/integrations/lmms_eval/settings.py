"""Model-arg parsing for the lmms-eval models: every value validated at load time, one-line errors.

Each parser names the parameter and the allowed values or range in its ValueError, e.g.
``max_frames_num must be an integer >= 1, got 'abc'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lmms_holitom.config import ENV_VARS, HoliTomConfig
from lmms_holitom.values import parse_bool
from lmms_holitom.values import parse_int as _parse_int

__all__ = ["ORIGINAL_ENV_VARS", "none_if_empty", "original_env_set", "parse_bool", "parse_choice", "parse_int",
           "parse_layout_args", "parse_on_video_error", "resolve_holitom_config"]

#: Environment variables of the authors' scripts that `HoliTomConfig.from_env` reads.
ORIGINAL_ENV_VARS: tuple[str, ...] = ("WRAPPER", *ENV_VARS, "FASTV_k", "FASTV_r")

ON_VIDEO_ERROR = ("record", "fail")
ON_VIDEO_ERROR_ALIASES = {"raise": "fail"}


def none_if_empty(value: Any) -> Any:
    """None for ``None``, ``""``, ``none`` and ``null`` (what an empty ``k=`` model arg gives)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
        return None
    return value


def parse_int(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (``high=None``: no upper bound), ASCII digits only (`values.parse_int`)."""
    return _parse_int(name, value, low, high)


def parse_choice(name: str, value: Any, choices: tuple[str, ...], aliases: dict[str, str] | None = None) -> str:
    text = str(value).strip().lower()
    text = (aliases or {}).get(text, text)
    if text not in choices:
        shown = ", ".join(choices) + (f" (aliases: {', '.join(aliases)})" if aliases else "")
        raise ValueError(f"{name} must be one of {shown}, got {value!r}")
    return text


def parse_on_video_error(value: Any) -> str:
    """``record`` or ``fail`` (``raise`` is accepted as an alias of ``fail``)."""
    return parse_choice("on_video_error", value, ON_VIDEO_ERROR, ON_VIDEO_ERROR_ALIASES)


def parse_layout_args(given: dict[str, Any]) -> dict[str, Any]:
    """The video-layout model args the user gave (``mm_spatial_pool_mode``, ``mm_spatial_pool_stride``,
    ``mm_newline_position``), validated, as ``from_pretrained`` keyword arguments; absent ones are left out.

    The allowed values are the model layer's (`lmms_holitom.hf.models.layout.VideoLayout`) when it is there.
    """
    out: dict[str, Any] = {}
    for name in ("mm_spatial_pool_mode", "mm_spatial_pool_stride", "mm_newline_position"):
        value = none_if_empty(given.get(name))
        if value is None:
            continue
        out[name] = parse_int(name, value) if name == "mm_spatial_pool_stride" else str(value).strip().lower()
    if out:
        try:
            from lmms_holitom.hf.models.layout import VideoLayout
        except ImportError:  # the model layer without layouts: only LLaVA-OneVision's
            fixed = {"mm_spatial_pool_mode": "bilinear", "mm_spatial_pool_stride": 2,
                     "mm_newline_position": "one_token"}
            for name, value in out.items():
                if value != fixed[name]:
                    raise ValueError(f"{name} must be {fixed[name]}, got {value!r}") from None
        else:
            VideoLayout.from_config_dict({}, **out)  # raises ValueError naming the setting
    return out


def original_env_set(environ: Mapping[str, str]) -> list[str]:
    return [name for name in ORIGINAL_ENV_VARS if environ.get(name, "").strip() != ""]


def resolve_holitom_config(
    holitom_args: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[HoliTomConfig, str]:
    """The effective `HoliTomConfig` from the HoliTom model args and the authors' env vars, and its source.

    ``WRAPPER`` is the switch, as in the authors' scripts (empty counts as unset):

    1. ``WRAPPER`` unset: the model args and `HoliTomConfig`'s defaults define the config (method
       ``holitom`` with the default settings unless ``method=`` is given; the source says so, for the log).
       Other original variables (``RETAIN_RATIO``, ``T``, ``HOLITOM_k``, ...) are ignored, and named in the
       returned source so the caller can warn — the one-letter ``T``/``K``/``D`` are too generic to act on
       without ``WRAPPER``.
    2. ``WRAPPER`` set, no HoliTom model arg: exactly `HoliTomConfig.from_env` (the scripts run as before).
    3. ``WRAPPER`` set and HoliTom model args: `HoliTomConfig.from_env` is the base and every HoliTom model
       arg wins over it, field by field (``method=`` wins over ``WRAPPER``).
    """
    environ = os.environ if environ is None else environ
    env_set = original_env_set(environ)
    if "WRAPPER" not in env_set:
        source = "model_args" if holitom_args else "defaults"
        if env_set:
            source += f"; ignored {', '.join(env_set)} because WRAPPER is not set"
        config = HoliTomConfig.from_dict(holitom_args)
        if "method" not in holitom_args:
            source += f"; method {config.method} with the default settings since neither method= nor WRAPPER is set"
        return config, source
    if not holitom_args:
        return HoliTomConfig.from_env(environ), f"environment ({', '.join(env_set)})"
    source = f"environment ({', '.join(env_set)}) overridden by model_args ({', '.join(sorted(holitom_args))})"
    return HoliTomConfig.from_env(environ, **holitom_args), source
