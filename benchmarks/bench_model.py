"""Speed study: `holitom bench` over several video lengths on one model, with a summary of how speedups scale.

The model is built (or loaded) once and measured at every frame count; each frame count writes the bench's full
JSON (``bench_f<F>.json``) and table (``bench_f<F>.txt``); ``summary.md`` lists, per setting and frame count, the
visual tokens, TTFT, the TTFT / LLM-prefill / decoding speedups against dense and the merge overhead, and
``summary.png`` plots the TTFT speedup against the frame count.

    python benchmarks/bench_model.py --shape tiny --device cpu --frames 8,16,32 --out out/speed_tiny
    python benchmarks/bench_model.py --shape 7b --frames 16,32,64 --out out/speed_7b       # on a GPU
    python benchmarks/bench_model.py --shape qwen2.5-vl-7b --frames 16,32,64 --out out/speed_qwen25  # GPU

For Qwen VL the frame counts are input frames (even; F/2 temporal groups, the HoliTom frames).

Any other flag is passed to ``holitom bench`` (e.g. ``--methods dense,holitom --retain-ratios 0.1``).
For one frame count, ``holitom bench`` itself is the simpler tool.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.Namespace]:
    from lmms_holitom.commands import bench as bench_cmd

    study = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    study.add_argument("--frames", default="8,16,32", help="comma list of frame counts (default 8,16,32)")
    study.add_argument("--out", default="out/speed_study", help="output folder (default out/speed_study)")
    study.add_argument("-h", "--help", action="store_true")
    own, rest = study.parse_known_args(argv)
    bench = argparse.ArgumentParser(prog="bench_model.py", description=__doc__)
    bench_cmd.add_arguments(bench)
    if own.help:
        study.print_help()
        bench.print_help()
        sys.exit(0)
    return own, bench.parse_args(rest)


def _median(node: dict[str, Any] | None) -> float | None:
    return None if node is None else node.get("median")


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary_markdown(results: dict[int, dict[str, Any]]) -> str:
    """One row per (setting, frames): tokens, TTFT, speedups, merge overhead."""
    first = next(iter(results.values()))["meta"]
    lines = [
        f"# Speed study: {first['model']} on {first['device']} ({first['dtype']})",
        "",
        f"{first['new_tokens']} new tokens, warm-up {first['warmup']}, {first['repeats']} repeats (medians); "
        "speedups against dense at the same frame count.",
        "",
        "| setting | frames | visual tokens (outer/inner) | TTFT ms | TTFT speedup | LLM prefill speedup | "
        "decode speedup | merge % of dense prefill |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = [r["name"] for r in next(iter(results.values()))["settings"]]
    for name in names:
        for frames, result in results.items():
            r = next((x for x in result["settings"] if x["name"] == name), None)
            if r is None:
                continue
            groups = result["meta"].get("holitom_frames", frames)
            shown = f"{frames}" if groups == frames else f"{frames} ({groups} groups)"
            lines.append(
                f"| {name} | {shown} | {r['visual_tokens']['outer']}/{r['visual_tokens']['inner']} | "
                f"{_cell(_median(r['timings_ms']['ttft']), '.1f')} | {_cell(r['speedups']['ttft'], '.2f')} | "
                f"{_cell(r['speedups']['llm_prefill'], '.2f')} | {_cell(r['speedups']['decode'], '.2f')} | "
                f"{_cell(r['merge_overhead_pct_of_dense_prefill'], '.2f')} |"
            )
    return "\n".join(lines) + "\n"


def _ttft_speedups(results: dict[int, dict[str, Any]], name: str) -> list[tuple[float, float, float] | None]:
    """Per frame count: (speedup, low, high) of ``name``'s TTFT vs dense — the table's statistic, and dense's over
    the setting's slowest and fastest repeat — or None where the setting or a figure is missing."""
    out: list[tuple[float, float, float] | None] = []
    for f in sorted(results):
        stat = results[f]["meta"].get("stat", "median")
        dense = results[f]["settings"][0]["timings_ms"]["ttft"].get(stat)
        r = next((x for x in results[f]["settings"] if x["name"] == name), None)
        ttft = None if r is None else r["timings_ms"]["ttft"]
        if r is None or r["speedups"]["ttft"] is None or not dense or not ttft.get("min") or not ttft.get("max"):
            out.append(None)
            continue
        out.append((r["speedups"]["ttft"], dense / ttft["max"], dense / ttft["min"]))
    return out


def summary_figure(results: dict[int, dict[str, Any]]) -> Any:
    """TTFT speedup vs dense over the frame count, one line per setting, whiskers over the setting's repeats;
    a log axis when the speedups span more than `LOG_SPAN`; a red ring and a warning under the axes where the
    TTFT repeats of a setting or of dense disagree (`DISAGREE_RATIO`). Returns a ``matplotlib.figure.Figure``."""
    from lmms_holitom.bench.figure import LOG_SPAN
    from lmms_holitom.bench.summary import DISAGREE_RATIO, disagreements
    from lmms_holitom.figures import METHOD_COLORS, log_scale, new_figure

    frames = sorted(results)
    meta = results[frames[0]]["meta"]
    fig = new_figure(figsize=(7, 4.6), layout="constrained")
    ax = fig.subplots()
    shown: list[float] = []
    for setting in results[frames[0]]["settings"][1:]:
        points = _ttft_speedups(results, setting["name"])
        xs = [f for f, p in zip(frames, points) if p is not None]
        ps = [p for p in points if p is not None]
        if not ps:
            continue
        shown += [v for p in ps for v in p]
        ax.errorbar(xs, [p[0] for p in ps], yerr=[[p[0] - p[1] for p in ps], [p[2] - p[0] for p in ps]],
                    marker="o", capsize=3, label=setting["name"], color=METHOD_COLORS.get(setting["method"]))
    bad = [f"{r['name']} @ {f}" for f in frames for r in results[f]["settings"] if "TTFT" in disagreements(r)]
    for f in frames:
        for r in results[f]["settings"][1:]:
            if "TTFT" in disagreements(r) and r["speedups"]["ttft"] is not None:
                ax.scatter([f], [r["speedups"]["ttft"]], s=120, facecolors="none", edgecolors="red", zorder=4)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="dense (= 1)")
    positive = [v for v in shown if v > 0]
    if positive and max(positive) / min(positive) > LOG_SPAN:
        log_scale(ax.yaxis)
    ax.set_xticks(frames)
    ax.set_xticklabels([str(f) for f in frames])
    groups = meta.get("holitom_frames", meta["frames"]) != meta["frames"]
    ax.set_xlabel("input frames (Qwen VL: 2 per temporal group)" if groups else "frames")
    ax.set_ylabel(f"TTFT speedup vs dense ({meta.get('stat', 'median')} of {meta['repeats']} repeats)")
    ax.set_title(f"{meta['model']}, {meta['device']} ({meta['dtype']}); whisker: the setting's TTFT min–max",
                 fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if bad:
        fig.supxlabel(f"ringed: TTFT repeats disagree (max/min > {DISAGREE_RATIO:g}; a busy machine?): "
                      + ", ".join(bad), fontsize=8, color="red", wrap=True)
    return fig


def summary_plot(results: dict[int, dict[str, Any]], path: Path) -> None:
    """Write `summary_figure` as a PNG."""
    from lmms_holitom.figures import save_png

    save_png(summary_figure(results), path)


def main(argv: list[str] | None = None) -> int:
    from lmms_holitom.bench import (
        format_table,
        load_model,
        resolve_device,
        resolve_dtype,
        run_bench,
        write_json,
        write_plot,
    )
    from lmms_holitom.commands.bench import options_from_args

    own, args = _parse(argv)
    frame_counts = [int(x) for x in own.frames.split(",") if x.strip()]
    out = Path(own.out)
    out.mkdir(parents=True, exist_ok=True)
    base = options_from_args(args)
    device = resolve_device(base.device)
    dtype = resolve_dtype(base.dtype, device)

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[study] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    model, label, _ = load_model(base, device, dtype)
    log(f"built {label} in {time.perf_counter() - t0:.1f} s")
    results: dict[int, dict[str, Any]] = {}
    for frames in frame_counts:
        opts = base.__class__(**{**base.__dict__, "frames": frames, "device": str(device)})
        log(f"{frames} frames")
        result = run_bench(opts, log=log, model=model)
        results[frames] = result
        table = format_table(result)
        print(table, flush=True)
        (out / f"bench_f{frames}.txt").write_text(table + "\n")
        write_json(result, out / f"bench_f{frames}.json")
        if frames == frame_counts[-1]:
            write_plot(result, out / f"bench_f{frames}.png")
    (out / "summary.md").write_text(summary_markdown(results))
    summary_plot(results, out / "summary.png")
    print(summary_markdown(results))
    log(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
