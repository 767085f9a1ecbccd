"""The one set of value parsers of the package: booleans, numbers, names and dtypes, the same spellings for the
config, the lmms-eval model args, the authors' env vars, study files and CLI flags. Each raises a ValueError naming
the parameter and what is allowed.

Numbers are spelled in ASCII only (``12``, ``-3``, ``0.15``, ``1e-3``, ``inf``): Python's ``int``/``float`` also take
other scripts' digits (``int('١')`` is 1) and ``1_000``, which no user means as a setting. The upper bounds of sizes
(`MAX_FRAMES`, `MAX_TOKENS`, ...) live here, the one place CLI flags, model args and study files take them from;
`int_flag` / `float_flag` are the argparse ``type=`` of a bounded flag, checked before any work."""

from __future__ import annotations

import argparse
import math
import re
import reprlib
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_FRAMES", "MAX_LAYER", "MAX_REPEATS", "MAX_SAMPLES", "MAX_SEED", "MAX_TOKENS", "float_flag", "int_flag",
           "parse_bool", "parse_float", "parse_int", "parse_name", "parse_optional_int", "resolve_dtype", "shown"]

#: frames of one video (``max_frames_num`` / ``max_num_frames`` / ``--frames`` / ``--max-frames``): far above any
#: published setting (64), low enough that a typo cannot ask for terabytes of pixels
MAX_FRAMES = 4096
#: tokens of one sequence or one answer (``max_new_tokens``, ``--text-tokens``, ``--visual-tokens``)
MAX_TOKENS = 1_000_000
#: a decoder layer index (``--merge-layer`` of bench, which scales K to the model): no LLM has more
MAX_LAYER = 1024
#: warm-up / timed calls of a benchmark
MAX_REPEATS = 10_000
#: samples per task (``holitom sweep --limit``, a study's ``limit``): more than any benchmark has
MAX_SAMPLES = 1_000_000_000
#: seeds: what ``torch.Generator.manual_seed`` and NumPy both take
MAX_SEED = 2**32 - 1

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE)

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 6
_SHOWN.maxlevel = 3


def shown(value: Any) -> str:
    """``repr(value)`` cut to at most about 100 characters (a value echoed in an error message: a YAML alias bomb or a
    pasted file must not print megabytes)."""
    return _SHOWN.repr(value)[:120]


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
    raise ValueError(f"{name} must be a boolean (true/false), got {shown(value)}")


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
        raise ValueError(f"{name} must be auto, float32, bfloat16 or float16 (or fp32, bf16, fp16), got {shown(value)}")
    return dtype


def parse_optional_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int | None:
    """An integer (in ``[low, high]``), or None spelled ``none`` / ``null`` (or Python's / YAML's None). An empty
    string is an error, never a silent None (``merge_layer=`` would otherwise turn HoliTom into HoliTom w/o M without
    a word)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null"}):
        return None
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"{name} must be an integer or none, got an empty value")
    return parse_int(name, value, low, high)


def _int_range(low: int | None, high: int | None) -> str:
    if low is None and high is None:
        return "an integer"
    if high is None:
        return f"an integer >= {low}"
    if low is None:
        return f"an integer <= {high}"
    return f"an integer in [{low}, {high}]"


def parse_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (None: unbounded) from an int, an integral float or an ASCII decimal string;
    ValueError ``<name> must be an integer in [low, high], got <value>`` otherwise."""
    allowed = _int_range(low, high)
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None:
        raise ValueError(f"{name} must be {allowed}, got {shown(value)}")
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{name} must be {allowed}, got {shown(number)}")
    return number


def parse_float(name: str, value: Any) -> float:
    """A float from an int, a float or an ASCII decimal string (``0.15``, ``1e-3``, ``inf``; the ranges are the
    caller's)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        return float(value.strip())
    raise ValueError(f"{name} must be a number, got {shown(value)}")


def parse_name(name: str, value: Any) -> str:
    return str(value).strip().lower()


def int_flag(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """The argparse ``type=`` of an integer flag in ``[low, high]``: ``holitom`` then says, in one line,
    ``--frames must be an integer in [1, 4096], got '0'`` before any work."""

    def parse(text: str) -> int:
        try:
            return parse_int("", text, low, high)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).strip()) from None

    parse.__name__ = _int_range(low, high)
    return parse


def float_flag(low: float | None = None, high: float | None = None, *,
               low_open: bool = False) -> Callable[[str], float]:
    """The argparse ``type=`` of a finite number flag in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    left = "(" if low_open else "["
    allowed = (f"a number in {left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
               if low is not None or high is not None else "a finite number")

    def parse(text: str) -> float:
        try:
            number = parse_float("", text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {shown(text)}") from None
        below = low is not None and (number <= low if low_open else number < low)
        if not math.isfinite(number) or below or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {shown(text)}")
        return number

    parse.__name__ = allowed
    return parse
