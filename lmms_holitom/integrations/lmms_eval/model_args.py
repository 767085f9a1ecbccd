"""The ``--model_args`` string as lmms-eval hands it over, checked before lmms-eval's parser turns it into a dict:
a key given twice (``retain_ratio=0.2,...,retain_ratio=0.3``) would silently keep the last value, an item without
``=`` would die in an unpacking error, and a key also given as one of lmms-eval's own flags (``--batch_size``,
``--device``) would die with "got multiple values for keyword argument".
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ModelArgsExit", "build_from_model_args", "check_model_args_string", "merge_cli_extras",
           "split_model_args"]

_Model = TypeVar("_Model")


class ModelArgsExit(SystemExit):
    """A setting error under lmms-eval's command line: one line on stderr and exit status 1. lmms-eval 0.7.3 catches
    every ``Exception`` a model raises, prints its traceback and exits 0, so a plain ValueError would look like a
    crash that succeeded; ``SystemExit`` passes through its handler (`build_from_model_args`)."""


def running_lmms_eval_cli(argv0: str | None = None) -> bool:
    """True under ``python -m lmms_eval`` (also as each ``torchrun ... -m lmms_eval`` worker) or the ``lmms-eval``
    console script; False for Python callers of ``simple_evaluate``, who get the ValueError itself."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name in ("lmms_eval.__main__", "lmms_eval"):
        return True
    return Path(sys.argv[0] if argv0 is None else argv0).name in ("lmms-eval", "lmms_eval")


def build_from_model_args(model_id: str, build: Callable[..., _Model], arg_string: str | Mapping[str, Any],
                          additional_config: Mapping[str, Any] | None) -> _Model:
    """``build(**model_args)`` from what lmms-eval passes to ``create_from_arg_string``: the ``--model_args`` string
    (checked by `check_model_args_string` first: a key given twice is an error before lmms-eval's parser keeps the
    last value) or a mapping, merged with lmms-eval's own flags (`merge_cli_extras`). Under lmms-eval's command line
    a ValueError (a setting) becomes `ModelArgsExit`: ``<model_id>: error: <message>``, exit status 1."""
    from lmms_eval.utils import simple_parse_args_string

    try:
        if isinstance(arg_string, Mapping):  # simple_evaluate(model_args={...}): keys are unique already
            return build(**merge_cli_extras(arg_string, additional_config or {}))
        check_model_args_string(arg_string)
        return build(**merge_cli_extras(simple_parse_args_string(arg_string or ""), additional_config or {}))
    except ValueError as err:
        if running_lmms_eval_cli():
            message = str(err).removeprefix(f"{model_id}: ")  # some messages name the model already
            raise ModelArgsExit(f"{model_id}: error: {message}") from None
        raise


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
