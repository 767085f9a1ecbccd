"""Per-sample compression statistics of one lmms-eval evaluation: JSONL per rank, merged file, per-task summary.

Statistics are per evaluation. lmms-eval 0.7.3 names an evaluation's results ``<stamp>_results.json``, where
``<stamp>`` is the ``datetime_str`` its CLI passes to ``lmms_eval.evaluator.simple_evaluate`` (``%Y%m%d_%H%M%S``
in ``--timezone``, the same string as the results' ``date``); `lmms_eval_stamp` reads it from that call while the
model is built, so the statistics of that evaluation are named with the same stamp. Files (`docs/CONTRACTS.md`),
all in one folder — by default lmms-eval's own results folder ``<output_path>/<model subdir>/``:

* ``<stamp>_holitom_stats.<run id>.rank{R}.jsonl`` — written by rank R while it runs, one line per sample,
  flushed per line; the run id (rank 0's process id and a counter, shared by every rank) keeps two evaluations
  that start in the same second from writing into one file;
* ``<stamp>_holitom_stats.jsonl`` — rank 0 merges this evaluation's rank files at the end (sorted by task,
  doc id);
* ``<stamp>_holitom_summary.json`` — ``{task: {samples, errors, mean_outer_tokens, mean_inner_tokens,
  mean_dense_tokens, mean_tflops, mean_tflops_dense, mean_prefill_ms, mean_ttft_ms, ...}}``, plus
  ``"_problems": [...]`` (`PROBLEMS_KEY`) when some statistics could not be read or written (the counts are
  then incomplete, and readers say so).

`stats_files` pairs a results file with its statistics. Both end files are replaced atomically
(`lmms_holitom.io`), so concurrent and successive evaluations in one folder never truncate, interleave or
replace each other's statistics. Two evaluations started in the same second share lmms-eval's stamp: lmms-eval
then writes both results to one file (the last one wins), and the statistics follow the same rule, each file
complete.

A sample line has every key of `RECORD_KEYS`; ``settings`` is the full effective `HoliTomConfig` of the sample
(every field, the method's defaults resolved). ``modality`` is ``video``, ``image`` or ``text``; the video
statistics (frames, dense/outer/inner tokens, segments, TFLOPs) describe the video a video sample's model saw,
image samples carry ``image_tokens`` and the TFLOPs of those (uncompressed) tokens instead, with the video
fields null. A failed sample has ``error`` (``"VideoDecodeError: ..."`` or ``"doc_to_visual raised ..."``) and
``video`` (the file, when known) set and every measurement null: it was answered with
`lmms_holitom.integrations.lmms_eval.visuals.FAILED_ANSWER`, never from the text alone.

The summary's video means are over the video samples without error; image samples are counted and averaged
apart (``image_samples``, ``mean_image_tokens``, ``mean_image_tflops``), so zeros never skew them.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lmms_holitom.io import write_text_atomic

__all__ = [
    "PROBLEMS_KEY",
    "RECORD_KEYS",
    "RESULTS_SUFFIX",
    "STATS_SUFFIX",
    "SUMMARY_SUFFIX",
    "Evaluation",
    "StatsWriter",
    "discover_output_dir",
    "format_summary",
    "lmms_eval_stamp",
    "merge_rank_files",
    "new_evaluation",
    "read_jsonl",
    "stats_files",
    "summarize",
    "write_summary",
]

RESULTS_SUFFIX = "_results.json"  #: lmms-eval 0.7.3's results file: ``<stamp>_results.json``
STATS_SUFFIX = "_holitom_stats.jsonl"  #: ``<stamp>_holitom_stats.jsonl``: the merged sample lines
SUMMARY_SUFFIX = "_holitom_summary.json"  #: ``<stamp>_holitom_summary.json``: the per-task summary
PROBLEMS_KEY = "_problems"  #: summary key listing what could not be read or written (the counts are incomplete)
#: The keys of every sample line, in order (failed samples: measurements null).
RECORD_KEYS: tuple[str, ...] = (
    "doc_id", "task", "split", "rank", "method", "modality", "video", "frames", "tokens_per_frame",
    "dense_tokens", "outer_tokens", "inner_tokens", "merge_layer", "segments", "static_tokens", "image_tokens",
    "prompt_tokens_dense", "prompt_tokens", "new_tokens", "tflops_dense", "tflops", "timings_ms", "error", "settings",
)
_RECORDERS = itertools.count(1)  # recorders built in this process: part of the run id


@dataclass(frozen=True)
class Evaluation:
    """The names of one evaluation's statistics: ``stamp`` is lmms-eval's (its results file is
    ``<stamp>_results.json``), ``run_id`` tells apart evaluations that share a stamp (rank 0's)."""

    stamp: str
    run_id: str

    @property
    def merged_name(self) -> str:
        return self.stamp + STATS_SUFFIX

    @property
    def summary_name(self) -> str:
        return self.stamp + SUMMARY_SUFFIX

    def rank_file_name(self, rank: int) -> str:
        return f"{self.stamp}_holitom_stats.{self.run_id}.rank{rank}.jsonl"


def lmms_eval_stamp() -> str | None:
    """The date stamp of the lmms-eval evaluation being set up in this process: the ``datetime_str`` argument of
    the ``lmms_eval.evaluator.simple_evaluate`` call on the stack (which builds the model), as lmms-eval 0.7.3's
    ``EvaluationTracker`` turns it into the results file name (``:`` -> ``-``); None outside such a call."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "simple_evaluate" and frame.f_globals.get("__name__") == "lmms_eval.evaluator":
            value = frame.f_locals.get("datetime_str")
            if isinstance(value, str) and value:
                return value.replace(":", "-")
        frame = frame.f_back
    return None


def new_evaluation() -> Evaluation:
    """This process's `Evaluation`: lmms-eval's stamp (else the local time in lmms-eval's format, which pairs
    with no results file — lmms-eval writes none outside its CLI), and a run id unique in this process."""
    stamp = lmms_eval_stamp() or time.strftime("%Y%m%d_%H%M%S")
    return Evaluation(stamp, f"{os.getpid()}-{next(_RECORDERS)}")


def stats_files(results_file: str | os.PathLike) -> tuple[Path, Path]:
    """(merged sample lines, summary) of the evaluation whose lmms-eval results file is ``results_file``:
    ``<dir>/<stamp>_results.json`` -> ``<dir>/<stamp>_holitom_stats.jsonl``, ``<dir>/<stamp>_holitom_summary.json``."""
    path = Path(results_file)
    if not path.name.endswith(RESULTS_SUFFIX):
        raise ValueError(f"{path} is not an lmms-eval results file (*{RESULTS_SUFFIX})")
    stamp = path.name[: -len(RESULTS_SUFFIX)]
    return path.with_name(stamp + STATS_SUFFIX), path.with_name(stamp + SUMMARY_SUFFIX)


class StatsWriter:
    """Appends one JSON line per sample to this rank's file of this evaluation.

    The file is created on the first record; later opens (a second ``generate_until`` call after `close`)
    append. A failed write never raises: it is noted in `problems` (once) and the record is kept in memory.
    """

    def __init__(self, directory: str | os.PathLike | None, rank: int, evaluation: Evaluation) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.rank = rank
        self.evaluation = evaluation
        self.records: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self._fh: IO[str] | None = None

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / self.evaluation.rank_file_name(self.rank)

    def write(self, record: Mapping[str, Any]) -> None:
        record = {**dict.fromkeys(RECORD_KEYS), **record}
        self.records.append(record)
        if self.directory is None or self.problems:
            return
        try:
            if self._fh is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across samples
            self._fh.write(json.dumps(record, default=_jsonable) + "\n")
            self._fh.flush()
        except OSError as exc:
            self.problems.append(f"rank {self.rank} could not write {self.path}: {exc}")
            from loguru import logger

            logger.warning(f"[holitom] statistics: {self.problems[-1]} (later samples are not written)")

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as exc:
                self.problems.append(f"rank {self.rank} could not close {self.path}: {exc}")
            self._fh = None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _read_rank_file(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    """The sample lines of one rank file; unreadable files and lines are skipped and named in ``problems``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name} is unreadable: {exc}")
        return []
    records, bad = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(number)
    if bad:
        problems.append(f"{path.name}: {len(bad)} corrupt line(s) skipped (line {', '.join(map(str, bad[:5]))}"
                        + (", ..." if len(bad) > 5 else "") + ")")
    return records


def _sort_key(record: Mapping[str, Any]) -> tuple:
    doc_id = record.get("doc_id")
    return (str(record.get("task")), 0 if isinstance(doc_id, int) else 1, doc_id if isinstance(doc_id, int) else 0,
            str(doc_id))


def merge_rank_files(directory: str | os.PathLike, evaluation: Evaluation, world_size: int = 1) \
        -> tuple[list[dict[str, Any]], list[str]]:
    """Merge the rank files ``0..world_size-1`` of ``evaluation`` into ``<stamp>_holitom_stats.jsonl``
    (atomically); return (the merged records, the problems met: corrupt lines, unreadable files).

    A missing rank file is a rank that had no sample. Duplicates of one (task, split, doc_id) — which only
    arise if a rank processed a document twice — keep the first.
    """
    directory = Path(directory)
    problems: list[str] = []
    seen: set[tuple] = set()
    merged: list[dict[str, Any]] = []
    for rank in range(world_size):
        path = directory / evaluation.rank_file_name(rank)
        if not path.exists():
            continue
        for record in _read_rank_file(path, problems):
            key = (record.get("task"), record.get("split"), record.get("doc_id"))
            if key in seen:
                continue
            seen.add(key)
            merged.append(record)
    merged.sort(key=_sort_key)
    text = "".join(json.dumps(record, default=_jsonable) + "\n" for record in merged)
    write_text_atomic(directory / evaluation.merged_name, text)
    return merged, problems


def _mean(values: Iterable[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    nums = [v for v in nums if math.isfinite(v)]
    return sum(nums) / len(nums) if nums else None


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-task means over the samples without error (counts include the failed ones)."""
    by_task: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        by_task[str(record.get("task"))].append(record)
    summary: dict[str, dict[str, Any]] = {}
    for task in sorted(by_task):
        rows = by_task[task]
        failed = [r for r in rows if r.get("error")]
        images = [r for r in rows if not r.get("error") and r.get("modality") == "image"]
        ok = [r for r in rows if not r.get("error") and r.get("modality", "video") == "video"]
        timings = [r.get("timings_ms") or {} for r in ok]
        summary[task] = {
            "samples": len(rows),
            "errors": len(failed),
            "error_doc_ids": [r.get("doc_id") for r in failed],
            "error_videos": [r.get("video") for r in failed],
            "video_samples": len(ok),
            "image_samples": len(images),
            "text_samples": sum(1 for r in rows if not r.get("error") and r.get("modality") == "text"),
            "comparable": not failed,
            "method": next((r.get("method") for r in rows if r.get("method")), None),
            "mean_frames": _mean(r.get("frames") for r in ok),
            "mean_dense_tokens": _mean(r.get("dense_tokens") for r in ok),
            "mean_outer_tokens": _mean(r.get("outer_tokens") for r in ok),
            "mean_inner_tokens": _mean(r.get("inner_tokens") for r in ok),
            "mean_segments": _mean(r.get("segments") for r in ok),
            "mean_tflops_dense": _mean(r.get("tflops_dense") for r in ok),
            "mean_tflops": _mean(r.get("tflops") for r in ok),
            "mean_prefill_ms": _mean(t.get("prefill") for t in timings),
            "mean_ttft_ms": _mean(t.get("ttft") for t in timings),
            "mean_decode_video_ms": _mean(t.get("decode_video") for t in timings),
            "mean_image_tokens": _mean(r.get("image_tokens") for r in images),
            "mean_image_tflops": _mean(r.get("tflops") for r in images),
        }
    return summary


def write_summary(directory: str | os.PathLike, evaluation: Evaluation, summary: Mapping[str, Any],
                  problems: Sequence[str] = ()) -> Path:
    """Write ``<stamp>_holitom_summary.json`` atomically: ``summary``, plus ``_problems`` when there are any."""
    path = Path(directory) / evaluation.summary_name
    data = {**summary, PROBLEMS_KEY: list(problems)} if problems else dict(summary)
    write_text_atomic(path, json.dumps(data, indent=2, default=_jsonable) + "\n")
    return path


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_summary(task: str, s: Mapping[str, Any]) -> str:
    """One log line for a task's summary."""
    line = (
        f"[holitom] {task}: {s['samples']} samples, {s['errors']} video errors, method={s.get('method')}; "
        f"visual tokens/sample dense {_fmt(s['mean_dense_tokens'], '.1f')} -> outer "
        f"{_fmt(s['mean_outer_tokens'], '.1f')} -> inner {_fmt(s['mean_inner_tokens'], '.1f')}; "
        f"LLM TFLOPs dense {_fmt(s['mean_tflops_dense'], '.4g')} -> {_fmt(s['mean_tflops'], '.4g')}; "
        f"prefill {_fmt(s['mean_prefill_ms'], '.1f')} ms, TTFT {_fmt(s['mean_ttft_ms'], '.1f')} ms"
    )
    if s.get("image_samples"):
        line += (f"; {s['image_samples']} image samples (not compressed, outside the video means: "
                 f"{_fmt(s.get('mean_image_tokens'), '.1f')} image tokens)")
    if s["errors"]:
        line += f"; failed doc ids: {s['error_doc_ids']} (score not comparable: see docs/lmms_eval.md)"
    return line


# ------------------------------------------------------------------------------ output folder discovery
#: lmms-eval's keys naming a model in --model_args, in the order its results folder name takes them
_MODEL_NAME_KEYS = ("peft", "delta", "pretrained", "model", "model_version", "model_name", "model_id", "path", "engine")


def results_subdir(model_args: str | Mapping[str, Any] | None) -> str:
    """The subfolder of ``--output_path`` where lmms-eval 0.7.3 writes an evaluation's results: the value of the
    first of ``peft=``, ``delta=``, ``pretrained=``, ``model=``, ... in the model args, its last two path parts,
    sanitised by lmms-eval's public ``lmms_eval.utils.sanitize_model_name`` (``lmms-lab/llava-onevision-qwen2-7b-ov``
    -> ``lmms-lab__llava-onevision-qwen2-7b-ov``; ``tiny`` -> ``tiny``)."""
    from lmms_eval.utils import sanitize_model_name

    if isinstance(model_args, Mapping):
        model_args = ",".join(f"{k}={v}" for k, v in model_args.items())
    text = str(model_args or "")
    for key in _MODEL_NAME_KEYS:
        if f"{key}=" in text:
            return sanitize_model_name(text.split(f"{key}=")[1].split(",")[0])
    return sanitize_model_name("")


def discover_output_dir(argv: Sequence[str] | None = None) -> Path | None:
    """lmms-eval's results folder of the command that started this process: ``<--output_path>/<results_subdir>``.

    The route is lmms-eval's own command line (``python -m lmms_eval``, ``accelerate launch -m lmms_eval``,
    ``torchrun -m lmms_eval``, and every process they start, keep ``--output_path`` and ``--model_args`` in
    ``sys.argv``). Returns None without ``--output_path`` (lmms-eval then writes no files either) — e.g. under
    ``lmms_eval.evaluator.simple_evaluate`` called from Python, where the model arg ``stats_path`` says where the
    records go.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--output_path", default=None)
    parser.add_argument("--model_args", default="")
    known, _ = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if not known.output_path:
        return None
    return Path(known.output_path) / results_subdir(known.model_args)
