"""The probe study: the cost of HoliTom's saliency probe on the vision tower alone.

The same frames go through the tower three ways: as is (SDPA, no probe), with the model's
`VisionSaliencyProbe` on the feature layer (HoliTom's way; at several chunk sizes to show memory O(chunk)),
and through an eager-attention copy of the tower returning every layer's attention (``output_attentions=True``,
the original code's way). Each is timed (warm-ups, then repeats) and metered in one more call.
"""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable
from typing import Any

import torch

from lmms_holitom.bench.meters import MB, Clock, fresh_meter
from lmms_holitom.bench.options import BenchOptions
from lmms_holitom.bench.summary import ratio, summarize

__all__ = ["probe_study"]


def _measure(fn: Callable[[], Any], clock: Clock, device: torch.device, warmup: int, repeats: int) -> dict[str, Any]:
    """``{time_ms: summarize(repeats), peak_mb}`` of ``fn`` (wall time between syncs; peak in one more call)."""
    times = []
    for i in range(warmup + repeats):
        clock.sync()
        t0 = time.perf_counter()
        fn()
        clock.sync()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000.0)
    meter = fresh_meter(device)
    with meter:
        meter.start()
        fn()
        clock.sync()
        meter.boundary("call")
    return {"time_ms": summarize(times), "peak_mb": meter.overall() / MB}


def _eager_copy(tower: Any) -> Any:
    """A deep copy of the tower with eager attention (which can return the attention weights)."""
    eager = copy.deepcopy(tower)
    if hasattr(eager, "set_attn_implementation"):
        eager.set_attn_implementation("eager")
    else:  # older transformers: the copy has its own (deep-copied) config
        eager.config._attn_implementation = "eager"
    return eager


def _overhead_pct(variant: dict[str, Any], base: dict[str, Any], stat: str) -> float | None:
    """How much slower ``variant`` is than ``base``, in % (None when either time is missing)."""
    r = ratio(variant.get("time_ms", {}).get(stat), base["time_ms"][stat])
    return None if r is None else 100.0 * (r - 1.0)


def _chunks(model: Any, opts: BenchOptions) -> tuple[int, list[int]]:
    """(the model's own probe chunk, every chunk size to measure: it first, then ``opts.probe_chunks``)."""
    default_chunk = int(model.holitom_probe_chunk) if hasattr(model, "holitom_runtime") else 8
    return default_chunk, list(dict.fromkeys([default_chunk, *opts.probe_chunks]))


def _summary(out: dict[str, Any], chunks: list[int], default_chunk: int, stat: str) -> dict[str, Any]:
    """Add the overheads (% of the tower without probe) and the extra memory per chunk to ``out``."""
    base = out["variants"]["sdpa_no_probe"]
    probe = out["variants"][f"probe_chunk{default_chunk}"]
    eager_v = out["variants"].get("eager_all_layer_attention", {})
    out["probe_overhead_pct"] = _overhead_pct(probe, base, stat)
    out["eager_overhead_pct"] = _overhead_pct(eager_v, base, stat)
    out["probe_extra_memory_mb"] = probe["peak_mb"] - base["peak_mb"]
    out["eager_extra_memory_mb"] = (eager_v["peak_mb"] - base["peak_mb"]) if "peak_mb" in eager_v else None
    out["probe_extra_memory_mb_by_chunk"] = {
        str(c): out["variants"][f"probe_chunk{c}"]["peak_mb"] - base["peak_mb"] for c in chunks
    }
    return out


def qwen_probe_study(model: Any, inputs: dict[str, torch.Tensor], opts: BenchOptions, device: torch.device,
                     log: Callable[[str], None]) -> dict[str, Any]:
    """Qwen VL encoder alone on the bench's video: as is (SDPA) vs inside `QwenVisionSaliencyProbe` per chunk.

    Each probe variant also records ``scores_peak_mb``: the probe's largest score tensor (fp32, O(chunk)).
    No eager variant: the Qwen vision blocks do not return attention weights.
    """
    from lmms_holitom.hf.models.qwen_vision import QwenVisionSaliencyProbe

    visual = model.model.visual
    pixels, grid = inputs["pixel_values_videos"], inputs["video_grid_thw"]
    clock = Clock(device)
    default_chunk, chunks = _chunks(model, opts)

    def measure(fn: Callable[[], Any]) -> dict[str, Any]:
        return _measure(fn, clock, device, opts.warmup, opts.repeats)

    def plain() -> None:
        with torch.inference_mode():
            visual(pixels, grid_thw=grid)

    groups = int(grid[0, 0])
    block = QwenVisionSaliencyProbe(visual, default_chunk).block_index
    out: dict[str, Any] = {"frames": groups, "feature_layer": f"block {block} (last full-attention block)",
                           "default_chunk": default_chunk, "variants": {},
                           "eager_skipped": "the Qwen vision blocks do not return attention weights"}
    log(f"probe study: vision encoder on {groups} temporal groups ({int(grid.prod())} patches)")
    out["variants"]["sdpa_no_probe"] = measure(plain)
    for c in chunks:
        probe = QwenVisionSaliencyProbe(visual, c, want_keys=True)

        def run(probe: QwenVisionSaliencyProbe = probe) -> None:
            probe.reset()
            with torch.inference_mode(), probe:
                visual(pixels, grid_thw=grid)

        variant = measure(run)
        variant["scores_peak_mb"] = probe.peak_elements * 4 / MB
        out["variants"][f"probe_chunk{c}"] = variant
    return _summary(out, chunks, default_chunk, opts.stat)


def probe_study(model: Any, inputs: dict[str, torch.Tensor], opts: BenchOptions, device: torch.device,
                log: Callable[[str], None]) -> dict[str, Any]:
    """Vision tower alone: as is vs with `VisionSaliencyProbe` (per chunk size) vs eager all-layer attention.

    ``inputs``: the bench's model inputs (``pixel_values_videos``; Qwen VL: `qwen_probe_study`).
    """
    if hasattr(model.model, "visual"):
        return qwen_probe_study(model, inputs, opts, device, log)
    pixels = inputs["pixel_values_videos"]
    try:
        from lmms_holitom.hf.models.probes import VisionSaliencyProbe, feature_attention_module
    except ImportError as err:
        return {"skipped": f"lmms_holitom.hf.models.probes unavailable: {err}"}
    tower = model.model.vision_tower
    frames = pixels.flatten(0, 1)
    clock = Clock(device)
    layer = model.config.vision_feature_layer
    module = feature_attention_module(tower, layer)
    default_chunk, chunks = _chunks(model, opts)

    def measure(fn: Callable[[], Any]) -> dict[str, Any]:
        return _measure(fn, clock, device, opts.warmup, opts.repeats)

    def plain() -> None:
        with torch.inference_mode():
            tower(frames, output_hidden_states=True)

    def with_probe(chunk: int) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode(), VisionSaliencyProbe(module, chunk, want_keys=True):
                tower(frames, output_hidden_states=True)
        return run

    out: dict[str, Any] = {"frames": int(frames.shape[0]), "feature_layer": layer,
                           "default_chunk": default_chunk, "variants": {}}
    log(f"probe study: vision tower on {frames.shape[0]} frames")
    out["variants"]["sdpa_no_probe"] = measure(plain)
    for c in chunks:
        out["variants"][f"probe_chunk{c}"] = measure(with_probe(c))
    if opts.eager:
        eager = _eager_copy(tower)

        def all_layers() -> None:
            with torch.inference_mode():
                eager(frames, output_hidden_states=True, output_attentions=True)

        try:
            out["variants"]["eager_all_layer_attention"] = measure(all_layers)
        except torch.OutOfMemoryError as err:  # pragma: no cover - GPU only
            out["variants"]["eager_all_layer_attention"] = {"error": f"out of memory: {err}"}
        del eager
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return _summary(out, chunks, default_chunk, opts.stat)
