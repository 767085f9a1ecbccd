"""The table and the figure of a ``holitom bench --backend vllm`` result (`vllm_engine.run_vllm_bench`).

Table: one block per concurrency (requests/s, TTFT p50/p90, output tokens/s, peak RSS; ``(×N)`` = ratio to dense
at that concurrency, a speedup for TTFT), then the pruning's own time, the warnings (repeats that disagree are
marked ``!``) and the issue's targets, met or not. Figure: one panel per figure (TTFT p50, requests/s, output
tokens/s), a bar per setting and concurrency with the repeats' min–max.
"""

from __future__ import annotations

from typing import Any

from lmms_holitom.bench.summary import DISAGREE_RATIO, spread

__all__ = ["format_vllm_table", "vllm_figure"]


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cell(summary: dict[str, Any], rat: float | None, stat: str, spec: str) -> str:
    mark = "!" if (spread(summary) or 0) > DISAGREE_RATIO else ""
    text = _num(summary[stat], spec) + mark
    return text if rat is None else f"{text} (x{rat:.2f})"


def _block(result: dict[str, Any], c: str, stat: str) -> list[str]:
    lines = [f"concurrency {c}:",
             f"  {'setting':22} {'prompt':>6} {'req/s':>16} {'TTFT p50 ms':>18} {'TTFT p90 ms':>18} "
             f"{'out tok/s':>17} {'peak RSS MB':>12}"]
    for rec in result["settings"]:
        f, r = rec["by_concurrency"][c], rec["ratios"][c]
        prompt = "/".join(str(p) for p in rec["prompt_tokens"])
        rate = _cell(f["requests_per_s"], r["requests_per_s"], stat, ".2f")
        lines.append(f"  {rec['label']:22} {prompt:>6} {rate:>16}"
                     f" {_cell(f['ttft_p50_ms'], r['ttft_p50'], stat, '.0f'):>18}"
                     f" {_cell(f['ttft_p90_ms'], r['ttft_p90'], stat, '.0f'):>18}"
                     f" {_cell(f['output_tok_s'], r['output_tok_s'], stat, '.1f'):>17}"
                     f" {_num(f['peak_rss_mb'][stat], '.0f'):>12}")
    return lines


def _pruning(result: dict[str, Any], stat: str) -> list[str]:
    lines = ["pruning's own time (ms; on each engine's model, one video of the same shape, outside the engine loop):",
             f"  {'setting':22} {'vision':>8} {'probe':>8} {'merge':>8} {'(probe+merge)/vision':>21}"]
    for rec in result["settings"]:
        p = rec["pruning_ms"]
        share = p["probe_merge_share_of_vision"][stat]
        percent = _num(None if share is None else 100 * share, ".1f") + " %"
        lines.append(f"  {rec['label']:22} {_num(p['vision'][stat], '.1f'):>8} {_num(p['probe'][stat], '.1f'):>8} "
                     f"{_num(p['merge'][stat], '.1f'):>8} {percent:>21}")
    return lines


def format_vllm_table(result: dict[str, Any]) -> str:
    """The text table of a result."""
    m = result["meta"]
    stat = m["stat"]
    lines = [f"holitom bench --backend vllm: shape {m['shape']} ({m['shape_text']}); {m['frames']} frames x "
             f"{m['tokens_per_frame']} tokens at {m['frame_size']} px; {m['dtype']}; {m['new_tokens']} new tokens; "
             f"{m['repeats']} repeats ({stat}; x = ratio to dense, TTFT: speedup); step budget "
             f"{m.get('step_tokens', 'default')}; vLLM {m['versions']['vllm']}; "
             f"{m['date']}; {m['machine']}, {m['cpus']} CPUs",
             "(ours) = lmms_holitom.methods through the plugin (vLLM has no EVS / VidCom2 for LLaVA-OneVision)"]
    for c in result["meta"]["concurrency"]:
        lines += _block(result, str(c), stat)
    lines += _pruning(result, stat)
    if result["warnings"]:
        lines.append(f"warning: repeats disagree (max/min > {DISAGREE_RATIO}, marked !): rerun with more --repeats "
                     "on a quiet machine")
        lines += [f"  {w}" for w in result["warnings"]]
    if result["targets"]:
        lines.append("targets (issue 18):")
        lines += [f"  {'met    ' if t['met'] else 'NOT met'} {t['what']}: {_num(t['value'], '.2f')} "
                  f"(target {t['target']})" for t in result["targets"]]
    return "\n".join(lines)


_PANELS = (("ttft_p50_ms", "TTFT p50 (ms)"), ("requests_per_s", "requests/s"), ("output_tok_s", "output tokens/s"))


def vllm_figure(result: dict[str, Any]) -> Any:
    """A Figure: one panel per figure, bars grouped by concurrency, one colour per setting, min–max whiskers."""
    from lmms_holitom.figures import METHOD_COLORS, new_figure

    stat = result["meta"]["stat"]
    concurrency = [str(c) for c in result["meta"]["concurrency"]]
    recs = result["settings"]
    fig = new_figure(figsize=(5 * len(_PANELS), 4.2), layout="constrained")
    width = 0.8 / len(recs)
    for k, (key, title) in enumerate(_PANELS):
        ax = fig.add_subplot(1, len(_PANELS), k + 1)
        for i, rec in enumerate(recs):
            xs = [j + (i - (len(recs) - 1) / 2) * width for j in range(len(concurrency))]
            sums = [rec["by_concurrency"][c][key] for c in concurrency]
            ys = [s[stat] or 0.0 for s in sums]
            err = [[y - (s["min"] or y) for y, s in zip(ys, sums)], [(s["max"] or y) - y for y, s in zip(ys, sums)]]
            shade = 0.55 if rec["retain_ratio"] is not None and rec["retain_ratio"] > 0.10 + 1e-9 else 1.0
            ax.bar(xs, ys, width, yerr=err, label=rec["label"], color=METHOD_COLORS.get(rec["method"], "#777777"),
                   alpha=shade, capsize=2)
        ax.set_xticks(range(len(concurrency)), [f"c={c}" for c in concurrency])
        ax.set_title(title)
    fig.axes[0].legend(fontsize=7)
    m = result["meta"]
    fig.suptitle(f"vLLM {m['versions']['vllm']}, shape {m['shape']}, {m['frames']} frames, {m['dtype']}, step budget "
                 f"{m.get('step_tokens', 'default')} "
                 f"({stat} of {m['repeats']}; lighter bars: retain > 10 %)", fontsize=9)
    return fig
