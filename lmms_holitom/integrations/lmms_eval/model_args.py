"""The ``--model_args`` string as lmms-eval hands it over, checked before lmms-eval's parser turns it into a dict:
a key given twice (``retain_ratio=0.2,...,retain_ratio=0.3``) would silently keep the last value, an item without
``=`` would die in an unpacking error, and a key also given as one of lmms-eval's own flags (``--batch_size``,
``--device``) would die with "got multiple values for keyword argument".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_model_args_string", "merge_cli_extras", "split_model_args"]


def _short(value: Any, limit: int = 60) -> str:
    """A value as an error message shows it: at most ``limit`` characters (a pasted prompt stays one short line)."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def split_model_args(arg_string: str) -> list[str]:
    """The ``key=value`` items of an lmms-eval ``--model_args`` string: split at commas outside quotes and
    brackets, as lmms-eval's parser splits (``system_prompt="a, b"`` and JSON values stay whole)."""
    items: list[str] = []
    start, depth, quote = 0, 0, ""
    for i, char in enumerate(arg_string):
        if quote:
            quote = "" if char == quote and arg_string[i - 1] != "\\" else quote
        elif char in "\"'" and (i == 0 or arg_string[i - 1] != "\\"):
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(arg_string[start:i].strip())
            start = i + 1
    items.append(arg_string[start:].strip())
    return [item for item in items if item]


def check_model_args_string(arg_string: str) -> None:
    """Raise a one-line ValueError for a ``--model_args`` key given twice (lmms-eval's parser would keep the
    last value silently) or an item without ``=``."""
    seen: dict[str, str] = {}
    for item in split_model_args(arg_string or ""):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"model_args item {_short(item)!r} is not key=value")
        if key in seen:
            name = _short(key)
            raise ValueError(f"model_args key {name} is given twice ({name}={_short(seen[key])} and "
                             f"{name}={_short(value)}); give each key once")
        seen[key] = value


def merge_cli_extras(args: Mapping[str, Any], extras: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` (from ``--model_args``) plus lmms-eval's own flags (``--batch_size``, ``--device``, ...; None
    means not given). A key in both must have the same value: lmms-eval itself would die with a TypeError."""
    merged = dict(args)
    for key, value in extras.items():
        if value is None:
            continue
        if key in merged and str(merged[key]).strip() != str(value).strip():
            raise ValueError(f"{key} is given twice: --model_args {key}={_short(merged[key])} and --{key} "
                             f"{_short(value)}; give it once")
        merged.setdefault(key, value)
    return merged
