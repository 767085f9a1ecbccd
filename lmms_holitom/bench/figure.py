"""The figure of a bench result: one panel per stage, each setting's repeats as a bar with their spread.

Panels: vision tower, merge (outer + inner), LLM prefill, TTFT (ms) and decoding speed (tok/s). A bar is the
statistic the table shows (``meta.stat``: median, or best), its whisker the min–max of the repeats. Each panel
has its own scale: logarithmic when its largest value is over `LOG_SPAN` times its smallest positive one, so one
fast setting never flattens the others (a log panel shows dots: a bar from its arbitrary left edge would lie).
Beside each mark: ``×N``, the factor against dense (speedup for times, ratio for tok/s; for merge, ``N %``: its
share of dense's LLM prefill). Settings whose repeats disagree (`lmms_holitom.bench.summary.DISAGREE_RATIO`) are
hatched (ringed in red on a log panel), marked ``!`` and named in a warning under the panels.
"""

from __future__ import annotations

import textwrap
from typing import Any

from lmms_holitom.bench.report import frames_text
from lmms_holitom.bench.summary import DISAGREE_RATIO, SPREAD_FIGURES, disagreements, ratio
from lmms_holitom.figures import METHOD_COLORS, log_scale, new_figure

__all__ = ["LOG_SPAN", "PANELS", "bench_figure"]

#: A panel is logarithmic when its largest value is more than this many times its smallest positive one.
LOG_SPAN = 10.0
#: (figure label in `SPREAD_FIGURES`, panel title, higher is better)
PANELS = (
    ("vision", "vision tower (ms)", False),
    ("merge", "merge: outer + inner (ms)\n(N %: of dense's LLM prefill)", False),
    ("LLM prefill", "LLM prefill (ms)", False),
    ("TTFT", "time to first token (ms)", False),
    ("decode tok/s", "decoding (tok/s, higher is faster)", True),
)


def _summary(record: dict[str, Any], label: str) -> dict[str, Any]:
    node: Any = record
    for key in SPREAD_FIGURES[label]:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _note(rows: list[dict[str, Any]], label: str, higher: bool, i: int, value: float | None, stat: str) -> str:
    """The text beside bar ``i``: ``×N`` against dense (``rows[0]``), or merge as % of dense's LLM prefill."""
    if value is None:
        return "n/a"
    if label == "merge":
        pct = rows[i].get("merge_overhead_pct_of_dense_prefill")
        return "none" if value == 0 else ("" if pct is None else f"{pct:.1f} %")
    dense = _summary(rows[0], label).get(stat)
    factor = ratio(value, dense) if higher else ratio(dense, value)
    return "" if factor is None or i == 0 else f"×{factor:.2f}"


def _marks(ax: Any, rows: list[dict[str, Any]], drawn: list[int], values: list[Any], log: bool,
           hot: list[bool]) -> None:
    """Linear axis: bars from 0; log axis: points (a bar from an arbitrary left edge would mislead). ``hot``:
    the settings whose repeats disagree (hatched bar / red-edged point)."""
    colors = [METHOD_COLORS.get(rows[i]["method"], "#777777") for i in drawn]
    if log:
        ax.scatter([values[i] for i in drawn], drawn, s=40, color=colors, zorder=3)
        ringed = [i for i in drawn if hot[i]]  # a ring with a gap: visible around a red dot too
        ax.scatter([values[i] for i in ringed], ringed, s=170, facecolors="none", edgecolors="red", linewidths=1.5,
                   zorder=3)
        return
    bars = ax.barh(drawn, [values[i] for i in drawn], color=colors, alpha=0.85, edgecolor="none")
    for bar, i in zip(bars, drawn):
        if hot[i]:
            bar.set_hatch("///")
            bar.set_edgecolor("red")


def _panel(ax: Any, rows: list[dict[str, Any]], panel: tuple[str, str, bool], stat: str,
           flagged: list[dict[str, float]]) -> None:
    """One stage: ``stat`` of the repeats, min–max whiskers, scale fitted to the values, ``×N`` notes."""
    label, title, higher = panel
    sums = [_summary(r, label) for r in rows]
    values = [s.get(stat) for s in sums]
    lows = [s.get("min") if s.get("min") is not None else v for s, v in zip(sums, values)]
    highs = [s.get("max") if s.get("max") is not None else v for s, v in zip(sums, values)]
    positive = [x for x in (*values, *lows, *highs) if x is not None and x > 0]
    log = bool(positive) and max(positive) / min(positive) > LOG_SPAN
    drawn = [i for i, v in enumerate(values) if v is not None and (v > 0 or not log)]
    _marks(ax, rows, drawn, values, log, [label in f for f in flagged])
    ax.errorbar([values[i] for i in drawn], drawn, fmt="none", ecolor="black", elinewidth=1, capsize=3,
                xerr=[[values[i] - lows[i] for i in drawn], [highs[i] - values[i] for i in drawn]])
    if log:
        log_scale(ax.xaxis)
    for i, v in enumerate(values):
        edge = highs[i] if highs[i] is not None and highs[i] > 0 else (min(positive) if log and positive else 0)
        text = "none" if v == 0 and log else _note(rows, label, higher, i, v, stat)
        ax.annotate(text, (edge or 0, i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_title(title + (" — log scale" if log else ""), fontsize=9)
    ax.margins(x=0.25)
    ax.grid(axis="x", alpha=0.3, which="both")


def _warning(result: dict[str, Any], flagged: list[dict[str, float]]) -> str:
    """The text under the panels: the disagreeing repeats, or that one repeat shows no spread."""
    repeats = result["meta"]["repeats"]
    if repeats < 2:
        return f"{repeats} repeat per setting: no spread shown, disagreeing repeats cannot be seen"
    named = [f"{r['name']} ({', '.join(f'{k} {v:.2f}x' for k, v in f.items())})"
             for r, f in zip(result["settings"], flagged) if f]
    if not named:
        return ""
    return (f"! repeats disagree (max/min > {DISAGREE_RATIO:g} over {repeats} repeats; a shared or busy machine?), "
            f"hatched or ringed in red: {'; '.join(named)}. Rerun with more --repeats on a quiet machine.")


def bench_figure(result: dict[str, Any]) -> Any:
    """The bench figure (a ``matplotlib.figure.Figure``) of a `run_bench` result (or one loaded from its JSON)."""
    meta, rows = result["meta"], result["settings"]
    stat = meta.get("stat", "median")
    flagged = [disagreements(r) for r in rows]
    fig = new_figure("or leave out --plot", figsize=(3.4 * len(PANELS), 0.34 * len(rows) + 2.6),
                     layout="constrained")
    axes = fig.subplots(1, len(PANELS), sharey=True)
    for ax, panel in zip(axes, PANELS):
        _panel(ax, rows, panel, stat, flagged)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels([r["name"] + (" !" if f else "") for r, f in zip(rows, flagged)])
    for tick, f in zip(axes[0].get_yticklabels(), flagged):
        tick.set_color("red" if f else "black")
    axes[0].invert_yaxis()
    what = "median" if stat == "median" else "best (min time / max tok/s)"
    repeats = f"{meta['repeats']} repeat" + ("" if meta["repeats"] == 1 else "s")
    fig.suptitle(f"{meta['model']}, {frames_text(meta)}, {meta['device']} ({meta['dtype']}) — bar or dot: "
                 f"{what} of {repeats}, whisker: min–max; ×N: vs dense (>1 is faster)", fontsize=10)
    warning = _warning(result, flagged)
    if warning:
        width = int(3.4 * len(PANELS) * 15)
        fig.supxlabel(textwrap.fill(warning, width), fontsize=8, color="red", ha="left", x=0.01)
    return fig
