"""From raw measurements to the JSON record of each setting: statistics, ratios to dense and the targets.

Pure functions over plain data: `summarize` (median/min/max/best of the repeats), `setting_result` (one
setting's record, keys `SETTING_FIELDS`), `add_ratios` (every figure relative to dense), `targets` (the
performance targets, each with whether it applies on this run and whether it passes) and `disagreements` (the
figures whose repeats disagree, see `DISAGREE_RATIO`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from lmms_holitom.bench.runner import Record
from lmms_holitom.bench.settings import Setting
from lmms_holitom.flops import ModelShape, setting_flops, vision_flops
from lmms_holitom.methods import DENSE, HOLITOM

__all__ = ["DISAGREE_RATIO", "SETTING_FIELDS", "SPREAD_FIGURES", "TIMING_FIELDS", "add_ratios", "dense_stats",
           "disagreements", "ratio", "setting_result", "spread", "summarize", "targets"]

#: Keys every entry of ``result["settings"]`` has (tests check them).
SETTING_FIELDS = (
    "name", "method", "retain_ratio", "config", "visual_tokens", "prompt_tokens", "segments", "static_tokens",
    "tflops", "timings_ms", "hooks_ms", "decode_tok_s", "memory", "ratios", "speedups",
    "merge_overhead_pct_of_dense_prefill",
)
#: Keys of ``timings_ms`` (each a {median, min, max, values} summary).
TIMING_FIELDS = ("vision", "outer_merge", "inner_merge", "merge", "llm_prefill", "prefill", "ttft",
                 "decode_total", "first_token_in_decode_run")

#: Figures compared with dense in ``ratios``: name -> path into a setting's record.
_RATIO_FIGURES = {
    "ttft": ("timings_ms", "ttft"),
    "vision": ("timings_ms", "vision"),
    "llm_prefill": ("timings_ms", "llm_prefill"),
    "prefill": ("timings_ms", "prefill"),
    "decode_total": ("timings_ms", "decode_total"),
    "decode_tok_s": ("decode_tok_s",),
    "peak_memory": ("memory", "peak_mb"),
    "llm_peak_memory": ("memory", "llm_peak_mb"),
    "kv_cache": ("memory", "kv_cache_mb"),
    "tflops_paper": ("tflops", "paper"),
    "tflops_exact": ("tflops", "exact"),
    "visual_tokens_outer": ("visual_tokens", "outer"),
    "visual_tokens_inner": ("visual_tokens", "inner"),
}

#: Repeats of a figure *disagree* when the largest is more than this many times the smallest (max / min > 1.5):
#: on a shared or busy machine one repeat was slowed down, and the median of so few repeats is not a stable
#: figure. The table and the plot warn; rerun with more ``--repeats`` (or ``--stat best``) on a quiet machine.
DISAGREE_RATIO = 1.5
#: The timed figures checked for disagreeing repeats (those the table and the plot show): label -> path.
SPREAD_FIGURES = {
    "vision": ("timings_ms", "vision"),
    "merge": ("timings_ms", "merge"),
    "LLM prefill": ("timings_ms", "llm_prefill"),
    "TTFT": ("timings_ms", "ttft"),
    "decode tok/s": ("decode_tok_s",),
}


def summarize(values: Iterable[float], higher_is_better: bool = False) -> dict[str, Any]:
    """``{median, min, max, best, values}`` of the finite values (NaN dropped; all-NaN -> None stats).

    ``best`` is the min for times (noise on a shared machine only adds time) and the max for speeds.
    """
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return {"median": None, "min": None, "max": None, "best": None, "values": vals}
    best = max(finite) if higher_is_better else min(finite)
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite), "best": best,
            "values": vals}


def spread(summary: dict[str, Any] | None) -> float | None:
    """max / min of a `summarize` dict's finite repeats; None with fewer than 2 of them or a minimum <= 0."""
    if not summary:
        return None
    values = [v for v in summary.get("values") or () if isinstance(v, (int, float)) and math.isfinite(v)]
    lo, hi = summary.get("min"), summary.get("max")
    if len(values) < 2 or lo is None or hi is None or lo <= 0:
        return None
    return hi / lo


def disagreements(record: dict[str, Any]) -> dict[str, float]:
    """The figures of one setting's record whose repeats disagree: label -> max / min (> `DISAGREE_RATIO`)."""
    out: dict[str, float] = {}
    for label, path in SPREAD_FIGURES.items():
        value = spread(_node(record, path))
        if value is not None and value > DISAGREE_RATIO:
            out[label] = value
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or not finite, or ``b`` is 0."""
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b) or b == 0:
        return None
    return a / b


def dense_stats(tokens_per_frame: int, prompt_tokens: int, frames: int, newline: int = 1) -> dict[str, Any]:
    """Stats of a dense prefill for the stock class (which has no ``holitom_stats``).

    ``frames`` HoliTom frames of ``tokens_per_frame`` tokens, plus ``newline`` tokens (LLaVA-OneVision's 1).
    """
    n, v = tokens_per_frame, frames * tokens_per_frame + newline
    return {"method": DENSE, "frames": frames, "tokens_per_frame": n, "dense_tokens": v,
            "outer_tokens": v, "inner_tokens": v, "merge_layer": None,
            "segments": frames, "static_tokens": 0, "prompt_tokens_dense": prompt_tokens,
            "prompt_tokens": prompt_tokens}


def _tflops(setting: Setting, stats: dict[str, Any], shape: ModelShape, frames: int,
            newline: int = 1) -> dict[str, float]:
    """TFLOPs of a setting: the paper's convention (no newline token), the exact one, and the vision tower."""
    outer = int(stats["outer_tokens"])
    text = int(stats["prompt_tokens"]) - outer
    paper = setting_flops(setting.config, shape, frames, visual_tokens=max(outer - newline, 0), convention="paper")
    exact = setting_flops(setting.config, shape, frames, visual_tokens=outer, convention="exact", text_tokens=text)
    return {"paper": paper / 1e12, "exact": exact / 1e12, "vision": vision_flops(frames, shape) / 1e12}


def _decode_vs_ttft(rec: Record, new_tokens: int) -> float | None:
    """Decode tok/s with the TTFT of the separate 1-token call: (n − 1) / (median total − median TTFT)."""
    total, ttft = summarize(rec.decode_total)["median"], summarize(rec.ttft)["median"]
    if new_tokens < 2 or total is None or ttft is None or total <= ttft:
        return None
    return (new_tokens - 1) / ((total - ttft) / 1000.0)


def _timings(rec: Record) -> dict[str, dict[str, Any]]:
    """``timings_ms``: the model's own stage timings, or the forward hooks' for the stock class."""
    stage = rec.stage
    if stage:
        vision, llm, prefill = stage.get("vision", []), stage.get("llm", []), stage.get("prefill", [])
        outer, inner = stage.get("outer_merge", []), stage.get("inner_merge", [])
    else:
        vision, llm = rec.hook_vision, rec.hook_after_vision
        prefill = [a + b for a, b in zip(rec.hook_vision, rec.hook_after_vision)]
        outer = inner = [0.0] * len(rec.ttft)
    return {
        "vision": summarize(vision),
        "outer_merge": summarize(outer),
        "inner_merge": summarize(inner),
        "merge": summarize(a + b for a, b in zip(outer, inner)),
        "llm_prefill": summarize(llm),
        "prefill": summarize(prefill),
        "ttft": summarize(rec.ttft),
        "decode_total": summarize(rec.decode_total),
        "first_token_in_decode_run": summarize(rec.first_token),
    }


def setting_result(setting: Setting, rec: Record, fallback_stats: dict[str, Any], frames: int, shape: ModelShape,
                   new_tokens: int, newline: int = 1) -> dict[str, Any]:
    """The JSON record of one setting (``ratios``/``speedups`` are filled by `add_ratios`).

    ``fallback_stats`` (`dense_stats`) stand in for the model's ``holitom_stats`` when it has none; ``frames``
    are HoliTom frames (Qwen VL: temporal groups); ``newline``: visual tokens the paper's count leaves out.
    """
    stats = rec.stats or fallback_stats
    return {
        "name": setting.name,
        "method": setting.config.method,
        "retain_ratio": setting.retain_ratio,
        "config": setting.config.to_dict(),
        "visual_tokens": {"dense": int(stats["dense_tokens"]), "outer": int(stats["outer_tokens"]),
                          "inner": int(stats["inner_tokens"])},
        "prompt_tokens": {"dense": int(stats["prompt_tokens_dense"]), "compressed": int(stats["prompt_tokens"])},
        "segments": int(stats.get("segments", frames)),
        "static_tokens": int(stats.get("static_tokens", 0)),
        "tflops": _tflops(setting, stats, shape, frames, newline),
        "timings_ms": _timings(rec),
        "timings_source": "model.holitom_stats" if rec.stage else "forward hooks (stock model)",
        "hooks_ms": {"vision_tower": summarize(rec.hook_vision),
                     "after_vision_to_first_logits": summarize(rec.hook_after_vision)},
        "decode_tok_s": summarize(rec.decode_tok_s, higher_is_better=True),
        # the same with the TTFT of the separate 1-token call: (n - 1) / (median total - median TTFT)
        "decode_tok_s_vs_ttft_call": _decode_vs_ttft(rec, new_tokens),
        "generated_tokens": rec.generated,
        "memory": rec.memory,
        "ratios": {},
        "speedups": {},
        "merge_overhead_pct_of_dense_prefill": None,
    }


def _node(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in a record (None where the path ends early)."""
    node: Any = record
    for p in path:
        node = node.get(p) if isinstance(node, dict) else None
    return node


def _figure(record: dict[str, Any], path: tuple[str, ...], stat: str) -> float | None:
    """The value at ``path`` in a record; for a `summarize` dict, its ``stat``."""
    node = _node(record, path)
    return node.get(stat) if isinstance(node, dict) and stat in node else node


def add_ratios(results: list[dict[str, Any]], stat: str = "median") -> None:
    """Every figure as a ratio to dense (value / dense; dense = 1.0), plus speedups (dense / value).

    Timed figures use the statistic ``stat`` (``median`` or ``best``) of the repeats. ``results[0]`` is dense.
    """
    dense = results[0]
    dense_llm = _figure(dense, ("timings_ms", "llm_prefill"), stat)
    ttft, decode = ("timings_ms", "ttft"), ("decode_tok_s",)
    for r in results:
        r["ratios"] = {k: ratio(_figure(r, p, stat), _figure(dense, p, stat)) for k, p in _RATIO_FIGURES.items()}
        r["speedups"] = {
            "ttft": ratio(_figure(dense, ttft, stat), _figure(r, ttft, stat)),
            "llm_prefill": ratio(dense_llm, _figure(r, ("timings_ms", "llm_prefill"), stat)),
            "decode": ratio(_figure(r, decode, stat), _figure(dense, decode, stat)),
        }
        pct = ratio(_figure(r, ("timings_ms", "merge"), stat), dense_llm)
        r["merge_overhead_pct_of_dense_prefill"] = None if pct is None else 100.0 * pct


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets, each with its value, whether it applies here and whether it passes.

    Speed targets apply on CUDA only: merge overhead and TTFT/decoding speedups to the 7B decoder at 32 frames,
    probe overhead to the real SigLIP-so400m tower; the probe overhead on the real Qwen2.5-VL-7B / Qwen3-VL-8B
    encoder applies on any device. The memory targets (deterministic) apply everywhere.
    """
    meta = result["meta"]
    cuda = meta["device"].startswith("cuda")
    is_7b = meta["decoder_layers"] == 28 and meta["hidden"] == 3584  # LLaVA-OV-7B's decoder (shape or checkpoint)
    on_target = cuda and meta["frames"] == 32 and is_7b
    so400m = meta.get("vision_hidden") == 1152 and meta.get("vision_layers") == 26  # the real SigLIP tower
    # the real Qwen2.5-VL-7B / Qwen3-VL-8B encoder (the target holds on a CPU too)
    qwen_real = (meta.get("vision_hidden"), meta.get("vision_layers")) in ((1280, 32), (1152, 27))
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, op: str, threshold: float, applies: bool) -> None:
        ok = None
        if value is not None:
            ok = value <= threshold if op == "<=" else value >= threshold
        rows.append({"target": name, "value": value, "op": op, "threshold": threshold, "applies": applies,
                     "pass": ok if applies else None, "met": ok})

    for r in result["settings"]:
        if r["method"] == HOLITOM:  # the paper's targets are HoliTom's
            add(f"merge overhead % of dense prefill [{r['name']}]", r["merge_overhead_pct_of_dense_prefill"],
                "<=", 3.0, on_target)
            if r["memory"] is not None:
                add(f"LLM-side peak memory / dense [{r['name']}]", r["ratios"]["llm_peak_memory"], "<=", 1.0, True)
            if r["retain_ratio"] is not None and abs(r["retain_ratio"] - 0.10) < 1e-9:
                add(f"TTFT speedup vs dense [{r['name']}]", r["speedups"]["ttft"], ">=", 2.3, on_target)
                add(f"decode speedup vs dense [{r['name']}]", r["speedups"]["decode"], ">=", 1.3, on_target)
    probe = result.get("probe") or {}
    if "probe_overhead_pct" in probe:
        add("probe overhead % of the vision tower", probe["probe_overhead_pct"], "<=", 10.0,
            (cuda and so400m) or qwen_real)
        eager_mb = probe.get("eager_extra_memory_mb")
        if eager_mb is not None:
            add("probe extra memory / eager extra memory", ratio(probe["probe_extra_memory_mb"], eager_mb),
                "<=", 1.0, True)
    return rows
