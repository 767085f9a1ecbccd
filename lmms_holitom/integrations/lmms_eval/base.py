"""`HoliTomLmms`: what every transformers lmms-eval model of this plugin shares — settings, placement, loading, the
request loop, failed videos, statistics (the interface properties it shares with ``vllm_holitom``: `interface`). A
family is a thin subclass (`llava` for LLaVA, `qwen` for Qwen2.5-VL / Qwen3-VL) that says which model class,
processor, visuals and prompt it uses.

Over 300 lines on purpose: lmms-eval's model interface (setup, request loop, failures, records) is one class.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import torch
from loguru import logger
from tqdm import tqdm

from lmms_holitom.config import METHODS, HoliTomConfig
from lmms_holitom.integrations.lmms_eval.interface import LmmsInterface
from lmms_holitom.integrations.lmms_eval.prompts import generation_kwargs
from lmms_holitom.integrations.lmms_eval.recorder import SampleRecorder
from lmms_holitom.integrations.lmms_eval.records import discover_output_dir
from lmms_holitom.integrations.lmms_eval.runtime import (
    FirstTokenClock,
    barrier,
    lost_processes,
    placement,
    process_layout,
)
from lmms_holitom.integrations.lmms_eval.settings import (
    none_if_empty,
    original_env_set,
    parse_bool,
    parse_int,
    parse_on_video_error,
    resolve_holitom_config,
)
from lmms_holitom.integrations.lmms_eval.visuals import FAILED_ANSWER, VisualError, Visuals, call_doc_to_visual
from lmms_holitom.values import MAX_TOKENS, resolve_dtype
from lmms_holitom.video import VideoDecodeError

__all__ = ["COMMON_MODEL_ARGS", "HoliTomLmms"]

#: Model args every family takes (name -> default); a family adds its own in ``FAMILY_ARGS``.
COMMON_MODEL_ARGS: dict[str, Any] = {
    "attn_implementation": "sdpa",
    "device": None,
    "device_map": None,
    "dtype": "auto",
    "batch_size": 1,
    "max_new_tokens": 1024,
    "on_video_error": "record",
    "stats_path": None,
    "use_cache": True,
}


class HoliTomLmms(LmmsInterface):
    """The shared lmms-eval model (batch size 1, video QA). Subclasses set `MODEL_ID`, `FAMILY_ARGS` and implement
    `_family_setup`, `_model_class`, `_load_processor`, `_load_visuals` and `_inputs`.

    Settings resolution: every model arg is validated at load time (one-line errors naming the parameter); the
    `HoliTomConfig` fields and the authors' environment variables combine as `settings.resolve_holitom_config`
    says; any other model arg raises a ValueError listing the valid ones.
    """

    MODEL_ID: ClassVar[str] = "holitom"
    FAMILY_ARGS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def model_args(cls) -> dict[str, Any]:
        """Every model arg besides the HoliTomConfig fields (name -> default)."""
        return {**cls.FAMILY_ARGS, **COMMON_MODEL_ARGS}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        defaults = self.model_args()
        holitom_fields = set(HoliTomConfig.field_names())
        unknown = sorted(set(kwargs) - set(defaults) - holitom_fields)
        if unknown:
            raise ValueError(
                f"{self.MODEL_ID}: unknown model_args {', '.join(unknown)}. Valid: {', '.join(defaults)}; "
                f"HoliTom: {', '.join(HoliTomConfig.field_names())}"
            )
        args = {**defaults, **{k: v for k, v in kwargs.items() if k in defaults}}
        holitom_args = {k: v for k, v in kwargs.items() if k in holitom_fields}
        self._check_common_args(args)
        self._family_setup(args)

        from accelerate import Accelerator, InitProcessGroupKwargs

        self.accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))])
        self._rank, self._world_size, local_rank = process_layout(self.accelerator)
        self.holitom_config, source = resolve_holitom_config(holitom_args)
        self.pretrained = str(args["pretrained"])
        self.max_new_tokens = parse_int("max_new_tokens", args["max_new_tokens"], 1, MAX_TOKENS)
        self.on_video_error = parse_on_video_error(args["on_video_error"])
        self.batch_size_per_gpu = 1
        self._device, load_map = placement(
            self._world_size, local_rank, none_if_empty(args["device"]), none_if_empty(args["device_map"])
        )
        dtype = resolve_dtype(args["dtype"], self._device)
        self._load(args, dtype, load_map, holitom_args)
        self._stats_dir = Path(args["stats_path"]) if none_if_empty(args["stats_path"]) else discover_output_dir()
        config = self._config
        image_id = getattr(config, "image_token_id", None)
        self._recorder = SampleRecorder(self._stats_dir, self.rank, self._world_size, config.get_text_config(),
                                        getattr(config, "image_token_index", None) if image_id is None else image_id)
        self._warned: set[str] = set()
        if self.rank == 0:
            self._log_setup(dtype, load_map, source)

    def _load(self, args: dict[str, Any], dtype: torch.dtype, load_map: Any, holitom_args: dict[str, Any]) -> None:
        from lmms_holitom.testing import resolve_pretrained

        self.checkpoint = resolve_pretrained(self.pretrained)
        self.processor = self._load_processor(self.checkpoint)
        self._tokenizer = self.processor.tokenizer
        hf_kwargs: dict[str, Any] = {"dtype": dtype, **self._hf_kwargs(args)}
        if args["attn_implementation"]:
            hf_kwargs["attn_implementation"] = str(args["attn_implementation"])
        if load_map is not None:
            hf_kwargs["device_map"] = load_map
        model = self._model_class().from_pretrained(self.checkpoint, **hf_kwargs)
        model.eval()
        if load_map is None:
            model.to(self._device)
        elif load_map == "auto":
            self._device = model.device  # inputs go where the embeddings are
        self._model = model
        self._config = model.config
        # validated against the model; a default merge layer it cannot take moves to its own (HoliTomModelMixin)
        self.holitom_config = model.set_holitom(self.holitom_config)

    def _log_setup(self, dtype: torch.dtype, load_map: Any, source: str) -> None:
        mode = (
            f"{self._world_size} processes (data parallel, one copy each)"
            if self._world_size > 1
            else ("one process, device_map=auto" if load_map == "auto" else "single device")
        )
        logger.info(f"[holitom] {self.MODEL_ID}: {self.pretrained} ({self.checkpoint}) on {self._device}, {dtype}, "
                    f"{mode}; {self._describe()}")
        logger.info(f"[holitom] effective HoliTom config (from {source}): {self.holitom_config.to_dict()}")
        lost = lost_processes(os.environ, self._world_size)
        if lost:
            logger.warning(f"[holitom] {lost}")
        ignored = [] if os.environ.get("WRAPPER", "").strip() else original_env_set(os.environ)
        if ignored:
            logger.warning(f"[holitom] ignoring the original environment variables {', '.join(ignored)} "
                           f"because WRAPPER is not set (set WRAPPER={'|'.join(METHODS)} to use them)")
        logger.info(f"[holitom] per-sample stats folder: {self._stats_dir or 'none (no output_path)'}")

    # ------------------------------------------------------------------------------------ family hooks
    def _family_setup(self, args: dict[str, Any]) -> None:
        """Validate and keep the family's own model args."""

    def _hf_kwargs(self, args: dict[str, Any]) -> dict[str, Any]:
        """Family keyword arguments for ``from_pretrained``."""
        return {}

    def _describe(self) -> str:
        return ""

    def _model_class(self) -> type:
        raise NotImplementedError

    def _load_processor(self, checkpoint: str) -> Any:
        raise NotImplementedError

    def _load_visuals(self, visuals: list[Any]) -> Visuals:
        """The sample's visuals; raise `VisualError` for a video that cannot be used."""
        raise NotImplementedError

    def _inputs(self, context: str, visuals: Visuals) -> Any:
        """The processor outputs (a BatchFeature) of one prompt."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ setup
    def _check_common_args(self, args: dict[str, Any]) -> None:
        batch_size = str(args["batch_size"]).strip().lower()
        if batch_size not in {"1", "auto", "auto:1"}:
            raise ValueError(f"{self.MODEL_ID} supports batch_size=1 only, got {args['batch_size']!r}")
        if not parse_bool("use_cache", args["use_cache"]):
            raise ValueError("use_cache=false is not supported (HoliTom's prefill fills the KV cache)")

    # ------------------------------------------------------- lmms-eval interface (the rest: `LmmsInterface`)
    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def model(self):
        return self._model

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return int(getattr(self._config.get_text_config(), "max_position_embeddings", 32768))

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def stats_dir(self) -> Path | None:
        return self._stats_dir

    def tok_encode(self, string: str, left_truncate_len: int | None = None, add_special_tokens=None) -> list[int]:
        encoding = self.tokenizer.encode(string, add_special_tokens=bool(add_special_tokens))
        return encoding[-left_truncate_len:] if left_truncate_len else encoding

    def tok_decode(self, tokens) -> str:
        return self.tokenizer.decode(tokens)

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        raise NotImplementedError(
            f"{self.MODEL_ID} does not implement loglikelihood: HoliTom compresses the prompt during prefill, which "
            "has no faithful continuation-scoring counterpart, and the paper's benchmarks are all generate_until "
            "tasks. Use a generate_until task, or lmms-eval's own model of this family for loglikelihood tasks."
        )

    # ------------------------------------------------------------------------------------- generation
    def generate_until(self, requests) -> list[str]:
        answers: list[str] = []
        pbar = tqdm(total=len(requests), disable=(self.rank != 0), desc="Model Responding")
        try:
            for request in requests:
                if (request.metadata or {}).get("__padding_only__"):
                    answers.append("")  # lmms-eval's rank padding: result discarded, nothing to compute
                else:
                    answers.append(self._answer(*request.args))
                pbar.update(1)
        finally:
            pbar.close()
        self._recorder.finish(lambda: barrier(self.accelerator))
        return answers

    def _answer(self, context: str, gen_kwargs: dict, doc_to_visual, doc_id, task: str, split: str) -> str:
        base = {"doc_id": doc_id, "task": task, "split": split, "rank": self.rank,
                "method": self.holitom_config.method, "settings": self.holitom_config.to_dict()}
        try:
            doc = self.task_dict[task][split][doc_id]
            visuals = self._load_visuals(call_doc_to_visual(doc_to_visual, doc))
        except VisualError as exc:
            return self._failed(base, exc)
        if visuals.images:
            self._warn_once("images", f"[holitom] {task}: image inputs go through the model unchanged "
                            "(HoliTom compresses videos only; images are recorded apart from the video statistics)")
        return self._generate(base, context, gen_kwargs, visuals)

    def _failed(self, base: dict[str, Any], exc: VisualError) -> str:
        """A sample whose visuals failed: `FAILED_ANSWER`, one record naming the file (or stop, ``fail``)."""
        if self.on_video_error == "fail":
            if isinstance(exc.__cause__, VideoDecodeError):
                raise exc.__cause__
            raise exc
        logger.error(f"[holitom] {base['task']} doc {base['doc_id']}: {exc} -> answered {FAILED_ANSWER!r} and "
                     "counted as a video error")
        self._recorder.failed(base, exc.video, str(exc))
        return FAILED_ANSWER

    def _generate(self, base: dict[str, Any], context: str, gen_kwargs: dict, visuals: Visuals) -> str:
        timings: dict[str, float] = {}
        if visuals.decode_ms is not None:
            timings["decode_video"] = visuals.decode_ms
        t0 = time.perf_counter()
        inputs = self._inputs(context, visuals).to(self._device)
        for key in ("pixel_values_videos", "pixel_values"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.model.dtype)
        timings["preprocess"] = (time.perf_counter() - t0) * 1000.0

        clock = FirstTokenClock(self._device)
        kwargs = generation_kwargs(gen_kwargs, self.max_new_tokens, self.tokenizer.pad_token_id, self.eot_token_id)
        from transformers import LogitsProcessorList

        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**inputs, logits_processor=LogitsProcessorList([clock]), **kwargs)
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        t1 = time.perf_counter()
        timings["generate"] = (t1 - t0) * 1000.0
        timings["ttft"] = ((clock.t_first or t1) - t0) * 1000.0
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        base = {**base, "modality": visuals.modality, "video": visuals.video_path}
        if visuals.modality == "video":
            self._recorder.video(base, getattr(self.model, "holitom_stats", None), timings, len(new_tokens))
        else:
            self._recorder.image(base, inputs["input_ids"], timings, len(new_tokens))
        return text

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned and self.rank == 0:
            self._warned.add(key)
            logger.warning(message)
