"""Per-sample compression statistics of an lmms-eval run: JSONL per rank, merged file, per-task summary.

Files (`docs/CONTRACTS.md`), all in one folder — by default lmms-eval's own results folder
``<output_path>/<model subdir>/``:

* ``holitom_stats.rank{R}.jsonl`` — written by rank R while it runs, one line per sample, flushed per line;
* ``holitom_stats.jsonl`` — rank 0 merges the rank files at the end (sorted by task, doc id);
* ``holitom_summary.json`` — ``{task: {samples, errors, mean_outer_tokens, mean_inner_tokens,
  mean_dense_tokens, mean_tflops, mean_tflops_dense, mean_prefill_ms, mean_ttft_ms, ...}}``.

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
import json
import math
import os
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "MERGED_NAME",
    "RECORD_KEYS",
    "SUMMARY_NAME",
    "StatsWriter",
    "discover_output_dir",
    "format_summary",
    "merge_rank_files",
    "rank_file_name",
    "read_jsonl",
    "summarize",
    "write_summary",
]

MERGED_NAME = "holitom_stats.jsonl"
SUMMARY_NAME = "holitom_summary.json"
#: The keys of every sample line, in order (failed samples: measurements null).
RECORD_KEYS: tuple[str, ...] = (
    "doc_id", "task", "split", "rank", "method", "modality", "video", "frames", "tokens_per_frame",
    "dense_tokens", "outer_tokens", "inner_tokens", "merge_layer", "segments", "static_tokens", "image_tokens",
    "prompt_tokens_dense", "prompt_tokens", "new_tokens", "tflops_dense", "tflops", "timings_ms", "error", "settings",
)
_RANK_RE = re.compile(r"^holitom_stats\.rank(\d+)\.jsonl$")


def rank_file_name(rank: int) -> str:
    return f"holitom_stats.rank{rank}.jsonl"


class StatsWriter:
    """Appends one JSON line per sample to this rank's file.

    The file is truncated once, on this writer's first record (a new run in the same folder replaces the
    old file); later opens (a second ``generate_until`` call after `close`) append.
    """

    def __init__(self, directory: str | os.PathLike | None, rank: int) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.rank = rank
        self.records: list[dict[str, Any]] = []
        self._fh: IO[str] | None = None
        self._opened = False

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / rank_file_name(self.rank)

    def write(self, record: Mapping[str, Any]) -> None:
        record = {**dict.fromkeys(RECORD_KEYS), **record}
        self.records.append(record)
        if self.directory is None:
            return
        if self._fh is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            mode = "a" if self._opened else "w"
            self._fh = open(self.path, mode, encoding="utf-8")  # noqa: SIM115 - kept open across samples
            self._opened = True
        self._fh.write(json.dumps(record, default=_jsonable) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _sort_key(record: Mapping[str, Any]) -> tuple:
    doc_id = record.get("doc_id")
    return (str(record.get("task")), 0 if isinstance(doc_id, int) else 1, doc_id if isinstance(doc_id, int) else 0,
            str(doc_id))


def merge_rank_files(directory: str | os.PathLike, world_size: int | None = None) -> list[dict[str, Any]]:
    """Merge ``holitom_stats.rank*.jsonl`` into ``holitom_stats.jsonl``; return the merged records.

    Duplicates of one (task, split, doc_id) — which only arise if a rank processed a document twice — keep
    the first. ``world_size`` limits the merge to ranks ``0..world_size-1`` (stale files of a wider earlier
    run in the same folder are ignored).
    """
    directory = Path(directory)
    files = []
    for path in directory.iterdir():
        match = _RANK_RE.match(path.name)
        if match and (world_size is None or int(match.group(1)) < world_size):
            files.append((int(match.group(1)), path))
    seen: set[tuple] = set()
    merged: list[dict[str, Any]] = []
    for _, path in sorted(files):
        for record in read_jsonl(path):
            key = (record.get("task"), record.get("split"), record.get("doc_id"))
            if key in seen:
                continue
            seen.add(key)
            merged.append(record)
    merged.sort(key=_sort_key)
    tmp = directory / (MERGED_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in merged:
            fh.write(json.dumps(record, default=_jsonable) + "\n")
    os.replace(tmp, directory / MERGED_NAME)
    return merged


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


def write_summary(directory: str | os.PathLike, summary: Mapping[str, Any]) -> Path:
    path = Path(directory) / SUMMARY_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    os.replace(tmp, path)
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
