"""The per-sample recorder of an lmms-eval model: one record per sample, then the per-task summary.

Records have every key of `lmms_holitom.integrations.lmms_eval.records.RECORD_KEYS`; the files are written by `records`,
named after the evaluation (lmms-eval's date stamp, shared by every rank). Statistics never cost lmms-eval its
results: whatever goes wrong with them is logged in one line and noted in the summary, never raised.
Video samples record what the model reports it fed the LLM (``model.holitom_stats``); image samples record
their image tokens and those tokens' TFLOPs (nothing is compressed), with the video fields null.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from lmms_holitom.integrations.lmms_eval.records import (
    Evaluation,
    StatsWriter,
    format_summary,
    merge_rank_files,
    new_evaluation,
    summarize,
    write_summary,
)

__all__ = ["SampleRecorder", "shared_evaluation", "visual_tflops"]


def visual_tflops(text_config: Any, outer: int | None, inner: int | None, merge_layer: int | None) -> float | None:
    """Paper-convention LLM TFLOPs of the visual tokens: layers < K see ``outer``, layers >= K ``inner``; each layer
    costed by its kind and MLP (`flops.decoder_flops`: Gated DeltaNet layers, MoE experts)."""
    if outer is None:
        return None
    from lmms_holitom.flops import ModelShape, decoder_fields, decoder_flops

    shape = ModelShape(name="model", **decoder_fields(text_config))
    inner = outer if inner is None else inner
    if merge_layer is None or inner == outer or not 0 < int(merge_layer) < shape.layers:
        return decoder_flops(shape, int(outer)) / 1e12
    return decoder_flops(shape, int(outer), merge_layer=int(merge_layer), late_tokens=int(inner)) / 1e12


def _ms(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 3) for k, v in timings.items()}


def shared_evaluation(world_size: int) -> Evaluation:
    """Rank 0's `Evaluation` on every rank (each rank's lmms-eval computes its own stamp, and only rank 0's names
    the results file): broadcast over the process group when there are several processes."""
    evaluation = new_evaluation()
    if world_size > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            box: list[Any] = [evaluation]
            dist.broadcast_object_list(box, src=0)
            evaluation = box[0]
        else:
            logger.warning("[holitom] several processes but no process group: rank 0 merges its own statistics only")
    return evaluation


class SampleRecorder:
    """Builds and writes the records of one rank; rank 0 merges and summarises after each call."""

    def __init__(self, directory: Path | None, rank: int, world_size: int, text_config: Any,
                 image_token_id: int | None) -> None:
        self.directory = directory
        self.rank = rank
        self.world_size = world_size
        self.text_config = text_config
        self.image_token_id = image_token_id
        self.evaluation = shared_evaluation(world_size)
        self.writer = StatsWriter(directory, rank, self.evaluation)

    def failed(self, base: dict[str, Any], video: str | None, error: str) -> None:
        self.writer.write({**base, "video": video, "error": error})

    def video(self, base: dict[str, Any], model_stats: Any, timings: dict[str, float], new_tokens: int) -> None:
        stats = dict(model_stats.to_dict() if hasattr(model_stats, "to_dict") else (model_stats or {}))
        model_timings = stats.pop("timings_ms", {}) or {}
        dense = stats.get("dense_tokens")
        outer = stats.get("outer_tokens", dense)
        inner = stats.get("inner_tokens", outer)
        merge_layer = stats.get("merge_layer")
        keys = ("frames", "tokens_per_frame", "segments", "static_tokens", "prompt_tokens_dense", "prompt_tokens")
        self.writer.write({
            **base, **{k: stats.get(k) for k in keys},
            "method": stats.get("method", base.get("method")),
            "dense_tokens": dense, "outer_tokens": outer, "inner_tokens": inner, "merge_layer": merge_layer,
            "new_tokens": int(new_tokens),
            "tflops_dense": visual_tflops(self.text_config, dense, dense, None),
            "tflops": visual_tflops(self.text_config, outer, inner, merge_layer),
            "timings_ms": {**_ms(model_timings), **_ms(timings)}, "error": None,
        })

    def image(self, base: dict[str, Any], input_ids: Any, timings: dict[str, float], new_tokens: int) -> None:
        """An image or text-only sample: its image tokens (uncompressed) and their TFLOPs."""
        count = int((input_ids == self.image_token_id).sum()) if self.image_token_id is not None else None
        flops = visual_tflops(self.text_config, count, count, None) if count else None
        self.writer.write({**base, "image_tokens": count, "prompt_tokens": int(input_ids.shape[-1]),
                           "new_tokens": int(new_tokens), "tflops_dense": flops, "tflops": flops,
                           "timings_ms": _ms(timings), "error": None})

    def finish(self, barrier: Callable[[], None]) -> None:
        """After all requests of a call: close the rank file; rank 0 merges, summarises and logs. Never raises
        for the statistics (a failure is one warning line, and noted in the summary when it can be written)."""
        self.writer.close()
        if self.world_size > 1:
            barrier()
        if self.rank != 0:
            return
        try:
            self._summarize()
        except Exception as exc:  # any error: the statistics must never cost lmms-eval its results
            problem = f"statistics not merged: {type(exc).__name__}: {exc}"
            logger.warning(f"[holitom] {problem} (lmms-eval's results are not affected)")
            self._note_problem(problem)

    def _summarize(self) -> None:
        directory = self.directory
        problems = list(self.writer.problems)
        if directory is not None and directory.is_dir():
            records, read_problems = merge_rank_files(directory, self.evaluation, self.world_size)
            problems += read_problems
        else:
            records = list(self.writer.records)
            if self.world_size > 1:
                logger.warning("[holitom] no stats folder: the summary covers rank 0's samples only")
        if not records and not problems:
            return
        summary = summarize(records)
        if directory is not None and directory.is_dir():
            path = write_summary(directory, self.evaluation, summary, problems)
            if problems:
                logger.warning(f"[holitom] statistics incomplete ({path.name}): {'; '.join(problems)}")
        for task, task_summary in summary.items():
            (logger.warning if task_summary["errors"] else logger.info)(format_summary(task, task_summary))

    def _note_problem(self, problem: str) -> None:
        """Best effort: a summary that says the statistics are unusable (readers then flag the run)."""
        if self.directory is None:
            return
        try:
            write_summary(self.directory, self.evaluation, {}, [problem])
        except Exception as exc:  # any error: same reason as in `finish`
            logger.warning(f"[holitom] statistics summary not written either: {type(exc).__name__}: {exc}")
