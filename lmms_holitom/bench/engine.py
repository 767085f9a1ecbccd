"""`run_bench`: one whole bench run, from options to the result dict (schema `SCHEMA`).

It checks the options, builds (or reuses) the model, the settings and the synthetic inputs, runs the
measurement loop (`runner`), turns the records into per-setting results with ratios to dense (`summary`),
adds the run's ``meta``, the probe study (`probe`) and the targets. The measured quantities are described in
the package docstring (`lmms_holitom.bench`).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from lmms_holitom.bench.inputs import synthetic_prompt, synthetic_text, synthetic_video
from lmms_holitom.bench.meters import CudaMemoryMeter, TrackedMemoryMeter
from lmms_holitom.bench.options import BenchOptions, resolve_device, resolve_dtype
from lmms_holitom.bench.probe import probe_study
from lmms_holitom.bench.qwen import QWEN_FRAME_PX, check_qwen_frames, is_qwen, qwen_inputs, qwen_shape
from lmms_holitom.bench.runner import load_model, measure_settings, model_label
from lmms_holitom.bench.settings import build_settings
from lmms_holitom.bench.summary import add_ratios, dense_stats, ratio, setting_result, targets
from lmms_holitom.flops import ModelShape, shape_from_hf_config
from lmms_holitom.layer_kinds import FULL_ATTENTION
from lmms_holitom.methods import DENSE, get_method

__all__ = ["SCHEMA", "run_bench"]

SCHEMA = "holitom-bench/1"

_NOTES = [
    "ratios = value / dense (dense = 1.0); speedups = dense / value for times, value / dense for tok/s",
    "timings_ms.llm_prefill = the model's 'llm' stage (decoder + LM head, includes inner_merge); "
    "merge = outer_merge + inner_merge",
    "decode tok/s = (new_tokens - 1) / (total - first-token time), both in the same generate call",
    "tflops.paper counts visual tokens without the newline token (the paper's convention)",
]


def _check(opts: BenchOptions) -> None:
    """Raise ValueError for options no run can honour."""
    if opts.new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {opts.new_tokens}")
    if opts.repeats < 1 or opts.warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    if opts.stat not in ("median", "best"):
        raise ValueError(f"stat must be 'median' or 'best', got {opts.stat!r}")


def _meta(opts: BenchOptions, model: Any, label: str, holitom: bool, shape: ModelShape, device: torch.device,
          dtype: torch.dtype, prompt_tokens: int, params_m: float, build_s: float) -> dict[str, Any]:
    """``result["meta"]``: the model, the machine, the inputs and every option of the run."""
    import transformers

    return {
        "model": label,
        "shape": opts.shape if not opts.pretrained else None,
        "pretrained": opts.pretrained,
        "model_class": type(model).__name__,
        "holitom_model": holitom,
        "decoder_layers": shape.layers,
        "hidden": shape.hidden,
        "vision_hidden": shape.vision_hidden,
        "vision_layers": shape.vision_layers,
        "params_m": params_m,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "dtype": str(dtype).replace("torch.", ""),
        "family": getattr(model.config, "model_type", None),
        "frames": opts.frames,
        # HoliTom frames: Qwen VL's temporal groups (2 input frames each), else the input frames
        "holitom_frames": _holitom_frames(opts.frames, model.config),
        "frame_px": QWEN_FRAME_PX if is_qwen(model.config) else None,
        "tokens_per_frame": shape.tokens_per_frame,
        "prompt_tokens": prompt_tokens,
        "text_tokens": opts.text_tokens,
        "new_tokens": opts.new_tokens,
        "warmup": opts.warmup,
        "repeats": opts.repeats,
        "stat": opts.stat,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "build_s": build_s,
        "memory_measure": (CudaMemoryMeter.measure if device.type == "cuda" else TrackedMemoryMeter.measure),
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
        "notes": list(_NOTES),
    }


def _min_merge_layer(config: Any) -> int:
    """The first decoder layer where tokens may be cut: Qwen3-VL's deepstack stream count, else 1."""
    vision = getattr(config, "vision_config", None)
    return max(1, len(getattr(vision, "deepstack_visual_indexes", None) or ()))


def _layer_types(config: Any) -> tuple[str, ...] | None:
    """The decoder's layer kinds when it is hybrid (``config.layer_types`` naming more than full attention)."""
    types = getattr(config.get_text_config(), "layer_types", None)
    return tuple(types) if types and set(types) != {FULL_ATTENTION} else None


def _holitom_frames(frames: int, config: Any) -> int:
    """HoliTom frames of ``frames`` input frames: Qwen VL's temporal groups, else the frames themselves."""
    return check_qwen_frames(frames, config) if is_qwen(config) else frames


def _inputs(model: Any, opts: BenchOptions, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The synthetic video and prompt in the model family's processor format, on ``device``.

    LLaVA-OneVision: 384 px frames, ``pixel_values_videos`` (1, F, 3, 384, 384); Qwen VL: `bench.qwen` (448 px).
    """
    if is_qwen(model.config):
        check_qwen_frames(opts.frames, model.config)
        video = synthetic_video(opts.frames, size=QWEN_FRAME_PX, scenes=opts.scenes, seed=opts.seed)
        inputs = qwen_inputs(model, video, synthetic_text(model, opts.text_tokens, opts.seed))
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(dtype)
        return {k: v.to(device) for k, v in inputs.items()}
    pixels = synthetic_video(opts.frames, scenes=opts.scenes, seed=opts.seed).to(device=device, dtype=dtype)
    input_ids = synthetic_prompt(model, opts.frames, text_tokens=opts.text_tokens, seed=opts.seed).to(device)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "pixel_values_videos": pixels}


def _pipeline_vision_overhead(probe: dict[str, Any], results: list[dict[str, Any]], stat: str) -> None:
    """The probe's overhead seen inside ``generate``: the vision stage of the first measured setting whose method
    reads the saliency (HoliTom, VisionZip) vs dense's.

    (Tower + projector + pooling, plus the probe and the pooling of its saliency.)
    """
    outer = [r for r in results if get_method(r["method"]).saliency]
    if outer and "variants" in probe:
        r = ratio(outer[0]["timings_ms"]["vision"][stat], results[0]["timings_ms"]["vision"][stat])
        probe["pipeline_vision_overhead_pct"] = None if r is None else 100.0 * (r - 1.0)
        probe["pipeline_setting"] = outer[0]["name"]


def run_bench(
    opts: BenchOptions, log: Callable[[str], None] | None = None, model: Any = None
) -> dict[str, Any]:
    """Run the whole bench and return the result dict (see the package docstring; written as JSON by the CLI).

    ``model``: an already built model (e.g. from `load_model`) to measure instead of building one from
    ``opts.pretrained`` / ``opts.shape``, so a study can reuse it across frame counts; it must be on
    ``opts.device``.
    """
    import transformers

    log = log or (lambda msg: None)
    transformers.logging.set_verbosity_error()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    _check(opts)
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    torch.manual_seed(opts.seed)

    t0 = time.perf_counter()
    if model is None:
        model, label, holitom = load_model(opts, device, dtype)
    else:
        label, holitom = model_label(opts), hasattr(model, "set_holitom")
        dtype = next(model.parameters()).dtype
    build_s = time.perf_counter() - t0
    layers = int(model.config.get_text_config().num_hidden_layers)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    log(f"model {label} on {device} ({dtype}): {params_m:.1f} M params, "
        f"{layers} decoder layers, built in {build_s:.1f} s; HoliTom class: {holitom}")

    methods = tuple(opts.methods) if holitom else (DENSE,)
    if not holitom and set(opts.methods) - {DENSE}:
        log("lmms_holitom.hf.models does not export the HoliTom model yet: measuring dense only")
    settings = build_settings(methods, opts.retain_ratios, layers, merge_layer=opts.merge_layer,
                              merge_ratio=opts.merge_ratio, tau=opts.tau, fastv_layer=opts.fastv_layer,
                              fastv_ratio=opts.fastv_ratio, min_layer=_min_merge_layer(model.config),
                              budget=opts.budget, layer_types=_layer_types(model.config))
    inputs = _inputs(model, opts, device, dtype)
    records = measure_settings(model, inputs, settings, opts, device, holitom, log, t0)

    qwen = is_qwen(model.config)
    shape = qwen_shape(model.config, name=label) if qwen else shape_from_hf_config(model.config, name=label)
    frames = _holitom_frames(opts.frames, model.config)
    newline = 0 if qwen else 1  # LLaVA-OneVision's one video newline token
    prompt_tokens = int(inputs["input_ids"].shape[1])
    fallback = dense_stats(shape.tokens_per_frame, prompt_tokens, frames, newline=newline)
    results = [setting_result(s, records[s.name], fallback, frames, shape, opts.new_tokens, newline=newline)
               for s in settings]
    add_ratios(results, opts.stat)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "meta": _meta(opts, model, label, holitom, shape, device, dtype, prompt_tokens, params_m, build_s),
        "settings": results,
    }
    if opts.probe and holitom:
        result["probe"] = probe_study(model, inputs, opts, device, log)
        _pipeline_vision_overhead(result["probe"], results, opts.stat)
    result["targets"] = targets(result)
    result["meta"]["total_s"] = time.perf_counter() - t0
    return result
