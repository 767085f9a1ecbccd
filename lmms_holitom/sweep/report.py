"""``holitom report RUN_DIR``: a sweep folder -> the paper's table (Markdown + CSV) and plots.

For every run folder (``<run>/run.json`` and/or ``<run>/lmms_eval/**/*_results.json``):

* scores, in the paper's columns — MVB: mean of the MVBench subtasks' ``mvbench_accuracy``; Ego:
  ``egoschema_subset`` (or ``egoschema``) ``score`` ×100 when on a 0–1 scale; LVB: ``longvideobench_val_v``
  ``lvb_acc`` ×100; VMME: ``videomme`` ``videomme_perception_score`` — and one extra column per other task
  (its first metric, as lmms-eval reports it);
* Avg (over the benchmark columns of the table), % of the dense run with the same model and frame count;
* visual tokens, TFLOPs and TTFT from the plugin's ``holitom_summary.json`` (sample-weighted over tasks);
  without a summary, TFLOPs come from the paper's cost model (`lmms_holitom.flops`), marked ``≈``;
* the published row (`lmms_holitom.sweep.paper`) right under ours when the setting matches.

The settings of a run are read from the model_args lmms-eval recorded in its results (what really ran),
else from the run manifest.

Every run is validated exactly as the sweep validates it (`lmms_holitom.sweep.results.check_recorded_run`):
a manifest saying ``done`` over a truncated or incomplete results file gives status ``invalid`` and no
scores; a remote-scored task with saved answers gives ``pending-scoring``. The video errors the plugin
counted (``holitom_summary.json``) are shown per benchmark beside the scores, and a run with any is marked
``not comparable``: each task scores an unanswered (empty) answer its own way.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.sweep.manifest import MANIFEST, read_json, write_text_atomic
from lmms_holitom.sweep.paper import BENCHMARK_COLUMNS, PaperRow, match_paper, model_key
from lmms_holitom.sweep.results import (
    check_recorded_run,
    find_results_file,
    load_summary,
    parse_model_args,
    summary_errors,
)

__all__ = ["Report", "Row", "benchmark_scores", "build_report", "extra_metrics", "to_csv", "to_markdown",
           "write_report"]

METHOD_LABELS = {
    "dense": "dense",
    "fastv": "FastV",
    "visionzip": "VisionZip",
    "holitom_wo_m": "HoliTom w/o M",
    "holitom": "HoliTom",
}
_METHOD_ORDER = {"dense": 0, "fastv": 1, "visionzip": 2, "holitom_wo_m": 3, "holitom": 4}
_FLOPS_PRESET = {"ov-7b": "llava-onevision-7b", "ov-72b": "llava-onevision-72b",
                 "llava-video-7b": "llava-video-7b"}
_CONSUMED_PREFIXES = ("mvbench", "egoschema", "longvideobench_val_v", "videomme")


@dataclass
class Row:
    name: str
    source: str = "ours"  # ours | paper
    method: str | None = None
    retain_ratio: float | None = None
    tau: float | None = None
    merge_layer: int | None = None
    merge_ratio: float | None = None
    visionzip_tokens: int | None = None
    frames: int | None = None
    pretrained: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    video_errors: dict[str, int] | None = None  # score column -> samples with a video error (None: unknown)
    avg: float | None = None
    pct_dense: float | None = None
    tflops: float | None = None
    tflops_source: str | None = None  # measured | theoretical | paper
    visual_tokens: float | None = None
    visual_tokens_after_merge: float | None = None
    ttft_ms: float | None = None
    status: str = "missing"
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    results_file: str | None = None
    extra_metrics: dict[str, str] = field(default_factory=dict)  # extra column -> metric name
    paper: PaperRow | None = None
    holitom: HoliTomConfig | None = None

    @property
    def model(self) -> str | None:
        return model_key(self.pretrained)

    @property
    def comparable(self) -> bool:
        """False when some sample had a video error (answered with an empty string)."""
        return not any((self.video_errors or {}).values())


@dataclass
class Report:
    root: Path
    rows: list[Row]
    benchmark_columns: list[str]
    extra_columns: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def score_columns(self) -> list[str]:
        return [*self.benchmark_columns, *self.extra_columns]

    def table_rows(self) -> list[Row]:
        """Our rows, each followed by its matching published row."""
        out: list[Row] = []
        for row in self.rows:
            out.append(row)
            if row.paper is not None:
                out.append(paper_row(row.paper, row))
        return out


# ---------------------------------------------------------------------------------------------- scores
def _metric(entry: Any, name: str) -> float | None:
    if not isinstance(entry, Mapping):
        return None
    value = entry.get(f"{name},none")
    if value is None:
        value = next((v for k, v in entry.items() if k.split(",")[0] == name), None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _pct(value: float | None) -> float | None:
    if value is None:
        return None
    return value * 100 if value <= 1.0 else value


def benchmark_scores(data: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """(paper columns, extra task columns, notes) from one lmms-eval results JSON.

    An extra task's value is its first metric (see `extra_metrics` for the names), unscaled.
    """
    results = data.get("results") or {}
    scores: dict[str, float] = {}
    notes: list[str] = []
    mvb = [v for k, e in results.items() if k.startswith("mvbench_") and (v := _metric(e, "mvbench_accuracy"))
           is not None]
    if mvb:
        scores["MVB"] = sum(mvb) / len(mvb)
        expected = len((data.get("group_subtasks") or {}).get("mvbench") or []) or 20
        if len(mvb) != expected:
            notes.append(f"MVB over {len(mvb)} of {expected} subtasks")
    for task in ("egoschema_subset", "egoschema"):
        if (v := _metric(results.get(task), "score")) is not None:
            scores["Ego"] = _pct(v)  # type: ignore[assignment]
            break
    if (v := _metric(results.get("longvideobench_val_v"), "lvb_acc")) is not None:
        scores["LVB"] = _pct(v)  # type: ignore[assignment]
    if (v := _metric(results.get("videomme"), "videomme_perception_score")) is not None:
        scores["VMME"] = v
    extras = {task: value for task, (_metric_name, value) in extra_metrics(data).items()}
    return scores, extras, notes


def extra_metrics(data: Mapping[str, Any]) -> dict[str, tuple[str, float]]:
    """Tasks outside the paper's four -> (their first metric's name, its value)."""
    out: dict[str, tuple[str, float]] = {}
    for task, entry in (data.get("results") or {}).items():
        if task.startswith(_CONSUMED_PREFIXES) or not isinstance(entry, Mapping):
            continue
        for key, value in entry.items():
            metric = key.split(",")[0]
            if "," in key and "_stderr" not in metric and isinstance(value, (int, float)) \
                    and not isinstance(value, bool) and math.isfinite(value):
                out[task] = (metric, float(value))
                break
    return out


# ---------------------------------------------------------------------------------------------- one run
def _holitom_from_args(args: Mapping[str, Any]) -> HoliTomConfig | None:
    values = {k: v for k, v in args.items() if k in HoliTomConfig.field_names()}
    if not values:
        return None
    try:
        return HoliTomConfig.from_dict(values)
    except (TypeError, ValueError):
        return None


def _weighted(summary: Mapping[str, Any], key: str) -> float | None:
    num = den = 0.0
    for entry in summary.values():
        if not isinstance(entry, Mapping):
            continue
        value = entry.get(key)
        n = (entry.get("samples") or 0) - (entry.get("errors") or 0)  # means are over error-free samples
        if isinstance(value, (int, float)) and not isinstance(value, bool) and n:
            num += float(value) * n
            den += n
    return num / den if den else None


def _theoretical_tflops(row: Row, visual_tokens: float | None) -> float | None:
    preset = _FLOPS_PRESET.get(row.model or "")
    if preset is None or row.holitom is None:
        return None
    try:
        from lmms_holitom import flops
    except ImportError:
        return None
    tokens = None if visual_tokens is None else round(visual_tokens)
    return flops.setting_flops(row.holitom, preset, row.frames, visual_tokens=tokens) / 1e12


def read_run(run_dir: Path) -> Row:
    manifest = read_json(run_dir / MANIFEST) or {}
    row = Row(name=run_dir.name)
    results_path = find_results_file(run_dir / "lmms_eval")
    data = read_json(results_path) if results_path else None
    args: dict[str, Any] = {}
    if data and (data.get("config") or {}).get("model_args") is not None:
        args = parse_model_args(data["config"]["model_args"])
    elif manifest.get("model_args"):
        args = parse_model_args(manifest["model_args"])
    row.holitom = _holitom_from_args(args)
    if row.holitom is not None:
        cfg = row.holitom
        row.method = cfg.method
        row.retain_ratio = cfg.retain_ratio if cfg.method not in ("dense", "fastv") else None
        row.tau = cfg.tau if cfg.method in ("holitom", "holitom_wo_m") else None
        if cfg.inner_mode:
            row.merge_layer, row.merge_ratio = cfg.merge_layer, cfg.merge_ratio
        if cfg.method == "visionzip":
            row.visionzip_tokens = cfg.visionzip_tokens(196)
    row.pretrained = args.get("pretrained")
    frames = args.get("max_frames_num", args.get("max_num_frames"))
    row.frames = int(frames) if frames not in (None, "") and str(frames).isdigit() else None
    check = check_recorded_run(run_dir, manifest)
    row.status = _status(check, manifest, results_path is not None)
    if row.status in ("failed", "invalid", "pending-scoring"):
        reason = manifest.get("reason") if row.status == "failed" and manifest.get("reason") else check.reason
        row.notes.append(f"{row.name}: {row.status} — {reason}")
    row.flags = list(manifest.get("flags") or [])
    if check.done and data is not None and results_path is not None:
        row.results_file = str(results_path.relative_to(run_dir.parent))
        scores, extras, notes = benchmark_scores(data)
        row.scores = {**scores, **extras}
        row.extra_metrics = {task: metric for task, (metric, _v) in extra_metrics(data).items()}
        row.notes += [f"{row.name}: {n}" for n in notes]
        summary = load_summary(results_path)
        if summary:
            row.visual_tokens = _weighted(summary, "mean_outer_tokens")
            row.visual_tokens_after_merge = _weighted(summary, "mean_inner_tokens")
            row.ttft_ms = _weighted(summary, "mean_ttft_ms")
            measured = _weighted(summary, "mean_tflops")
            if measured is not None:
                row.tflops, row.tflops_source = measured, "measured"
            row.video_errors = _video_errors(summary)
            errors = summary_errors(summary)
            if errors and not any("error" in f for f in row.flags):
                row.flags.append(f"model reported {errors} error(s)")
    if row.tflops is None and row.holitom is not None:
        value = _theoretical_tflops(row, row.visual_tokens)
        if value is not None:
            row.tflops, row.tflops_source = value, "theoretical"
    if row.method:
        settings = {"tau": row.tau, "merge_layer": row.merge_layer, "merge_ratio": row.merge_ratio,
                    "visionzip_tokens": row.visionzip_tokens}
        row.paper = match_paper(row.model, row.method, row.retain_ratio, row.frames, settings)
    return row


def _status(check: Any, manifest: dict[str, Any], has_results: bool) -> str:
    """done / pending-scoring from the validation; else the manifest's own state, ``invalid`` when the
    manifest claims a finished run the results do not support, ``missing`` without either."""
    if check.state != "incomplete":
        return check.state
    status = manifest.get("status")
    if status in (None, "done", "pending-scoring"):
        return "invalid" if (status or has_results) else "missing"
    return str(status)


def column_of(task: str) -> str:
    """The report column a leaf task's score goes to (``mvbench_*`` -> MVB, ...; other tasks: their name)."""
    if task.startswith("mvbench"):
        return "MVB"
    if task in ("egoschema", "egoschema_subset"):
        return "Ego"
    return {"longvideobench_val_v": "LVB", "videomme": "VMME"}.get(task, task)


def _video_errors(summary: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for task, entry in summary.items():
        if isinstance(entry, Mapping) and isinstance(entry.get("errors"), (int, float)):
            out[column_of(task)] = out.get(column_of(task), 0) + int(entry["errors"])
    return out


def paper_row(p: PaperRow, ours: Row) -> Row:
    return Row(
        name=f"{ours.name} (paper)", source="paper", method=p.method,
        retain_ratio=p.retain_ratio, tau=ours.tau, merge_layer=ours.merge_layer, merge_ratio=ours.merge_ratio,
        visionzip_tokens=ours.visionzip_tokens, frames=p.frames, pretrained=ours.pretrained,
        scores=dict(p.scores), avg=p.avg, pct_dense=p.pct_dense, tflops=p.tflops, tflops_source="paper",
        status="published", notes=[p.note] if p.note else [],
    )


# ---------------------------------------------------------------------------------------------- the table
def _sort_key(row: Row) -> tuple:
    m = row.method or "~"
    rank = _METHOD_ORDER.get(m, 9)
    retain = row.retain_ratio if row.retain_ratio is not None else 2.0
    return (row.pretrained or "", row.frames or 0, rank > 1, -retain, rank,
            row.tau or 0.0, row.merge_layer or 0, row.merge_ratio or 0.0, row.name)


def _run_dirs(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.is_dir() and ((p / MANIFEST).is_file() or (p / "lmms_eval").is_dir()):
            out.append(p)
    return out


def build_report(root: Path) -> Report:
    root = Path(root)
    rows = sorted((read_run(d) for d in _run_dirs(root)), key=_sort_key)
    bench = [c for c in BENCHMARK_COLUMNS if any(c in r.scores for r in rows)]
    extras = sorted({c for r in rows for c in r.scores if c not in BENCHMARK_COLUMNS})
    avg_cols = bench or extras
    dense = {(r.pretrained, r.frames): r for r in rows if r.method == "dense"}
    for r in rows:
        values = [r.scores.get(c) for c in avg_cols]
        r.avg = sum(values) / len(values) if values and all(v is not None for v in values) else None  # type: ignore[misc]
    for r in rows:
        base = dense.get((r.pretrained, r.frames))
        if r.avg is not None and base is not None and base.avg:
            r.pct_dense = 100.0 * r.avg / base.avg
    notes: list[str] = []
    if any(r.scores.get("Ego") is not None for r in rows):
        notes.append("Ego: lmms-eval `egoschema_subset` (500 questions, scored locally) unless the run used "
                     "`egoschema`; the full set is scored by a remote server.")
    if any(r.tflops_source == "theoretical" for r in rows):
        notes.append("≈ TFLOPs: the paper's cost model (LLM, visual tokens only) for the setting, "
                     "not measured by the model.")
    if extras:
        metrics = {c: next((r.extra_metrics[c] for r in rows if c in r.extra_metrics), "?") for c in extras}
        notes.append("Other tasks, as lmms-eval reports them (not rescaled): "
                     + ", ".join(f"{c} = `{m}`" for c, m in metrics.items()) + ".")
    if any(not r.comparable for r in rows):
        notes.append("not comparable: some samples had a video error (missing or undecodable file) and were "
                     "answered with an empty string, which each task scores its own way (MVBench skips them, "
                     "EgoSchema and LongVideoBench turn them into a random choice); the `video errors` column "
                     "counts them per benchmark.")
    if any(r.status == "pending-scoring" for r in rows):
        notes.append("pending-scoring: the answers were saved but the task is scored by a remote server that "
                     "was not reached (egoschema); submit the saved answers file to score it.")
    for r in rows:
        notes.extend(r.notes)
        notes.extend(f"{r.name}: flagged — {f}" for f in r.flags)
    return Report(root, rows, bench, extras, list(dict.fromkeys(notes)))


# ---------------------------------------------------------------------------------------------- rendering
def _f(value: float | None, digits: int = 1) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}"


def _tflops_cell(row: Row) -> str:
    if row.tflops is None:
        return ""
    text = f"{row.tflops:.1f}" if row.tflops >= 0.1 else f"{row.tflops:.3g}"
    return ("≈" + text) if row.tflops_source == "theoretical" else text


def _tokens_cell(row: Row) -> str:
    if row.visual_tokens is None:
        return ""
    text = f"{row.visual_tokens:.0f}"
    after = row.visual_tokens_after_merge
    if after is not None and round(after) != round(row.visual_tokens):
        text += f"→{after:.0f}"
    return text


def _status_cell(row: Row) -> str:
    if row.source == "paper":
        return "published"
    return row.status + (" ⚑" if row.flags else "") + ("" if row.comparable else " not comparable")


def _errors_cell(row: Row, columns: list[str]) -> str:
    """``0``, or the benchmarks with video errors (``MVB 2, VMME 1``); blank when unknown."""
    if row.video_errors is None:
        return ""
    bad = [f"{c} {row.video_errors[c]}" for c in columns if row.video_errors.get(c)]
    others = sum(n for c, n in row.video_errors.items() if c not in columns)
    if others:
        bad.append(f"other {others}")
    return ", ".join(bad) or "0"


def _retain_cell(row: Row) -> str:
    if row.retain_ratio is None:
        return "LLM" if row.method == "fastv" else ("100 %" if row.method == "dense" else "")
    return f"{row.retain_ratio * 100:g} %"


def _columns(report: Report) -> list[tuple[str, Any]]:
    rows = report.rows
    cols: list[tuple[str, Any]] = [
        ("run", lambda r: ("↳ paper" if r.source == "paper" else r.name)),
        ("method", lambda r: METHOD_LABELS.get(r.method or "", r.method or "")),
        ("retain", _retain_cell),
        ("T", lambda r: _f(r.tau, 2)),
        ("K", lambda r: "" if r.merge_layer is None else str(r.merge_layer)),
        ("r", lambda r: "" if r.merge_ratio is None else f"{r.merge_ratio:g}"),
        ("frames", lambda r: "" if r.frames is None else str(r.frames)),
    ]
    cols += [(c, lambda r, c=c: _f(r.scores.get(c))) for c in report.score_columns]
    cols.append(("video errors", lambda r: _errors_cell(r, report.score_columns)))
    cols += [
        ("Avg", lambda r: _f(r.avg)),
        ("% of dense", lambda r: _f(r.pct_dense)),
        ("TFLOPs", _tflops_cell),
        ("visual tokens", _tokens_cell),
    ]
    if any(r.ttft_ms is not None for r in rows):
        cols.append(("TTFT ms", lambda r: _f(r.ttft_ms, 0)))
    cols.append(("status", _status_cell))
    return cols


def to_markdown(report: Report) -> str:
    cols = _columns(report)
    lines = [f"# HoliTom sweep report: {report.root.name}", ""]
    if not report.rows:
        return "\n".join([*lines, "No runs found.", ""])
    lines.append("| " + " | ".join(name for name, _ in cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for row in report.table_rows():
        cells = [str(fn(row)).replace("|", "\\|") for _, fn in cols]
        if row.source == "paper":
            cells = [f"*{c}*" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Published rows (*↳ paper*, HoliTom NeurIPS 2025, lmms-eval 0.3.0) appear under ours where "
                 "model, frames, method and settings match.")
    if report.notes:
        lines += ["", "Notes:", *[f"- {n}" for n in report.notes]]
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("source", "run", "method", "retain_ratio", "tau", "merge_layer", "merge_ratio", "frames",
              "pretrained")
CSV_TAIL = ("avg", "pct_of_dense", "tflops", "tflops_source", "visual_tokens", "visual_tokens_after_merge",
            "ttft_ms", "status", "flags", "results_file")


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    errors = [f"{c}_video_errors" for c in report.score_columns]
    writer.writerow([*CSV_FIELDS, *report.score_columns, *errors, *CSV_TAIL])
    for r in report.table_rows():
        head = [r.source, r.name, r.method, r.retain_ratio, r.tau, r.merge_layer, r.merge_ratio, r.frames,
                r.pretrained]
        scores = [r.scores.get(c) for c in report.score_columns]
        scores += [None if r.video_errors is None else r.video_errors.get(c, 0) for c in report.score_columns]
        tail = [r.avg, r.pct_dense, r.tflops, r.tflops_source, r.visual_tokens, r.visual_tokens_after_merge,
                r.ttft_ms, r.status, "; ".join(r.flags), r.results_file]
        writer.writerow([_csv_value(v) for v in (*head, *scores, *tail)])
    return buf.getvalue()


def write_report(root: Path, out_dir: Path | None = None, *, plots: bool = True) -> tuple[Report, list[Path]]:
    """Write ``report.md``, ``report.csv`` (and ``plots/*.png``) into ``out_dir`` (default: ``root``)."""
    report = build_report(root)
    out_dir = Path(out_dir or root)
    written = []
    for name, text in (("report.md", to_markdown(report)), ("report.csv", to_csv(report))):
        write_text_atomic(out_dir / name, text)
        written.append(out_dir / name)
    if plots:
        from lmms_holitom.sweep.plots import plot_report

        written += plot_report(report, out_dir / "plots")
    return report, written
