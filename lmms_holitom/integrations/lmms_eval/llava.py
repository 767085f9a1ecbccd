"""The lmms-eval model ``llava_onevision_holitom``: LLaVA-OneVision (transformers) with HoliTom token merging.

Usage::

    python -m lmms_eval --model llava_onevision_holitom \\
        --model_args pretrained=lmms-lab/llava-onevision-qwen2-7b-ov,method=holitom,retain_ratio=0.15,tau=0.8 \\
        --tasks videomme --output_path runs/ --log_samples
    accelerate launch --num_processes 8 -m lmms_eval --model llava_onevision_holitom ...   # one copy per GPU
    torchrun --nproc_per_node 2 -m lmms_eval --model llava_onevision_holitom --model_args ...,device=cpu   # CPUs

See `LlavaOneVisionHoliTom` for every model argument and how the authors' environment variables combine
with them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lmms_holitom.integrations.lmms_eval.base import HoliTomLmms
from lmms_holitom.integrations.lmms_eval.prompts import CONV_TEMPLATES, build_prompt
from lmms_holitom.integrations.lmms_eval.settings import (
    ORIGINAL_ENV_VARS,
    none_if_empty,
    parse_bool,
    parse_choice,
    parse_int,
    parse_layout_args,
    resolve_holitom_config,
)
from lmms_holitom.integrations.lmms_eval.visuals import Visuals, load_visuals
from lmms_holitom.values import MAX_FRAMES
from lmms_holitom.video import check_backend

__all__ = ["MODEL_ARGS", "LlavaOneVisionHoliTom", "ORIGINAL_ENV_VARS", "resolve_holitom_config"]


class LlavaOneVisionHoliTom(HoliTomLmms):
    """LLaVA-OneVision with HoliTom (``--model llava_onevision_holitom``), batch size 1, video QA.

    Model args (``--model_args k=v,...``):

    * ``pretrained`` (``lmms-lab/llava-onevision-qwen2-7b-ov``): an lmms-lab (LLaVA-NeXT format) checkpoint,
      loaded as it is, a transformers checkpoint, a local folder, or ``tiny`` (the built-in offline test model).
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
      task's ``doc_to_visual`` raises, ``SystemExit`` included — or whose document has several videos (one
      video per prompt; see `visuals.check_one_video`) is answered with ``FAILED_ANSWER``
      (``"[video error]"``), counted, and recorded with its error and file in the stats files and the
      end-of-run summary — never answered from the text alone; ``fail`` (alias ``raise``) stops at the first.
    * ``stats_path``: folder of the statistics files (`records`); default: lmms-eval's results folder
      ``<output_path>/<model subdir>`` of the lmms-eval command line that started the process
      (`records.discover_output_dir`); without either (``simple_evaluate`` from Python), no files are written
      (the summary is still logged).
    * Every `HoliTomConfig` field: ``method`` (``holitom``), ``retain_ratio``, ``tau``, ``merge_layer``,
      ``merge_ratio``, ``beta``, ``contextual_ratio``, ``knn_k``, ``max_window_size``, ``beta_merge``,
      ``fidelity``, ``spatial_tokens``, ``dominant_ratio``.
    * Video layout, passed to ``from_pretrained`` only when given (the checkpoint's own otherwise), validated
      at load time: ``mm_spatial_pool_mode``, ``mm_spatial_pool_stride``, ``mm_newline_position``.
    * Accepted for compatibility with lmms-eval's ``llava_onevision`` command lines, effective only at their
      defaults: ``model_name`` (ignored), ``token_strategy=single``, ``use_cache=true``,
      ``truncation``/``truncate_context`` (no effect).

    Any other model arg raises a ValueError listing the valid ones; a key given twice in ``--model_args`` is an
    error too (`model_args`).

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

    MODEL_ID = "llava_onevision_holitom"
    FAMILY_ARGS: ClassVar[dict[str, Any]] = {
        "pretrained": "lmms-lab/llava-onevision-qwen2-7b-ov",
        "conv_template": "qwen_1_5",
        "max_frames_num": 32,
        "video_decode_backend": "pyav",
        "max_batch_size": None,
        # accepted for command-line compatibility with lmms-eval's `llava_onevision`; only its defaults work
        "model_name": None,
        # video layout, passed to from_pretrained only when given (the checkpoint's own otherwise)
        "mm_spatial_pool_stride": None,
        "mm_spatial_pool_mode": None,
        "mm_newline_position": None,
        "token_strategy": "single",
        "truncation": True,
        "truncate_context": False,
    }

    def _family_setup(self, args: dict[str, Any]) -> None:
        parse_choice("token_strategy", args["token_strategy"], ("single",))
        parse_bool("truncation", args["truncation"])
        parse_bool("truncate_context", args["truncate_context"])
        if none_if_empty(args["max_batch_size"]) is not None:
            parse_int("max_batch_size", args["max_batch_size"], 1)
        self.conv_template = str(args["conv_template"]).strip().lower()
        if self.conv_template not in CONV_TEMPLATES:
            raise ValueError(f"conv_template must be one of {', '.join(CONV_TEMPLATES)}, got {self.conv_template!r}")
        self.max_frames_num = parse_int("max_frames_num", args["max_frames_num"], 1, MAX_FRAMES)
        self.video_decode_backend = check_backend(args["video_decode_backend"])
        self._layout_kwargs = parse_layout_args(args)

    def _hf_kwargs(self, args: dict[str, Any]) -> dict[str, Any]:
        return dict(self._layout_kwargs)

    def _describe(self) -> str:
        return f"frames={self.max_frames_num} ({self.video_decode_backend}), conv_template={self.conv_template}"

    def _model_class(self) -> type:
        from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration

        return HoliTomLlavaOnevisionForConditionalGeneration

    def _load_processor(self, checkpoint: str) -> Any:
        """The processor of either checkpoint format, expanding ``<video>`` for the layout in use."""
        from lmms_holitom.hf.models.layout import VideoLayout
        from lmms_holitom.hf.models.llava_next import read_llava_next_config
        from lmms_holitom.hf.models.processing import load_processor

        layout = None
        if self._layout_kwargs:
            layout = VideoLayout.from_config_dict(read_llava_next_config(checkpoint) or {}, **self._layout_kwargs)
        return load_processor(checkpoint, layout=layout)

    def _load_visuals(self, visuals: list[Any]) -> Visuals:
        return load_visuals(visuals, self.max_frames_num, self.video_decode_backend)

    def _prompt(self, context: str, video: bool, n_images: int) -> str:
        return build_prompt(context, video, n_images, self.conv_template, self.processor)

    def _inputs(self, context: str, visuals: Visuals) -> Any:
        videos = None if visuals.video is None else [visuals.video]
        prompt = self._prompt(context, videos is not None, len(visuals.images))
        return self.processor(text=[prompt], videos=videos, images=visuals.images or None, return_tensors="pt")


#: Every model arg of ``llava_onevision_holitom`` besides the HoliTomConfig fields (name -> default).
MODEL_ARGS: dict[str, Any] = LlavaOneVisionHoliTom.model_args()
