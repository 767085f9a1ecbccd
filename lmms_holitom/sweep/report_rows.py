"""The rows of ``holitom report`` (`Row`, `Report`) and the benchmark scores read from lmms-eval results
(see `lmms_holitom.sweep.report`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.methods import METHODS
from lmms_holitom.sweep.paper import PaperRow, model_key
from lmms_holitom.sweep.results import score_metric

METHOD_LABELS = {name: spec.label for name, spec in METHODS.items()}  #: from the registry
METHOD_ORDER = {name: i for i, name in enumerate(METHODS)}  #: the registry's order
FLOPS_PRESET = {"ov-7b": "llava-onevision-7b", "ov-72b": "llava-onevision-72b",
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
    stats_problem: str | None = None  # why a done run's video errors are unknown (its summary is unusable)
    avg: float | None = None
    pct_dense: float | None = None
    pct_dense_reason: str | None = None  # why pct_dense is None (no score, no dense run, dense scored 0)
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
        """False when some sample had a video error (answered with an empty string), or when the video errors
        of a done run are unknown (`stats_problem`)."""
        return self.stats_problem is None and not any((self.video_errors or {}).values())


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


def _pct(task: str, value: float | None) -> float | None:
    """A validated score in percent: scaled by its task's known scale (`results.SCORE_METRICS`)."""
    known = score_metric(task)
    if value is None or known is None:
        return value
    return value * 100.0 / known[1]


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
            scores["Ego"] = _pct(task, v)  # type: ignore[assignment]
            break
    if (v := _metric(results.get("longvideobench_val_v"), "lvb_acc")) is not None:
        scores["LVB"] = _pct("longvideobench_val_v", v)  # type: ignore[assignment]
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


def paper_row(p: PaperRow, ours: Row) -> Row:
    return Row(
        name=f"{ours.name} (paper)", source="paper", method=p.method,
        retain_ratio=p.retain_ratio, tau=ours.tau, merge_layer=ours.merge_layer, merge_ratio=ours.merge_ratio,
        visionzip_tokens=ours.visionzip_tokens, frames=p.frames, pretrained=ours.pretrained,
        scores=dict(p.scores), avg=p.avg, pct_dense=p.pct_dense, tflops=p.tflops, tflops_source="paper",
        status="published", notes=[p.note] if p.note else [],
    )
