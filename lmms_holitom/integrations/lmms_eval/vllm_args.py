"""Model args of ``vllm_holitom`` that configure vLLM: engine arguments, the ``holitom`` entry of ``hf_overrides``
and the sampling parameters of a request. Pure functions, vLLM-free (validated before any engine starts).

Every value is checked at load time with a one-line error naming the parameter and its allowed values, like the
transformers models' model args (`settings`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.integrations.lmms_eval.prompts import generation_kwargs
from lmms_holitom.integrations.lmms_eval.settings import (
    none_if_empty,
    parse_bool,
    parse_choice,
    parse_int,
    resolve_holitom_config,
)
from lmms_holitom.integrations.vllm.settings import DEFAULT_METHOD, KEY, vllm_settings

__all__ = ["ENGINE_ARGS", "parse_engine_args", "resolve_vllm_holitom", "sampling_kwargs"]


def _fraction(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 < number <= 1.0:
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    return number


def _json_object(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = json.loads(str(value))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} must be a JSON object, got {value!r} ({exc})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a JSON object, got {value!r}")
    return parsed


def _positive(name: str, value: Any) -> int:
    return parse_int(name, value, 1)


def _choice(*choices: str) -> Callable[[str, Any], str]:
    return lambda name, value: parse_choice(name, value, choices)


#: engine argument -> its parser (``name, value -> value for vllm.LLM``); forwarded only when given
ENGINE_ARGS: dict[str, Callable[[str, Any], Any]] = {
    "tensor_parallel_size": _positive,
    "pipeline_parallel_size": _positive,
    "max_model_len": _positive,
    "max_num_seqs": _positive,
    "max_num_batched_tokens": _positive,
    "seed": lambda name, value: parse_int(name, value, 0),
    "gpu_memory_utilization": _fraction,
    "dtype": _choice("auto", "float32", "bfloat16", "float16", "half", "float"),
    "kv_cache_dtype": _choice("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16"),
    "mm_encoder_tp_mode": _choice("weights", "data"),
    "distributed_executor_backend": _choice("uni", "mp", "ray", "external_launcher"),
    "enforce_eager": parse_bool,
    "trust_remote_code": parse_bool,
    "enable_prefix_caching": parse_bool,
    "enable_chunked_prefill": parse_bool,
    "engine_kwargs": _json_object,
}
#: engine arguments the model sets itself (an ``engine_kwargs`` entry may not change them)
FIXED_ENGINE_ARGS = ("model", "hf_overrides", "limit_mm_per_prompt")


def parse_engine_args(given: Mapping[str, Any]) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments from the engine model args that were given (empty values left out);
    ``engine_kwargs={...}`` (JSON) adds any other `vllm.EngineArgs` field, checked by vLLM itself."""
    out: dict[str, Any] = {}
    for name, parse in ENGINE_ARGS.items():
        value = none_if_empty(given.get(name))
        if value is not None:
            out[name] = parse(name, value)
    extra = out.pop("engine_kwargs", {})
    clash = sorted(set(extra) & {*ENGINE_ARGS, *FIXED_ENGINE_ARGS})
    if clash:
        raise ValueError(f"engine_kwargs may not set {', '.join(clash)}: give them as model args "
                         f"({', '.join(c for c in clash if c in ENGINE_ARGS) or 'set by the model'})")
    return {**extra, **out}


def resolve_vllm_holitom(holitom_args: Mapping[str, Any], environ: Mapping[str, str] | None = None) \
        -> tuple[HoliTomConfig, dict[str, Any], str]:
    """(the effective config vLLM runs, the ``hf_overrides`` that ask for it, where it came from).

    The model args and the authors' environment variables combine as `settings.resolve_holitom_config` says, but
    the default method is the plugin's (``holitom_wo_m``: full HoliTom cannot run in vLLM). The entry is checked
    exactly as the engine will check it (`integrations.vllm.settings.vllm_settings`), so a method vLLM cannot run
    or an out-of-range value is a one-line ValueError before any engine starts.
    """
    environ = os.environ if environ is None else environ
    args = dict(holitom_args)
    if "method" not in args and not environ.get("WRAPPER", "").strip():
        args["method"] = DEFAULT_METHOD
    config, source = resolve_holitom_config(args, environ)
    entry = config.given_dict()
    effective = vllm_settings(SimpleNamespace(**{KEY: entry}))
    assert effective is not None  # an entry is given
    return effective, {KEY: entry}, source


def sampling_kwargs(gen_kwargs: dict | None, default_max_new_tokens: int) -> dict[str, Any]:
    """``vllm.SamplingParams`` keyword arguments of an lmms-eval request, read like the transformers models read it
    (`prompts.generation_kwargs`: greedy unless ``do_sample`` with a temperature > 0; ``until`` ignored)."""
    kwargs = generation_kwargs(gen_kwargs, default_max_new_tokens, None, 0)
    out: dict[str, Any] = {"max_tokens": kwargs["max_new_tokens"], "temperature": 0.0}
    if kwargs["do_sample"]:
        out["temperature"] = kwargs["temperature"]
        if kwargs.get("top_p") is not None:
            out["top_p"] = kwargs["top_p"]
    if kwargs["num_beams"] != 1:
        raise ValueError(f"num_beams={kwargs['num_beams']} is not supported by vllm_holitom (greedy or sampling only)")
    return out
