"""The one set of value parsers of the package: booleans, numbers, names and dtypes, the same spellings for the
config, the lmms-eval model args, the authors' env vars, study files and CLI flags. Each raises a ValueError naming
the parameter and what is allowed."""

from __future__ import annotations

from typing import Any

__all__ = ["parse_bool", "parse_float", "parse_int", "parse_name", "parse_optional_int", "resolve_dtype"]

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def parse_bool(name: str, value: Any) -> bool:
    """``true/false``, ``1/0``, ``yes/no``, ``on/off``, ``y/n``, ``t/f``; an empty string is an error, not False (for
    ``beta_merge=`` in lmms-eval ``model_args`` silently meaning "off" would invert the default). The one boolean
    parser of the package (config fields, model args, env vars)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be a boolean (true/false), got {value!r}")


_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}


def resolve_dtype(value: Any, device: Any, name: str = "dtype") -> Any:
    """A torch floating dtype from ``auto`` (bf16 on CUDA, fp32 elsewhere), a name (``float32``, ``bfloat16``,
    ``float16``, ``torch.bfloat16``) or an alias (``fp32``, ``bf16``, ``fp16``, ``half``, ``float``), or a dtype;
    ValueError naming ``name`` otherwise. The one dtype parser of the package (model args, CLI flags)."""
    import torch

    if isinstance(value, torch.dtype):
        return value
    text = str(value or "auto").strip().lower().removeprefix("torch.")
    if text == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    dtype = getattr(torch, _DTYPE_ALIASES.get(text, text), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{name} must be auto, float32, bfloat16 or float16 (or fp32, bf16, fp16), got {value!r}")
    return dtype


def parse_optional_int(name: str, value: Any) -> int | None:
    """An integer, or None spelled ``none`` / ``null`` (or Python's / YAML's None). An empty string is an error, never
    a silent None (``merge_layer=`` would otherwise turn HoliTom into HoliTom w/o M without a word)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null"}):
        return None
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"{name} must be an integer or none, got an empty value")
    return parse_int(name, value)


def parse_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be an integer, got {value!r}")


def parse_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be a number, got {value!r}")


def parse_name(name: str, value: Any) -> str:
    return str(value).strip().lower()
