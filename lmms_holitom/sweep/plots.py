"""Figures of a sweep report (PNG, matplotlib's Agg backend; matplotlib is an optional dependency).

One figure per question, named by it:

* ``accuracy_vs_retain_ratio.png`` — Avg per method over the retain ratio, dense (and FastV) as reference
  lines, the published numbers as hollow markers where they match;
* ``accuracy_vs_tflops.png`` — Avg over theoretical/measured TFLOPs (log scale), with the Pareto front;
* ``ablation_tau.png``, ``ablation_merge_layer.png``, ``ablation_merge_ratio.png``,
  ``accuracy_vs_frames.png`` — when the sweep varies that parameter with everything else fixed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmms_holitom.methods import METHODS
from lmms_holitom.sweep.report_rows import METHOD_LABELS, Report, Row

__all__ = ["PlotsUnavailable", "plot_report"]

# one colour and marker per method, in the registry's order (dense, FastV, VisionZip, HoliTom w/o M, HoliTom, EVS,
# VidCom2, then any later method)
_PALETTE = ("#444444", "#9467bd", "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#8c564b", "#e377c2", "#17becf")
_SHAPES = ("s", "D", "o", "^", "*", "v", "P", "X", "h")
_COLORS = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(METHODS)}
_MARKERS = {name: _SHAPES[i % len(_SHAPES)] for i, name in enumerate(METHODS)}

ABLATIONS: dict[str, tuple[str, str, str]] = {
    # attribute -> (file stem, x label, title)
    "tau": ("ablation_tau", "T (cosine threshold for static tokens)", "Effect of the temporal threshold T"),
    "merge_layer": ("ablation_merge_layer", "K (decoder layer of the inner merge)", "Effect of the merge layer K"),
    "merge_ratio": ("ablation_merge_ratio", "r (fraction merged at layer K)", "Effect of the merge ratio r"),
    "frames": ("accuracy_vs_frames", "frames sampled per video", "Effect of the number of frames"),
}


class PlotsUnavailable(RuntimeError):
    pass


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable(
            "plots need matplotlib: pip install matplotlib (or pip install 'lmms-holitom[plot]'); "
            "use --no-plots to write only the tables"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _metric(report: Report) -> tuple[Callable[[Row], float | None], str]:
    if report.benchmark_columns:
        cols = "/".join(report.benchmark_columns)
        return (lambda r: r.avg), f"Avg accuracy over {cols} (%)"
    if len(report.extra_columns) == 1:
        return (lambda r: r.avg), f"{report.extra_columns[0]} score"
    return (lambda r: r.avg), "Avg score"


def _label(row: Row) -> str:
    return METHOD_LABELS.get(row.method or "", row.method or "?")


def _save(fig: Any, path: Path, plt: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _done(report: Report, y: Callable[[Row], float | None]) -> list[Row]:
    return [r for r in report.rows if r.status == "done" and r.method and y(r) is not None]


def plot_retain(report: Report, out: Path, plt: Any) -> Path | None:
    y, ylabel = _metric(report)
    rows = _done(report, y)
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r.retain_ratio is not None:
            # T at the paper's value for the budget (0.65 at 10 %, else 0.80) forms one curve; other T their own
            paper_t = r.tau is None or abs(r.tau - (0.65 if abs(r.retain_ratio - 0.10) < 1e-9 else 0.80)) < 1e-9
            groups[(r.method, r.pretrained, r.frames, r.merge_layer, r.merge_ratio,
                    "paper" if paper_t else r.tau)].append(r)
    groups = {k: v for k, v in groups.items() if len({r.retain_ratio for r in v}) >= 2}
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        method, tau = key[0], key[-1]
        by_x: dict[float, list[float]] = defaultdict(list)
        for r in members:
            by_x[r.retain_ratio * 100].append(y(r))  # type: ignore[operator]
        xs = sorted(by_x)
        label = _label(members[0]) + ("" if tau == "paper" else f", T={tau:g}")
        ax.plot(xs, [sum(by_x[x]) / len(by_x[x]) for x in xs], marker=_MARKERS.get(method, "o"),
                color=_COLORS.get(method), linestyle="-" if tau == "paper" else "-.", label=label)
        paper = sorted((r.retain_ratio * 100, r.paper.avg) for r in members if r.paper)  # type: ignore[operator]
        if paper and report.benchmark_columns:
            ax.plot([p[0] for p in paper], [p[1] for p in paper], linestyle="--", marker=_MARKERS.get(method, "o"),
                    markerfacecolor="none", color=_COLORS.get(method), alpha=0.7,
                    label=f"{_label(members[0])} (paper)")
    for r in rows:  # methods without a retain ratio are reference lines: no reduction, or one inside the LLM
        spec = METHODS.get(r.method or "")
        if spec is not None and r.retain_ratio is None and spec.outer is None:
            style = "--" if spec.inner is None else ":"
            extra = "" if spec.inner is None else f" (K={r.merge_layer}, r={r.merge_ratio:g})"
            ax.axhline(y(r), linestyle=style, color=_COLORS[spec.name], label=f"{_label(r)}{extra}")  # type: ignore[arg-type]
    ax.set_xlabel("retain ratio (% of visual tokens entering the LLM)")
    ax.set_ylabel(ylabel)
    ax.set_title("Accuracy vs retain ratio")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "accuracy_vs_retain_ratio.png", plt)


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    front, best = [], float("-inf")
    for x, v in sorted(points, key=lambda p: (p[0], -p[1])):
        if v > best:
            front.append((x, v))
            best = v
    return front


def plot_tflops(report: Report, out: Path, plt: Any) -> Path | None:
    y, ylabel = _metric(report)
    rows = [r for r in _done(report, y) if r.tflops is not None and r.tflops > 0]
    if len(rows) < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen: set[str] = set()
    for r in rows:
        label = _label(r)
        ax.scatter(r.tflops, y(r), color=_COLORS.get(r.method or ""), marker=_MARKERS.get(r.method or "", "o"),
                   s=60, label=None if label in seen else label, zorder=3)
        seen.add(label)
        if r.retain_ratio is not None:
            ax.annotate(f"{r.retain_ratio * 100:g}%", (r.tflops, y(r)), textcoords="offset points",  # type: ignore[arg-type]
                        xytext=(4, 4), fontsize=7)
    front = _pareto([(r.tflops, y(r)) for r in rows])  # type: ignore[misc]
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="gray", alpha=0.6,
            label="Pareto front")
    xs = [r.tflops for r in rows]
    if max(xs) / min(xs) > 10:  # type: ignore[type-var, operator]
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _pos: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    sources = {r.tflops_source for r in rows}
    how = {frozenset({"theoretical"}): " (paper's cost model)", frozenset({"measured"}): " (measured)"}.get(
        frozenset(sources), " (measured where available, else the paper's cost model)")
    ax.set_xlabel("LLM TFLOPs per sample" + how)
    ax.set_ylabel(ylabel)
    ax.set_title("Accuracy vs compute")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, out / "accuracy_vs_tflops.png", plt)


def plot_ablation(report: Report, attr: str, out: Path, plt: Any) -> Path | None:
    y, ylabel = _metric(report)
    keys = ("method", "pretrained", "retain_ratio", "tau", "merge_layer", "merge_ratio", "frames")
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in _done(report, y):
        if getattr(r, attr) is None:
            continue
        groups[tuple((k, getattr(r, k)) for k in keys if k != attr)].append(r)
    groups = {k: v for k, v in groups.items() if len({getattr(r, attr) for r in v}) >= 2}
    if not groups:
        return None
    stem, xlabel, title = ABLATIONS[attr]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        fixed = dict(key)
        members.sort(key=lambda r: getattr(r, attr))
        parts = [_label(members[0])]
        if fixed.get("retain_ratio") is not None:
            parts.append(f"{fixed['retain_ratio'] * 100:g} %")
        for k, short in (("tau", "T"), ("merge_layer", "K"), ("merge_ratio", "r"), ("frames", "frames")):
            if fixed.get(k) is not None and k != attr and (k != "frames" or attr != "frames"):
                parts.append(f"{short}={fixed[k]:g}")
        color = _COLORS.get(members[0].method or "") if len(groups) == 1 else None  # else: one colour per curve
        ax.plot([getattr(r, attr) for r in members], [y(r) for r in members], marker=_MARKERS.get(
            members[0].method or "", "o"), color=color, label=", ".join(parts))
    dense = [r for r in _done(report, y) if (spec := METHODS.get(r.method or "")) and spec.outer is spec.inner is None]
    if attr != "frames" and len(dense) == 1:
        ax.axhline(y(dense[0]), linestyle="--", color=_COLORS[dense[0].method], label=_label(dense[0]))  # type: ignore[arg-type]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / f"{stem}.png", plt)


def plot_report(report: Report, out_dir: Path) -> list[Path]:
    """Write every figure the sweep supports; returns the files written."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    written = [plot_retain(report, out_dir, plt), plot_tflops(report, out_dir, plt)]
    written += [plot_ablation(report, attr, out_dir, plt) for attr in ABLATIONS]
    return [p for p in written if p is not None]
