"""``holitom bench --backend vllm``: dense vs the plugin's methods in vLLM, side by side, in one run.

One random-weight LLaVA-OneVision of the chosen shape (`vllm_model`), one in-process engine per setting
(`vllm_options.vllm_bench_settings`), all started first; then, round-robin (so drift on a shared machine hits
every setting alike): for each repeat, for each concurrency ``c``, the same ``c`` fresh videos go to every engine as
``c`` concurrent requests (`vllm_measure.run_batch`). Each figure is summarised over the repeats (median, min, max,
best; ``values``) and given as a ratio to dense at the same concurrency; repeats whose max / min exceeds
`summary.DISAGREE_RATIO` are named in ``warnings``. The pruning's own time (`vllm_measure.pruning_times`) is
measured on each engine's model with one video of the same shape, at least `PRUNING_REPEATS` times.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
from collections.abc import Callable
from typing import Any

from lmms_holitom.bench.summary import DISAGREE_RATIO, ratio, spread, summarize
from lmms_holitom.bench.vllm_measure import (
    PROMPT_MARGIN,
    BatchResult,
    pruning_times,
    run_batch,
    start_engine,
    step_budget,
    video_batch,
)
from lmms_holitom.bench.vllm_model import PATCHES, ensure_bench_model
from lmms_holitom.bench.vllm_options import OURS, VllmBenchOptions, label, vllm_bench_settings

__all__ = ["FIGURES", "PRUNING_REPEATS", "VLLM_SCHEMA", "run_vllm_bench"]

VLLM_SCHEMA = "lmms_holitom.bench.vllm/1"
#: figure -> higher is better
FIGURES = {"requests_per_s": True, "ttft_p50_ms": False, "ttft_p90_ms": False, "output_tok_s": True,
           "peak_rss_mb": False, "rss_rise_mb": False}
_TIMED = ("requests_per_s", "ttft_p50_ms", "ttft_p90_ms", "output_tok_s")
#: the fewest repeats of the pruning's own time: the probe's is a difference of two timings, noisier than either
PRUNING_REPEATS = 5


def tokens_per_frame() -> int:
    """Pooled tokens per 384² frame: ceil(27 / 2)² = 196."""
    return math.ceil(PATCHES / 2) ** 2


def _meta(opts: VllmBenchOptions) -> dict[str, Any]:
    import torch
    import transformers
    import vllm

    shape = opts.model_shape
    return {"backend": "vllm", "shape": shape.name, "shape_text": shape.describe(), "frames": opts.frames,
            "frame_size": 384, "tokens_per_frame": tokens_per_frame(), "concurrency": list(opts.concurrency),
            "step_tokens": opts.step_tokens, "repeats": opts.repeats, "warmup": opts.warmup,
            "new_tokens": opts.new_tokens, "dtype": opts.dtype,
            "seed": opts.seed, "stat": opts.stat, "disagree_ratio": DISAGREE_RATIO,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
            "versions": {"vllm": vllm.__version__, "torch": torch.__version__,
                         "transformers": transformers.__version__}}


def _record(opts: VllmBenchOptions, setting: Any) -> dict[str, Any]:
    n = tokens_per_frame()
    return {"name": setting.name, "label": label(setting), "method": setting.config.method,
            "retain_ratio": setting.retain_ratio, "ours": setting.config.method in OURS,
            "hf_overrides": None if setting.config.method == "dense" else {"holitom": setting.config.given_dict()},
            "visual_tokens": setting.config.visual_budget(opts.frames, n) + 1,  # + the newline after the video
            "prompt_tokens": [], "by_concurrency": {str(c): {f: [] for f in FIGURES} for c in opts.concurrency}}


def _add(rec: dict[str, Any], c: int, batch: BatchResult) -> None:
    rec["prompt_tokens"] = sorted(set(rec["prompt_tokens"]) | set(batch.prompt_tokens))
    for name, value in batch.figures().items():
        rec["by_concurrency"][str(c)][name].append(float("nan") if value is None else value)


def _summaries(rec: dict[str, Any]) -> None:
    for figures in rec["by_concurrency"].values():
        for name, higher in FIGURES.items():
            figures[name] = summarize(figures[name], higher_is_better=higher)


def _ratios(records: list[dict[str, Any]], stat: str) -> None:
    """``ratios[c]``: speedups vs dense at the same concurrency (TTFT: dense / setting; rates: setting / dense)."""
    dense = records[0]["by_concurrency"]
    for rec in records:
        rec["ratios"] = {}
        for c, figures in rec["by_concurrency"].items():
            d = dense[c]
            rec["ratios"][c] = {
                "ttft_p50": ratio(d["ttft_p50_ms"][stat], figures["ttft_p50_ms"][stat]),
                "ttft_p90": ratio(d["ttft_p90_ms"][stat], figures["ttft_p90_ms"][stat]),
                "requests_per_s": ratio(figures["requests_per_s"][stat], d["requests_per_s"][stat]),
                "output_tok_s": ratio(figures["output_tok_s"][stat], d["output_tok_s"][stat]),
            }


def _warnings(records: list[dict[str, Any]]) -> list[str]:
    out = []
    for rec in records:
        for c, figures in rec["by_concurrency"].items():
            for name in _TIMED:
                value = spread(figures[name])
                if value is not None and value > DISAGREE_RATIO:
                    out.append(f"{rec['label']} at concurrency {c}: {name} repeats disagree (max/min {value:.2f})")
    return out


def run_vllm_bench(opts: VllmBenchOptions, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure every setting of ``opts`` in one run; the result dict `vllm_report` prints and writes."""
    shape = opts.model_shape
    model = str(ensure_bench_model(shape))
    settings = vllm_bench_settings(opts)
    n = tokens_per_frame()
    max_len = opts.frames * n + PROMPT_MARGIN + opts.new_tokens
    records = [_record(opts, s) for s in settings]
    engines = []
    for setting, rec in zip(settings, records):
        step = step_budget(opts.step_tokens, video_tokens=setting.config.visual_budget(opts.frames, n),
                           max_len=max_len, max_batch=max(opts.concurrency))
        log(f"engine {label(setting)} ({shape.name}: {shape.describe()}; step budget {step or 'vLLM default'})")
        engines.append(start_engine(model, setting, shape, frames=opts.frames, max_len=max_len,
                                    max_batch=max(opts.concurrency), dtype=opts.dtype, seed=opts.seed,
                                    step_tokens=step))
        # the budget the engine took (vLLM's own scheduler config), not the one asked for
        rec["max_num_batched_tokens"] = engines[-1].llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
    warm = video_batch(opts.warmup, opts.frames, scenes=opts.scenes, seed=opts.seed + 10_000_000)
    for llm in engines:
        for video in warm:
            run_batch(llm, [video], opts.new_tokens)
    for r in range(opts.repeats):
        for c in opts.concurrency:
            videos = video_batch(c, opts.frames, scenes=opts.scenes, seed=opts.seed + 1000 * (r * 100 + c))
            for rec, llm in zip(records, engines):
                batch = run_batch(llm, videos, opts.new_tokens)
                _add(rec, c, batch)
                log(f"repeat {r + 1}/{opts.repeats} concurrency {c} {rec['label']}: {c / batch.wall_s:.2f} req/s")
    probe_video = warm[0] if warm else video_batch(1, opts.frames, scenes=opts.scenes, seed=opts.seed)[0]
    for rec, llm in zip(records, engines):
        times = pruning_times(llm, probe_video, max(opts.repeats, PRUNING_REPEATS))
        rec["pruning_ms"] = {k: summarize(v) for k, v in times.items()}
        rec["pruning_ms"]["probe_merge_share_of_vision"] = summarize(
            [(p + m) / v for p, m, v in zip(times["probe"], times["merge"], times["vision"])])
    for rec in records:
        _summaries(rec)
    _ratios(records, opts.stat)
    result = {"schema": VLLM_SCHEMA, "meta": _meta(opts), "settings": records}
    result["warnings"] = _warnings(records)
    result["targets"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 18's targets at retain 10 % for HoliTom w/o M: TTFT >= 3.5x dense (every concurrency), requests/s
    >= 3.5x dense (concurrency >= 4), probe + merge <= 10 % of the vision path; and within 5 % of EVS (ours)."""
    stat = result["meta"]["stat"]
    recs = {r["name"]: r for r in result["settings"]}
    out: list[dict[str, Any]] = []
    for name, rec in recs.items():
        if rec["method"] != "holitom_wo_m" or rec["retain_ratio"] is None or rec["retain_ratio"] > 0.10 + 1e-9:
            continue
        for c, rat in rec["ratios"].items():
            out.append({"what": f"{rec['label']} TTFT p50 vs dense at concurrency {c}", "value": rat["ttft_p50"],
                        "target": ">= 3.5x", "met": _at_least(rat["ttft_p50"], 3.5)})
            if int(c) >= 4:
                out.append({"what": f"{rec['label']} requests/s vs dense at concurrency {c}",
                            "value": rat["requests_per_s"], "target": ">= 3.5x",
                            "met": _at_least(rat["requests_per_s"], 3.5)})
            evs = recs.get(name.replace("holitom_wo_m", "evs"))
            if evs is not None:
                ttft = "ttft_p50_ms"
                rel = ratio(rec["by_concurrency"][c][ttft][stat], evs["by_concurrency"][c][ttft][stat])
                out.append({"what": f"{rec['label']} TTFT p50 / {evs['label']}'s at concurrency {c}", "value": rel,
                            "target": "<= 1.05", "met": rel is not None and rel <= 1.05})
        share = rec["pruning_ms"]["probe_merge_share_of_vision"][stat]
        out.append({"what": f"{rec['label']} probe + merge / vision path", "value": share, "target": "<= 0.10",
                    "met": share is not None and share <= 0.10})
    return out


def _at_least(value: float | None, target: float) -> bool:
    return value is not None and value >= target
