"""Outputs of a bench result: the human-readable table, the JSON file and the figure (`bench.figure`).

Each takes the result dict of `run_bench` (or one loaded back from its JSON) and nothing else.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lmms_holitom.bench.summary import DISAGREE_RATIO, disagreements
from lmms_holitom.methods import get_method

__all__ = ["format_table", "frames_text", "spread_lines", "write_json", "write_plot"]


def _fmt(value: float | None, spec: str = ".1f") -> str:
    """``format(value, spec)``, or ``-`` for a missing or non-finite value."""
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def frames_text(meta: dict[str, Any]) -> str:
    """``F frames``, or for Qwen VL ``F frames = G temporal groups`` (a HoliTom frame is one group)."""
    groups = meta.get("holitom_frames", meta["frames"])
    return f"{meta['frames']} frames" + ("" if groups == meta["frames"] else f" = {groups} temporal groups")


def _header(meta: dict[str, Any], stat: str) -> str:
    """The first line: model, device, dtype, input sizes and the statistic shown."""
    stat_label = "medians" if stat == "median" else "best of the repeats: min time, max tok/s"
    return (f"{meta['model']} ({meta['model_class']}), {meta['device']} {meta['device_name']}, {meta['dtype']}, "
            f"{frames_text(meta)} x {meta['tokens_per_frame']} tokens, prompt {meta['prompt_tokens']} tokens, "
            f"{meta['new_tokens']} new tokens, warmup {meta['warmup']}, repeats {meta['repeats']} ({stat_label})")


def _setting_row(r: dict[str, Any], stat: str) -> str:
    """One setting's row of the table (`` !`` at the end when its repeats disagree)."""
    t = r["timings_ms"]
    mem = r["memory"] or {}
    return (
        f"{r['name']:<18} {r['visual_tokens']['outer']:>5}/{r['visual_tokens']['inner']:<5} "
        f"{_fmt(r['tflops']['paper'], '.3g'):>7} {_fmt(t['vision'][stat]):>8} "
        f"{_fmt(t['merge'][stat], '.2f'):>7} {_fmt(t['llm_prefill'][stat]):>8} "
        f"{_fmt(t['ttft'][stat]):>8} {_fmt(r['speedups']['ttft'], '.2f'):>6} "
        f"{_fmt(r['decode_tok_s'][stat]):>7} {_fmt(r['speedups']['decode'], '.2f'):>6} "
        f"{_fmt(mem.get('peak_mb')):>8} {_fmt(r['ratios']['peak_memory'], '.2f'):>5} "
        f"{_fmt(mem.get('llm_peak_mb')):>7} {_fmt(r['ratios']['llm_peak_memory'], '.2f'):>5} "
        f"{_fmt(mem.get('kv_cache_mb'), '.2f'):>7}" + (" !" if disagreements(r) else "")
    )


def spread_lines(result: dict[str, Any]) -> list[str]:
    """The warning when a setting's repeats disagree (`DISAGREE_RATIO`), one line per such setting; or the note
    that one repeat shows no spread."""
    repeats = result["meta"]["repeats"]
    if repeats < 2:
        return [f"{repeats} repeat per setting: no spread, so disagreeing repeats cannot be seen (use --repeats 3)"]
    bad = {r["name"]: disagreements(r) for r in result["settings"]}
    bad = {name: figures for name, figures in bad.items() if figures}
    if not bad:
        return []
    lines = [f"WARNING: repeats disagree (max/min > {DISAGREE_RATIO:g} over {repeats} repeats; a shared or busy "
             f"machine?) in {len(bad)} of {len(result['settings'])} settings, marked !: these figures are not "
             "stable; rerun with more --repeats on a quiet machine"]
    lines += [f"  ! {name}: " + ", ".join(f"{k} {v:.2f}x" for k, v in figures.items()) for name, figures in bad.items()]
    return lines


def _probe_lines(probe: dict[str, Any], stat: str) -> list[str]:
    """The probe study: each variant's time and peak, then the overheads."""
    unit = "temporal groups" if "eager_skipped" in probe else "frames"
    lines = [f"probe study (vision tower alone, {probe['frames']} {unit}, probe on {probe['feature_layer']}):"]
    for name, v in probe["variants"].items():
        if "error" in v:
            lines.append(f"  {name:<28} {v['error']}")
            continue
        scores = f"   probe scores {v['scores_peak_mb']:.1f} MB" if "scores_peak_mb" in v else ""
        lines.append(f"  {name:<28} {_fmt(v['time_ms'][stat], '.2f'):>9} ms   peak {_fmt(v['peak_mb']):>9} MB"
                     + scores)
    if "eager_skipped" in probe:
        lines.append(f"  (no eager all-layer variant: {probe['eager_skipped']})")
    lines.append(f"  probe overhead {_fmt(probe['probe_overhead_pct'], '.1f')} % of the tower; eager all-layer "
                 f"attention {_fmt(probe['eager_overhead_pct'], '.1f')} %; extra memory probe "
                 f"{_fmt(probe['probe_extra_memory_mb'])} MB vs eager {_fmt(probe['eager_extra_memory_mb'])} MB")
    if probe.get("pipeline_vision_overhead_pct") is not None:
        lines.append(f"  inside generate: {probe['pipeline_setting']} vision stage "
                     f"{probe['pipeline_vision_overhead_pct']:+.1f} % vs dense "
                     "(tower + projector + pooling + probe)")
    return lines


def _target_line(t: dict[str, Any]) -> str:
    """One target: value, threshold and PASS / FAIL (or n/a here, would pass / fail)."""
    verdict = ("PASS" if t["pass"] else "FAIL") if t["applies"] else (
        "n/a here" + ("" if t["met"] is None else f", would {'pass' if t['met'] else 'fail'}"))
    return f"  {t['target']}: {_fmt(t['value'], '.3g')} {t['op']} {t['threshold']:g} -> {verdict}"


def format_table(result: dict[str, Any]) -> str:
    """The human-readable table (``meta.stat`` of the repeats; ``(x)`` = speedup vs dense, ratio for memory)."""
    meta = result["meta"]
    stat = meta.get("stat", "median")
    head = (f"{'setting':<18} {'vis out/in':>11} {'TFLOPs':>7} {'vision':>8} {'merge':>7} {'prefill':>8} "
            f"{'TTFT ms':>8} {'(x)':>6} {'tok/s':>7} {'(x)':>6} {'peak MB':>8} {'(x)':>5} {'LLM MB':>7} {'(x)':>5} "
            f"{'KV MB':>7}")
    lines = [_header(meta, stat), head, "-" * len(head)]
    lines += [_setting_row(r, stat) for r in result["settings"]]
    lines.append("vision/merge/prefill/TTFT in ms; merge = outer + inner; prefill = LLM prefill (incl. inner merge); "
                 "(x) = speedup vs dense (memory: ratio to dense)")
    lines += spread_lines(result)
    if result["settings"] and result["settings"][0].get("memory"):
        lines.append(f"peak MB: {meta['memory_measure']}; LLM MB: the same after the vision tower "
                     "(projector, pooling, merge, prefill, decoding); KV MB: the cache after decoding")
    for r in result["settings"][1:]:
        if r["merge_overhead_pct_of_dense_prefill"] is not None and get_method(r["method"]).outer is not None:
            lines.append(f"  {r['name']}: merge overhead {r['merge_overhead_pct_of_dense_prefill']:.2f} % of dense "
                         f"LLM prefill (outer {_fmt(r['timings_ms']['outer_merge'][stat], '.2f')} ms, inner "
                         f"{_fmt(r['timings_ms']['inner_merge'][stat], '.2f')} ms)")
    probe = result.get("probe")
    if probe and "variants" in probe:
        lines += _probe_lines(probe, stat)
    targets = result.get("targets") or []
    if targets:
        lines.append("targets:")
        lines += [_target_line(t) for t in targets]
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | Path) -> None:
    """Write the result as indented JSON (parent folders created; non-JSON values as ``str``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str))


def write_plot(result: dict[str, Any], path: str | Path) -> Any:
    """Write `bench.figure.bench_figure` as a PNG (atomically, parent folders created); returns the Figure."""
    from lmms_holitom.bench.figure import bench_figure
    from lmms_holitom.figures import save_png

    fig = bench_figure(result)
    save_png(fig, path)
    return fig
