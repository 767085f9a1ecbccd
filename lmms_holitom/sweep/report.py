"""``holitom report RUN_DIR``: a sweep folder -> the paper's table (Markdown + CSV) and plots.

For every run folder (``<run>/run.json`` and/or ``<run>/lmms_eval/**/*_results.json``):

* scores, in the paper's columns — MVB: mean of the MVBench subtasks' ``mvbench_accuracy``; Ego:
  ``egoschema_subset`` (or ``egoschema``) ``score`` ×100 (a 0–1 fraction); LVB: ``longvideobench_val_v``
  ``lvb_acc`` ×100; VMME: ``videomme`` ``videomme_perception_score`` — and one extra column per other task
  (its first metric, as lmms-eval reports it);
* Avg (over the benchmark columns of the table), % of the dense run with the same model and frame count;
* visual tokens, TFLOPs and TTFT from the plugin's ``<stamp>_holitom_summary.json`` (sample-weighted over tasks);
  without a summary, TFLOPs come from the paper's cost model (`lmms_holitom.flops`), marked ``≈``;
* the published row (`lmms_holitom.sweep.paper`) right under ours when the setting matches.

The settings of a run are read from the model_args lmms-eval recorded in its results (what really ran),
else from the run manifest.

Every row is either validated scores or a named reason. Every run is validated exactly as the sweep
validates it (`lmms_holitom.sweep.results.check_recorded_run`): a manifest saying ``done`` over a truncated or
incomplete results file, or over a score that is not a finite number in its range (NaN, null, a string, −3.0,
7.5 on a 0–1 metric), gives status ``invalid``, no scores and the reason; an unreadable ``run.json`` gives
``invalid`` naming it; a remote-scored task with saved answers gives ``pending-scoring``. The video errors the
plugin counted (the evaluation's own ``<stamp>_holitom_summary.json``) are shown per benchmark beside the
scores, and a run with any is marked ``not comparable``: each task scores an unanswered (empty) answer its own
way. A run whose summary is missing, unreadable, incomplete or holds a count that is not a count is marked
``not comparable`` too, with that reason (its video errors are unknown).

This module reads the runs and builds the table; `report_rows` holds the rows and the score extraction,
`report_render` the Markdown and CSV.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.methods import DENSE
from lmms_holitom.sweep.manifest import MANIFEST, read_json, write_text_atomic
from lmms_holitom.sweep.paper import BENCHMARK_COLUMNS, match_paper
from lmms_holitom.sweep.report_render import to_csv, to_markdown
from lmms_holitom.sweep.report_rows import (
    FLOPS_PRESET,
    METHOD_ORDER,
    Report,
    Row,
    benchmark_scores,
    extra_metrics,
)
from lmms_holitom.sweep.results import check_recorded_run, find_results_file, parse_model_args

__all__ = ["Report", "Row", "benchmark_scores", "build_report", "extra_metrics", "to_csv", "to_markdown",
           "write_report"]


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
        n = entry["samples"] - entry["errors"]  # means are over error-free samples (counts: validated)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and n > 0:
            num += float(value) * n
            den += n
    return num / den if den else None


def _visionzip_tokens(row: Row) -> int | None:
    """VisionZip's tokens per frame on the model's grid (its FLOPs preset: 196 for OneVision, 169 for
    LLaVA-Video); None for a model without a fixed grid (Qwen: it follows the video's resolution)."""
    from lmms_holitom.flops import get_preset
    from lmms_holitom.methods.visionzip import tokens_per_frame

    preset = FLOPS_PRESET.get(row.model or "")
    if preset is None or row.holitom is None:
        return None
    return tokens_per_frame(row.holitom, get_preset(preset).tokens_per_frame)


def _theoretical_tflops(row: Row, visual_tokens: float | None) -> float | None:
    preset = FLOPS_PRESET.get(row.model or "")
    if preset is None or row.holitom is None:
        return None
    try:
        from lmms_holitom import flops
    except ImportError:
        return None
    tokens = None if visual_tokens is None else round(visual_tokens)
    return flops.setting_flops(row.holitom, preset, row.frames, visual_tokens=tokens) / 1e12


def _read_manifest(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """(the run's manifest, or {}; why it is unusable when it exists but cannot be read)."""
    path = run_dir / MANIFEST
    if not path.exists():
        return {}, None
    manifest = read_json(path)
    if manifest is not None:
        return manifest, None
    try:
        json.loads(path.read_text(encoding="utf-8"))
        why = "not a JSON object"
    except (OSError, ValueError) as e:
        why = str(e)
    return {}, f"{MANIFEST} is unreadable ({why}): the run's expectations (tasks, limit, model_args) are unknown"


def read_run(run_dir: Path) -> Row:
    manifest, manifest_problem = _read_manifest(run_dir)
    row = Row(name=run_dir.name)
    results_path = find_results_file(run_dir / "lmms_eval")
    data = read_json(results_path) if results_path else None
    args = _model_args(data, manifest)
    row.holitom = _holitom_from_args(args)
    if row.holitom is not None:
        cfg = row.holitom
        row.method = cfg.method
        row.retain_ratio = cfg.retain_ratio if "retain_ratio" in cfg.spec.reads else None
        row.tau = cfg.tau if "tau" in cfg.spec.reads else None
        if cfg.inner_mode:
            row.merge_layer, row.merge_ratio = cfg.merge_layer, cfg.merge_ratio
    row.pretrained = args.get("pretrained")
    if row.holitom is not None and "spatial_tokens" in row.holitom.spec.reads:
        row.visionzip_tokens = _visionzip_tokens(row)
    frames = args.get("max_frames_num", args.get("max_num_frames"))
    row.frames = int(frames) if frames not in (None, "") and str(frames).isdigit() else None
    check = check_recorded_run(run_dir, manifest)
    row.status = "invalid" if manifest_problem else _status(check, manifest, results_path is not None)
    if row.status in ("failed", "invalid", "pending-scoring"):
        reason = manifest.get("reason") if row.status == "failed" and manifest.get("reason") else check.reason
        row.notes.append(f"{row.name}: {row.status} — {manifest_problem or reason}")
    flags = manifest.get("flags")
    row.flags = [str(f) for f in flags] if isinstance(flags, list) else []
    if row.status == "done" and data is not None and results_path is not None:
        _read_scores(row, check, data, results_path, run_dir)
    if row.tflops is None and row.holitom is not None:
        value = _theoretical_tflops(row, row.visual_tokens)
        if value is not None:
            row.tflops, row.tflops_source = value, "theoretical"
    if row.method:
        settings = {"tau": row.tau, "merge_layer": row.merge_layer, "merge_ratio": row.merge_ratio,
                    "visionzip_tokens": row.visionzip_tokens}
        row.paper = match_paper(row.model, row.method, row.retain_ratio, row.frames, settings)
    return row


def _model_args(data: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> dict[str, str]:
    """The model_args lmms-eval recorded in the results (what really ran), else the manifest's."""
    config = data.get("config") if data else None
    if isinstance(config, Mapping) and config.get("model_args") is not None:
        return parse_model_args(config["model_args"])
    return parse_model_args(manifest["model_args"]) if manifest.get("model_args") else {}


def _read_scores(row: Row, check: Any, data: Mapping[str, Any], results_path: Path, run_dir: Path) -> None:
    """The validated scores of a done run and the statistics of the same evaluation (or why they are unknown)."""
    row.results_file = str(results_path.relative_to(run_dir.parent))
    scores, extras, notes = benchmark_scores(data)
    row.scores = {**scores, **extras}
    row.extra_metrics = {task: metric for task, (metric, _v) in extra_metrics(data).items()}
    row.notes += [f"{row.name}: {n}" for n in notes]
    summary = check.summary
    if summary is None:
        row.stats_problem = check.stats_problem
        if check.stats_problem not in row.flags:
            row.flags.append(check.stats_problem)
        return
    row.visual_tokens = _weighted(summary, "mean_outer_tokens")
    row.visual_tokens_after_merge = _weighted(summary, "mean_inner_tokens")
    row.ttft_ms = _weighted(summary, "mean_ttft_ms")
    measured = _weighted(summary, "mean_tflops")
    if measured is not None:
        row.tflops, row.tflops_source = measured, "measured"
    row.video_errors = _video_errors(summary)
    if check.model_errors and not any("error" in f for f in row.flags):
        row.flags.append(f"model reported {check.model_errors} error(s)")


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
    for task, entry in summary.items():  # validated: every entry has an integer error count
        out[column_of(task)] = out.get(column_of(task), 0) + int(entry["errors"])
    return out


# ---------------------------------------------------------------------------------------------- the table
def _sort_key(row: Row) -> tuple:
    m = row.method or "~"
    rank = METHOD_ORDER.get(m, 9)
    retain = row.retain_ratio if row.retain_ratio is not None else 2.0
    return (row.pretrained or "", row.frames or 0, rank > 1, -retain, rank,
            row.tau or 0.0, row.merge_layer or 0, row.merge_ratio or 0.0, row.name)


def _run_dirs(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.is_dir() and ((p / MANIFEST).is_file() or (p / "lmms_eval").is_dir()):
            out.append(p)
    return out


def _pct_of_dense(row: Row, base: Row | None) -> tuple[float | None, str | None]:
    """(score as % of the dense run's on the same checkpoint and frames, or None with the reason)."""
    if row.avg is None:
        return None, "no score"
    if base is None:
        return None, "no dense run"
    if base.avg is None:
        return None, "dense has no score"
    if base.avg == 0:
        return None, "dense scored 0"
    return 100.0 * row.avg / base.avg, None


def build_report(root: Path) -> Report:
    root = Path(root)
    rows = sorted((read_run(d) for d in _run_dirs(root)), key=_sort_key)
    bench = [c for c in BENCHMARK_COLUMNS if any(c in r.scores for r in rows)]
    extras = sorted({c for r in rows for c in r.scores if c not in BENCHMARK_COLUMNS})
    avg_cols = bench or extras
    dense = {(r.pretrained, r.frames): r for r in rows if r.method == DENSE}
    for r in rows:
        values = [r.scores.get(c) for c in avg_cols]
        r.avg = sum(values) / len(values) if values and all(v is not None for v in values) else None  # type: ignore[misc]
    for r in rows:
        r.pct_dense, r.pct_dense_reason = _pct_of_dense(r, dense.get((r.pretrained, r.frames)))
    notes: list[str] = []
    if any(r.scores.get("Ego") is not None for r in rows):
        notes.append("Ego: lmms-eval `egoschema_subset` (500 questions, scored locally) unless the run used "
                     "`egoschema`; the full set is scored by a remote server.")
    if any(r.tflops_source == "theoretical" for r in rows):
        notes.append("≈ TFLOPs: the paper's cost model (LLM, visual tokens only) for the setting, "
                     "not measured by the model.")
    if extras:
        metrics = {c: next((r.extra_metrics[c] for r in rows if c in r.extra_metrics), "?") for c in extras}
        notes.append("Other tasks, as lmms-eval reports them (not rescaled; checked to be finite numbers, their "
                     "range is not known): "
                     + ", ".join(f"{c} = `{m}`" for c, m in metrics.items()) + ".")
    if any(r.stats_problem for r in rows):
        notes.append("not comparable (statistics): the plugin's statistics of the evaluation are missing or "
                     "unusable, so its video errors are unknown; the reason is in the run's flag.")
    if any(r.video_errors and not r.comparable for r in rows):
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
