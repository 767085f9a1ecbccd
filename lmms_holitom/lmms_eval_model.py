"""The lmms-eval model ``llava_onevision_holitom``: LLaVA-OneVision (transformers) with HoliTom token merging.

Usage::

    python -m lmms_eval --model llava_onevision_holitom \\
        --model_args pretrained=lmms-lab/llava-onevision-qwen2-7b-ov,method=holitom,retain_ratio=0.15,tau=0.8 \\
        --tasks videomme --output_path runs/ --log_samples
    accelerate launch --num_processes 8 -m lmms_eval --model llava_onevision_holitom ...   # one copy per GPU

See `LlavaOneVisionHoliTom` for every model argument and how the authors' environment variables combine
with them.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lmms_eval.api.model import lmms
from loguru import logger
from tqdm import tqdm

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.lmms_eval.prompts import CONV_TEMPLATES, build_prompt, generation_kwargs
from lmms_holitom.lmms_eval.recorder import SampleRecorder
from lmms_holitom.lmms_eval.runtime import FirstTokenClock, barrier, placement, process_layout, resolve_dtype
from lmms_holitom.lmms_eval.settings import (
    ORIGINAL_ENV_VARS,
    none_if_empty,
    original_env_set,
    parse_bool,
    parse_choice,
    parse_int,
    parse_layout_args,
    parse_on_video_error,
    resolve_holitom_config,
)
from lmms_holitom.lmms_eval.visuals import FAILED_ANSWER, VisualError, Visuals, call_doc_to_visual, load_visuals
from lmms_holitom.stats import (
    discover_output_dir,
)
from lmms_holitom.video import VideoDecodeError, check_backend

__all__ = ["MODEL_ARGS", "LlavaOneVisionHoliTom", "ORIGINAL_ENV_VARS", "resolve_holitom_config"]



#: Model args besides the HoliTomConfig fields (name -> default), see the class docstring.
MODEL_ARGS: dict[str, Any] = {
    "pretrained": "lmms-lab/llava-onevision-qwen2-7b-ov",
    "conv_template": "qwen_1_5",
    "max_frames_num": 32,
    "attn_implementation": "sdpa",
    "device": None,
    "device_map": None,
    "dtype": "auto",
    "batch_size": 1,
    "max_batch_size": None,
    "video_decode_backend": "pyav",
    "max_new_tokens": 1024,
    "on_video_error": "record",
    "stats_path": None,
    # accepted for command-line compatibility with lmms-eval's `llava_onevision`; only its defaults work
    "model_name": None,
    # video layout, passed to from_pretrained only when given (the checkpoint's own otherwise)
    "mm_spatial_pool_stride": None,
    "mm_spatial_pool_mode": None,
    "mm_newline_position": None,
    "token_strategy": "single",
    "use_cache": True,
    "truncation": True,
    "truncate_context": False,
}


def _model_class():
    """The HoliTom model class (imported on use; ``method=dense`` runs through it as well)."""
    from lmms_holitom.models import HoliTomLlavaOnevisionForConditionalGeneration

    return HoliTomLlavaOnevisionForConditionalGeneration


def _load_processor(name: str):
    """The processor of a checkpoint: `lmms_holitom.models.processing.load_processor` (either checkpoint
    format) when the model layer has it, else transformers' ``AutoProcessor``."""
    from lmms_holitom.tiny import resolve_pretrained

    path = resolve_pretrained(name)
    try:
        from lmms_holitom.models.processing import load_processor
    except ImportError:
        from transformers import AutoProcessor

        try:
            from lmms_holitom.models.names import resolve_model_name
        except ImportError:
            return AutoProcessor.from_pretrained(path)
        return AutoProcessor.from_pretrained(resolve_model_name(path))
    return load_processor(path)


class LlavaOneVisionHoliTom(lmms):
    """LLaVA-OneVision with HoliTom (``--model llava_onevision_holitom``), batch size 1, video QA.

    Model args (``--model_args k=v,...``):

    * ``pretrained`` (``lmms-lab/llava-onevision-qwen2-7b-ov``): an lmms-lab name (loaded as its
      ``llava-hf`` twin), a transformers checkpoint, a local folder, or ``tiny`` (the built-in offline
      test model).
    * ``conv_template`` (``qwen_1_5``): ``qwen_1_5`` builds the prompt exactly like lmms-eval's
      ``llava_onevision`` (system "You are a helpful assistant.", one video placeholder before the
      question); ``chat_template`` or ``none`` use the processor's own chat template.
    * ``max_frames_num`` (32): frames sampled uniformly, ``linspace(0, n-1, max_frames_num)`` (frames repeat
      when the video is shorter, as in lmms-eval's class; see `lmms_holitom.video`).
    * ``video_decode_backend`` (``pyav``): or ``decord`` (must be installed).
    * ``attn_implementation`` (``sdpa``), ``dtype`` (``auto``: bfloat16 on CUDA, float32 on CPU; or
      float32/bfloat16/float16), ``device`` (default ``cuda`` when available, else ``cpu``), ``device_map``
      (``auto`` splits one copy over all GPUs of a single process, e.g. 72B; with several processes each
      loads one copy on its own device, like lmms-eval's class).
    * ``batch_size`` (1; nothing else is supported), ``max_new_tokens`` (1024; used when the task's
      ``generation_kwargs`` do not set it).
    * ``on_video_error`` (``record``): a sample whose video is missing or cannot be decoded — whatever the
      task's ``doc_to_visual`` raises, ``SystemExit`` included — is answered with ``FAILED_ANSWER``
      (``"[video error]"``), counted, and recorded with its error and file in the stats files and the
      end-of-run summary — never answered from the text alone; ``fail`` (alias ``raise``) stops at the first.
    * ``stats_path``: folder of the statistics files (`lmms_holitom.stats`); default: lmms-eval's results
      folder ``<output_path>/<model subdir>`` of this evaluation, found on the call stack; without either,
      no files are written (the summary is still logged).
    * Every `HoliTomConfig` field: ``method`` (``holitom``), ``retain_ratio``, ``tau``, ``merge_layer``,
      ``merge_ratio``, ``beta``, ``contextual_ratio``, ``knn_k``, ``max_window_size``, ``beta_merge``,
      ``fidelity``, ``spatial_tokens``, ``dominant_ratio``.
    * Video layout, passed to ``from_pretrained`` only when given (the checkpoint's own otherwise), validated
      at load time: ``mm_spatial_pool_mode``, ``mm_spatial_pool_stride``, ``mm_newline_position``.
    * Accepted for compatibility with lmms-eval's ``llava_onevision`` command lines, effective only at their
      defaults: ``model_name`` (ignored), ``token_strategy=single``, ``use_cache=true``,
      ``truncation``/``truncate_context`` (no effect).

    Any other model arg raises a ValueError listing the valid ones.

    The authors' environment variables (``WRAPPER``, ``RETAIN_RATIO``, ``T``, ``HOLITOM_k``, ``HOLITOM_r``,
    ``BETA``, ``D``, ``K``, ``MAX_WINDOW_SIZE``, ``NO_BETA``, ``FASTV_k``, ``FASTV_r``, ...) still work, with
    ``WRAPPER`` as the switch (see `resolve_holitom_config`):

    * ``WRAPPER`` unset: model args + defaults define the config (default method ``holitom``); the other
      original variables are ignored, with a warning naming them;
    * ``WRAPPER`` set, no HoliTom model arg: exactly `HoliTomConfig.from_env` — the original scripts run
      unchanged (e.g. ``WRAPPER=holitom`` without ``HOLITOM_k``/``HOLITOM_r`` is HoliTom w/o M);
    * ``WRAPPER`` set and HoliTom model args: the env vars are the base and each model arg wins, field by
      field (``method=`` wins over ``WRAPPER``).

    The effective configuration and where it came from are logged once (rank 0).
    """

    is_simple = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        holitom_fields = set(HoliTomConfig.field_names())
        unknown = sorted(set(kwargs) - set(MODEL_ARGS) - holitom_fields)
        if unknown:
            raise ValueError(
                f"llava_onevision_holitom: unknown model_args {', '.join(unknown)}. Valid: "
                f"{', '.join(MODEL_ARGS)}; HoliTom: {', '.join(HoliTomConfig.field_names())}"
            )
        args = {**MODEL_ARGS, **{k: v for k, v in kwargs.items() if k in MODEL_ARGS}}
        holitom_args = {k: v for k, v in kwargs.items() if k in holitom_fields}
        self._check_compat_args(args)

        from accelerate import Accelerator, InitProcessGroupKwargs

        accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))])
        self.accelerator = accelerator
        self._rank, self._world_size, local_rank = process_layout(accelerator)

        self.holitom_config, source = resolve_holitom_config(holitom_args)
        self.pretrained = str(args["pretrained"])
        self.conv_template = str(args["conv_template"]).strip().lower()
        if self.conv_template not in CONV_TEMPLATES:
            raise ValueError(f"conv_template must be one of {', '.join(CONV_TEMPLATES)}, got {self.conv_template!r}")
        self.max_frames_num = parse_int("max_frames_num", args["max_frames_num"], 1, 4096)
        self.video_decode_backend = check_backend(args["video_decode_backend"])
        self.max_new_tokens = parse_int("max_new_tokens", args["max_new_tokens"], 1, 1_000_000)
        self.on_video_error = parse_on_video_error(args["on_video_error"])
        layout_kwargs = parse_layout_args(args)
        batch_size = str(args["batch_size"]).strip().lower()
        if batch_size not in {"1", "auto", "auto:1"}:
            raise ValueError(f"llava_onevision_holitom supports batch_size=1 only, got {args['batch_size']!r}")
        self.batch_size_per_gpu = 1

        device_map = none_if_empty(args["device_map"])
        device = none_if_empty(args["device"])
        self._device, load_map = placement(self._world_size, local_rank, device, device_map)
        dtype = resolve_dtype(args["dtype"], self._device)

        from lmms_holitom.tiny import resolve_pretrained

        checkpoint = resolve_pretrained(self.pretrained)
        self.processor = _load_processor(self.pretrained)
        self._tokenizer = self.processor.tokenizer
        hf_kwargs: dict[str, Any] = {"dtype": dtype, **layout_kwargs}
        if args["attn_implementation"]:
            hf_kwargs["attn_implementation"] = str(args["attn_implementation"])
        if load_map is not None:
            hf_kwargs["device_map"] = load_map
        model = _model_class().from_pretrained(checkpoint, **hf_kwargs)
        model.eval()
        if load_map is None:
            model.to(self._device)
        elif load_map == "auto":
            self._device = model.device  # inputs go where the embeddings are
        self._model = model
        self._config = model.config
        self.holitom_config = self._fit_merge_layer(self.holitom_config, holitom_args, model)
        model.set_holitom(self.holitom_config)  # validates against the model (merge_layer < layers)

        self._stats_dir = (
            Path(args["stats_path"]) if none_if_empty(args["stats_path"]) else discover_output_dir()
        )
        image_id = getattr(self._config, "image_token_id", None)
        self._recorder = SampleRecorder(self._stats_dir, self.rank, self._world_size, self._config.text_config,
                                        getattr(self._config, "image_token_index", None) if image_id is None
                                        else image_id)
        self._warned: set[str] = set()

        if self.rank == 0:
            mode = (
                f"{self._world_size} processes (data parallel, one copy each)"
                if self._world_size > 1
                else ("one process, device_map=auto" if load_map == "auto" else "single device")
            )
            logger.info(
                f"[holitom] llava_onevision_holitom: {self.pretrained} ({checkpoint}) on {self._device}, "
                f"{dtype}, {mode}; frames={self.max_frames_num} ({self.video_decode_backend}), "
                f"conv_template={self.conv_template}"
            )
            logger.info(f"[holitom] effective HoliTom config (from {source}): {self.holitom_config.to_dict()}")
            ignored = [] if os.environ.get("WRAPPER", "").strip() else original_env_set(os.environ)
            if ignored:
                logger.warning(f"[holitom] ignoring the original environment variables {', '.join(ignored)} "
                               "because WRAPPER is not set (set WRAPPER=holitom|fastv|visionzip|dense to use them)")
            logger.info(f"[holitom] per-sample stats folder: {self._stats_dir or 'none (no output_path)'}")

    @property
    def on_video_error(self) -> str:
        """``record`` or ``fail``; assigning ``raise`` (the former name) sets ``fail``."""
        return self._on_video_error

    @on_video_error.setter
    def on_video_error(self, value: str) -> None:
        self._on_video_error = parse_on_video_error(value)

    # ------------------------------------------------------------------------------------------ setup
    @staticmethod
    def _fit_merge_layer(cfg: HoliTomConfig, holitom_args: dict[str, Any], model: Any) -> HoliTomConfig:
        """A default ``merge_layer`` (18 of 28) that a shallower model lacks moves to the same relative depth.

        Only when nobody chose it (no ``merge_layer`` model arg, no ``HOLITOM_k``/``FASTV_k``); an explicit
        out-of-range value is an error (raised by ``set_holitom``).
        """
        from_env = os.environ.get("WRAPPER", "").strip() != "" and any(
            os.environ.get(var, "").strip() for var in ("HOLITOM_k", "FASTV_k")
        )
        explicit = "merge_layer" in holitom_args or from_env
        layers = int(model.num_decoder_layers)
        if explicit or cfg.merge_layer is None or cfg.merge_layer < layers:
            return cfg
        fitted = model.holitom.merge_layer  # the model's own depth-scaled default
        logger.info(f"[holitom] default merge_layer {cfg.merge_layer} does not exist in this {layers}-layer "
                    f"decoder; using {fitted} (same relative depth)")
        return cfg.replace(merge_layer=fitted)

    @staticmethod
    def _check_compat_args(args: dict[str, Any]) -> None:
        parse_choice("token_strategy", args["token_strategy"], ("single",))
        parse_bool("truncation", args["truncation"])
        parse_bool("truncate_context", args["truncate_context"])
        if none_if_empty(args["max_batch_size"]) is not None:
            parse_int("max_batch_size", args["max_batch_size"], 1)
        if not parse_bool("use_cache", args["use_cache"]):
            raise ValueError("use_cache=false is not supported (HoliTom's prefill fills the KV cache)")

    # ----------------------------------------------------------------------------- lmms-eval interface
    @property
    def config(self):
        return self._config

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
        return int(getattr(self._config.text_config, "max_position_embeddings", 32768))

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

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
            "llava_onevision_holitom does not implement loglikelihood: HoliTom compresses the prompt during "
            "prefill, which has no faithful continuation-scoring counterpart, and the paper's benchmarks are "
            "all generate_until tasks. Use a generate_until task, or lmms-eval's llava_onevision / llava_hf "
            "for loglikelihood (multiple_choice) tasks."
        )

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("llava_onevision_holitom does not implement generate_until_multi_round")

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
                "method": self.holitom_config.method}
        try:
            doc = self.task_dict[task][split][doc_id]
            visuals = load_visuals(call_doc_to_visual(doc_to_visual, doc), self.max_frames_num,
                                   self.video_decode_backend)
        except VisualError as exc:
            return self._failed(base, exc)
        if visuals.extra_videos:
            self._warn_once("multi-video", f"[holitom] {task}: several videos per document; using the first "
                            "(as lmms-eval's llava_onevision does)")
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
        videos = None if visuals.video is None else [visuals.video]
        images = visuals.images or None
        t0 = time.perf_counter()
        prompt = self._prompt(context, video=videos is not None, n_images=len(visuals.images))
        inputs = self.processor(text=[prompt], videos=videos, images=images, return_tensors="pt")
        inputs = inputs.to(self._device)
        for key in ("pixel_values_videos", "pixel_values"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.model.dtype)
        timings["preprocess"] = (time.perf_counter() - t0) * 1000.0

        clock = FirstTokenClock(self._device)
        kwargs = self._generation_kwargs(gen_kwargs)
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

    def _prompt(self, context: str, video: bool, n_images: int) -> str:
        return build_prompt(context, video, n_images, self.conv_template, self.processor)

    def _generation_kwargs(self, gen_kwargs: dict | None) -> dict[str, Any]:
        return generation_kwargs(gen_kwargs, self.max_new_tokens, self.tokenizer.pad_token_id, self.eot_token_id)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned and self.rank == 0:
            self._warned.add(key)
            logger.warning(message)
