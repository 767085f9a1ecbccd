"""Figures of a sweep report (PNG; matplotlib is an optional dependency, see `lmms_holitom.figures`).

One figure per question, named by it:

* ``accuracy_vs_retain_ratio.png`` — Avg per method over the retain ratio, dense (and FastV) as reference
  lines, the published numbers as hollow markers where they match;
* ``accuracy_vs_tflops.png`` — Avg over the LLM prefill TFLOPs of the paper's cost model (log scale when they
  span more than 10×), filled markers for measured visual-token counts, hollow ones for the setting's budget,
  with the Pareto front when it has two or more points;
* ``ablation_tau.png``, ``ablation_merge_layer.png``, ``ablation_merge_ratio.png``,
  ``accuracy_vs_frames.png`` — when the sweep varies that parameter with everything else fixed.

`sweep_figures` builds them (``matplotlib.figure.Figure`` objects: file name -> figure), `plot_report` writes
them. When every score on a figure is the same (random weights score 0 everywhere), the score axis spans the
metric's range instead of a meaningless ±0.05 and the figure says "all scores equal".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lmms_holitom.figures import METHOD_COLORS as _COLORS
from lmms_holitom.figures import METHOD_MARKERS as _MARKERS
from lmms_holitom.figures import PlotsUnavailable, log_scale, new_figure, save_png
from lmms_holitom.methods import METHODS
from lmms_holitom.sweep.report_rows import METHOD_LABELS, Report, Row

__all__ = ["ALL_EQUAL", "PlotsUnavailable", "plot_report", "sweep_figures", "tflops_label"]

ABLATIONS: dict[str, tuple[str, str, str]] = {
    # attribute -> (file stem, x label, title)
    "tau": ("ablation_tau", "T (cosine threshold for static tokens)", "Effect of the temporal threshold T"),
    "merge_layer": ("ablation_merge_layer", "K (decoder layer of the inner merge)", "Effect of the merge layer K"),
    "merge_ratio": ("ablation_merge_ratio", "r (fraction merged at layer K)", "Effect of the merge ratio r"),
    "frames": ("accuracy_vs_frames", "frames sampled per video", "Effect of the number of frames"),
}
#: The note on a figure whose scores are all the same (``{n}`` points, value ``{v}``).
ALL_EQUAL = "all {n} scores equal ({v:g}): no accuracy difference to show"
_REMEDY = "use --no-plots to write only the tables"


def _new(figsize: tuple[float, float] = (7, 4.5)) -> tuple[Any, Any]:
    fig = new_figure(_REMEDY, figsize=figsize, layout="constrained")
    return fig, fig.subplots()


def _metric(report: Report) -> tuple[Callable[[Row], float | None], str, bool]:
    """The plotted score, its axis label, and whether it is a percentage (the paper's benchmark columns)."""
    if report.benchmark_columns:
        cols = "/".join(report.benchmark_columns)
        return (lambda r: r.avg), f"Avg accuracy over {cols} (%)", True
    metric = next((m for r in report.rows for c, m in r.extra_metrics.items() if c in report.extra_columns), None)
    if len(report.extra_columns) == 1:
        name = report.extra_columns[0] + (f": {metric}" if metric else " score")
        return (lambda r: r.avg), f"{name} (as lmms-eval reports it)", False
    return (lambda r: r.avg), f"Avg of {'/'.join(report.extra_columns)} (as lmms-eval reports them)", False


def _label(row: Row) -> str:
    return METHOD_LABELS.get(row.method or "", row.method or "?")


def _done(report: Report, y: Callable[[Row], float | None]) -> list[Row]:
    return [r for r in report.rows if r.status == "done" and r.method and y(r) is not None]


def _fit_scores(ax: Any, values: Iterable[float | None], percent: bool) -> None:
    """When every plotted score is the same ``v``, show the metric's range (0–100 for a percentage, 0–1 for a
    fraction, else v ± v/2) and write `ALL_EQUAL` on the axes; otherwise leave matplotlib's limits."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2 or max(finite) - min(finite) > 1e-9 * max(1.0, abs(max(finite))):
        return
    v = finite[0]
    top = 100.0 if percent or v > 1.0 else 1.0
    lo, hi = (0.0, top) if 0.0 <= v <= top else (v - abs(v) / 2, v + abs(v) / 2)
    pad = 0.04 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    upper = (v - lo) / (hi - lo) > 0.5  # write the note away from the points
    ax.text(0.5, 0.25 if upper else 0.75, ALL_EQUAL.format(n=len(finite), v=v), transform=ax.transAxes,
            ha="center", va="center", fontsize=9, color="#a00000",
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#a00000", "alpha": 0.9})


def _finish(ax: Any, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _retain_groups(rows: list[Row]) -> dict[tuple, list[Row]]:
    """Curves over the retain ratio: one per method and fixed settings (T at the paper's value for the budget —
    0.65 at 10 %, else 0.80 — forms one curve; other T their own); only curves with two or more ratios."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r.retain_ratio is not None:
            paper_t = r.tau is None or abs(r.tau - (0.65 if abs(r.retain_ratio - 0.10) < 1e-9 else 0.80)) < 1e-9
            groups[(r.method, r.pretrained, r.frames, r.merge_layer, r.merge_ratio,
                    "paper" if paper_t else r.tau)].append(r)
    return {k: v for k, v in groups.items() if len({r.retain_ratio for r in v}) >= 2}


def figure_retain(report: Report) -> Any | None:
    y, ylabel, percent = _metric(report)
    rows = _done(report, y)
    groups = _retain_groups(rows)
    if not groups:
        return None
    fig, ax = _new()
    plotted: list[float | None] = []
    for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        method, tau = key[0], key[-1]
        by_x: dict[float, list[float]] = defaultdict(list)
        for r in members:
            by_x[r.retain_ratio * 100].append(y(r))  # type: ignore[operator, arg-type]
        xs = sorted(by_x)
        ys = [sum(by_x[x]) / len(by_x[x]) for x in xs]
        plotted += ys
        ax.plot(xs, ys, marker=_MARKERS.get(method, "o"), color=_COLORS.get(method),
                linestyle="-" if tau == "paper" else "-.", label=_label(members[0]) + (
                    "" if tau == "paper" else f", T={tau:g}"))
        paper = sorted((r.retain_ratio * 100, r.paper.avg) for r in members if r.paper)  # type: ignore[operator]
        if paper and report.benchmark_columns:
            plotted += [p[1] for p in paper]
            ax.plot([p[0] for p in paper], [p[1] for p in paper], linestyle="--", marker=_MARKERS.get(method, "o"),
                    markerfacecolor="none", color=_COLORS.get(method), alpha=0.7,
                    label=f"{_label(members[0])} (paper)")
    for r in rows:  # methods without a retain ratio are reference lines: no reduction, or one inside the LLM
        spec = METHODS.get(r.method or "")
        if spec is not None and r.retain_ratio is None and spec.outer is None:
            extra = "" if spec.inner is None else f" (K={r.merge_layer}, r={r.merge_ratio:g})"
            plotted.append(y(r))
            ax.axhline(y(r), linestyle="--" if spec.inner is None else ":", color=_COLORS[spec.name],  # type: ignore[arg-type]
                       label=f"{_label(r)}{extra}")
    _fit_scores(ax, plotted, percent)
    _finish(ax, "retain ratio (% of visual tokens entering the LLM)", ylabel, "Accuracy vs retain ratio")
    return fig


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and score (higher), by cost."""
    front, best = [], float("-inf")
    for x, v in sorted(points, key=lambda p: (p[0], -p[1])):
        if v > best:
            front.append((x, v))
            best = v
    return front


def tflops_label(sources: Iterable[str | None]) -> str:
    """The x label of ``accuracy_vs_tflops``: what the TFLOPs are, for the rows' ``tflops_source`` values.

    ``measured``: the plugin's paper-convention cost model on each sample's measured visual-token counts;
    ``theoretical``: the same cost model on the setting's token budget (no summary to read).
    """
    base = "LLM prefill TFLOPs per sample (paper's cost model on the visual tokens"
    kinds = set(sources)
    if kinds == {"measured"}:
        return base + ",\nmeasured token counts)"
    if kinds == {"theoretical"}:
        return base + ",\nthe setting's token budget: nothing measured)"
    return base + ")\nfilled: measured token counts, hollow: the setting's token budget"


def figure_tflops(report: Report) -> Any | None:
    y, ylabel, percent = _metric(report)
    rows = [r for r in _done(report, y) if r.tflops is not None and r.tflops > 0]
    if len(rows) < 2:
        return None
    fig, ax = _new()
    seen: set[str] = set()
    mixed = len({r.tflops_source for r in rows}) > 1  # then hollow = the setting's budget, not measured
    for r in rows:
        label, color, marker = _label(r), _COLORS.get(r.method or ""), _MARKERS.get(r.method or "", "o")
        ax.scatter(r.tflops, y(r), marker=marker, s=60, zorder=3, color=color,
                   facecolors="none" if mixed and r.tflops_source != "measured" else color)
        if label not in seen:  # the legend shows the method's filled marker, whichever kind of point came first
            ax.plot([], [], marker=marker, color=color, linestyle="none", markersize=8, label=label)
            seen.add(label)
        if r.retain_ratio is not None:
            ax.annotate(f"{r.retain_ratio * 100:g}%", (r.tflops, y(r)), textcoords="offset points",  # type: ignore[arg-type]
                        xytext=(4, 4), fontsize=7)
    front = _pareto([(r.tflops, y(r)) for r in rows])  # type: ignore[misc]
    if len(front) >= 2:  # a one-point front is no line: no legend entry for it either
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="gray", alpha=0.6,
                label="Pareto front")
    xs = [r.tflops for r in rows]
    if max(xs) / min(xs) > 10:  # type: ignore[type-var, operator]
        log_scale(ax.xaxis)
    _fit_scores(ax, [y(r) for r in rows], percent)
    _finish(ax, tflops_label(r.tflops_source for r in rows), ylabel, "Accuracy vs compute")
    return fig


def _curve_label(members: list[Row], fixed: dict[str, Any], attr: str) -> str:
    parts = [_label(members[0])]
    if fixed.get("retain_ratio") is not None:
        parts.append(f"{fixed['retain_ratio'] * 100:g} %")
    for k, short in (("tau", "T"), ("merge_layer", "K"), ("merge_ratio", "r"), ("frames", "frames")):
        if fixed.get(k) is not None and k != attr:
            parts.append(f"{short}={fixed[k]:g}")
    return ", ".join(parts)


def figure_ablation(report: Report, attr: str) -> Any | None:
    y, ylabel, percent = _metric(report)
    keys = ("method", "pretrained", "retain_ratio", "tau", "merge_layer", "merge_ratio", "frames")
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in _done(report, y):
        if getattr(r, attr) is not None:
            groups[tuple((k, getattr(r, k)) for k in keys if k != attr)].append(r)
    groups = {k: v for k, v in groups.items() if len({getattr(r, attr) for r in v}) >= 2}
    if not groups:
        return None
    _stem, xlabel, title = ABLATIONS[attr]
    fig, ax = _new()
    plotted: list[float | None] = []
    for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        members.sort(key=lambda r: getattr(r, attr))
        color = _COLORS.get(members[0].method or "") if len(groups) == 1 else None  # else: one colour per curve
        plotted += [y(r) for r in members]
        ax.plot([getattr(r, attr) for r in members], [y(r) for r in members], color=color,
                marker=_MARKERS.get(members[0].method or "", "o"), label=_curve_label(members, dict(key), attr))
    dense = [r for r in _done(report, y) if (spec := METHODS.get(r.method or "")) and spec.outer is spec.inner is None]
    if attr != "frames" and len(dense) == 1:
        plotted.append(y(dense[0]))
        ax.axhline(y(dense[0]), linestyle="--", color=_COLORS[dense[0].method], label=_label(dense[0]))  # type: ignore[arg-type, index]
    _fit_scores(ax, plotted, percent)
    _finish(ax, xlabel, ylabel, title)
    return fig


def sweep_figures(report: Report) -> dict[str, Any]:
    """Every figure the sweep supports: file name -> ``matplotlib.figure.Figure`` (none for what it lacks)."""
    built = {"accuracy_vs_retain_ratio.png": figure_retain(report), "accuracy_vs_tflops.png": figure_tflops(report)}
    built.update({f"{ABLATIONS[attr][0]}.png": figure_ablation(report, attr) for attr in ABLATIONS})
    return {name: fig for name, fig in built.items() if fig is not None}


def plot_report(report: Report, out_dir: Path) -> list[Path]:
    """Write every figure of `sweep_figures` into ``out_dir``; returns the files written."""
    new_figure(_REMEDY)  # matplotlib missing: say so before anything
    return [save_png(fig, Path(out_dir) / name) for name, fig in sweep_figures(report).items()]
