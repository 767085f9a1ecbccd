"""Rendering of a `Report`: the Markdown table and the CSV (see `lmms_holitom.sweep.report`)."""

from __future__ import annotations

import csv
import io
from typing import Any

from lmms_holitom.methods import METHODS
from lmms_holitom.sweep.report_rows import METHOD_LABELS, Report, Row


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
    """The retain ratio; ``LLM`` for a method that reduces only inside the LLM, ``100 %`` for one that does not
    reduce at all."""
    if row.retain_ratio is None:
        spec = METHODS.get(row.method or "")
        if spec is None:
            return ""
        return "100 %" if spec.outer is None and spec.inner is None else ("LLM" if spec.outer is None else "")
    return f"{row.retain_ratio * 100:g} %"


def _pct_cell(row: Row) -> str:
    """The score as % of dense, or ``n/a (why)`` for a run of ours (a paper row leaves it blank when not given)."""
    if row.pct_dense is None and row.pct_dense_reason and row.source != "paper":
        return f"n/a ({row.pct_dense_reason})"
    return _f(row.pct_dense)


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
        ("% of dense", _pct_cell),
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
