"""The lmms-eval models ``qwen2_5_vl_holitom``, ``qwen3_vl_holitom`` (Qwen3-VL and Qwen3-VL-MoE checkpoints, by
``model_type``) and ``qwen3_5_holitom`` (Qwen3.5 and Qwen3.5-MoE): the Qwen-VL families with HoliTom.

Prompts and frame sampling are those of lmms-eval 0.7.3's own ``qwen2_5_vl`` / ``qwen3_vl`` models (``simple``
variants), so that ``method=dense`` reproduces their runs: a system message, the video (``qwen_vl_utils``'
``process_vision_info`` with ``min_pixels`` / ``max_pixels``), then the question; Qwen2.5-VL keeps
``linspace(0, T-1, max_num_frames)`` of the decoded frames (unique, last frame included), Qwen3-VL asks
``process_vision_info`` for ``nframes = min(max_num_frames, frames)`` (or ``fps`` + ``max_frames``) and passes the
video metadata on; Qwen3.5 as lmms-eval's ``qwen3_5`` (a Qwen3-VL subclass): its pixel and frame defaults, a
``total_pixels`` budget (then ``max_frames`` instead of ``nframes``, and no ``max_pixels``) and ``enable_thinking``
(passed to the chat template; the answer is what follows ``</think>``). A video ``process_vision_info`` cannot read
is one failed sample (`VisualError`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lmms_holitom.integrations.lmms_eval.base import HoliTomLmms
from lmms_holitom.integrations.lmms_eval.qwen_args import QWEN3_5_ARGS, QWEN_ARGS, QwenArgs
from lmms_holitom.integrations.lmms_eval.visuals import VisualError, Visuals, check_one_video

__all__ = ["Qwen2_5_VLHoliTom", "Qwen3VLHoliTom", "Qwen3_5HoliTom"]

_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass
class QwenVisuals(Visuals):
    """`Visuals` plus what ``process_vision_info`` returned for the processor (Qwen3-VL's metadata)."""

    item: dict[str, Any] = field(default_factory=dict)
    processor_kwargs: dict[str, Any] = field(default_factory=dict)


class _QwenHoliTom(HoliTomLmms):
    """What both Qwen-VL lmms-eval models share."""

    FAMILY_ARGS: ClassVar[dict[str, Any]] = {"pretrained": "", **QWEN_ARGS}
    qwen_args: QwenArgs

    def _family_setup(self, args: dict[str, Any]) -> None:
        self.qwen_args = QwenArgs.parse(args)

    def _describe(self) -> str:
        args = self.qwen_args
        return f"max_num_frames={args.max_num_frames}, pixels [{args.min_pixels}, {args.max_pixels}], fps={args.fps}"

    def _load_processor(self, checkpoint: str) -> Any:
        from transformers import AutoProcessor

        args = self.qwen_args
        return AutoProcessor.from_pretrained(checkpoint, max_pixels=args.max_pixels, min_pixels=args.min_pixels)

    def _messages(self, context: str, visuals: Visuals) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        if isinstance(visuals, QwenVisuals) and visuals.item:
            content.append(visuals.item)
        content += [{"type": "image", "image": image} for image in visuals.images]
        context = context.replace("<image>", "")
        system = self.qwen_args.system_prompt
        messages = [{"role": "system", "content": system}] if system else []
        return [*messages, {"role": "user", "content": [*content, {"type": "text", "text": context}]}]

    def _load_visuals(self, visuals: list[Any]) -> Visuals:
        if not visuals:
            return Visuals()
        paths = [v for v in visuals if isinstance(v, (str, os.PathLike)) and str(v).lower().endswith(_VIDEO_SUFFIXES)]
        if not paths:
            return Visuals(images=[v for v in visuals if not isinstance(v, (str, os.PathLike))])
        path = check_one_video(paths)
        if not os.path.isfile(path):
            raise VisualError(f"video file not found: {path}", path)
        t0 = time.perf_counter()
        try:
            frames, item, kwargs = self._read_video(path)
        except Exception as exc:  # whatever the video reader raises: this one sample fails
            raise VisualError(f"cannot read the video with qwen_vl_utils: {type(exc).__name__}: {exc}", path) from exc
        return QwenVisuals(video=frames, video_path=path, decode_ms=(time.perf_counter() - t0) * 1000.0,
                           item=item, processor_kwargs=kwargs)

    def _read_video(self, path: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        raise NotImplementedError

    def _inputs(self, context: str, visuals: Visuals) -> Any:
        text = self.processor.apply_chat_template(
            self._messages(context, visuals), tokenize=False, add_generation_prompt=True
        )
        videos = None if visuals.video is None else [visuals.video]
        kwargs = visuals.processor_kwargs if isinstance(visuals, QwenVisuals) else {}
        return self.processor(text=[text], images=visuals.images or None, videos=videos, return_tensors="pt",
                              **kwargs)


class Qwen2_5_VLHoliTom(_QwenHoliTom):
    """Qwen2.5-VL with HoliTom (``--model qwen2_5_vl_holitom``); model args as lmms-eval's ``qwen2_5_vl`` (video
    ones: ``min_pixels``, ``max_pixels``, ``max_num_frames``, ``fps``, ``system_prompt``) plus the shared ones
    (`base.COMMON_MODEL_ARGS`) and every `HoliTomConfig` field."""

    MODEL_ID = "qwen2_5_vl_holitom"
    FAMILY_ARGS: ClassVar[dict[str, Any]] = {**_QwenHoliTom.FAMILY_ARGS, "pretrained": "Qwen/Qwen2.5-VL-7B-Instruct"}

    def _model_class(self) -> type:
        from lmms_holitom.hf.models import HoliTomQwen2_5_VLForConditionalGeneration

        return HoliTomQwen2_5_VLForConditionalGeneration

    def _read_video(self, path: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        from qwen_vl_utils import process_vision_info

        args = self.qwen_args
        item = {"type": "video", "video": path, "max_pixels": args.max_pixels, "min_pixels": args.min_pixels}
        _, videos = process_vision_info([[{"role": "user", "content": [item]}]])
        video = videos[0]
        total = int(video.shape[0])
        indices = np.unique(np.linspace(0, total - 1, args.max_num_frames, dtype=int))
        if total - 1 not in indices:
            indices = np.unique(np.append(indices, total - 1))
        return video[indices], item, {}


class Qwen3VLHoliTom(_QwenHoliTom):
    """Qwen3-VL with HoliTom (``--model qwen3_vl_holitom``); model args as lmms-eval's ``qwen3_vl`` (video ones:
    ``min_pixels``, ``max_pixels``, ``max_num_frames``, ``fps``, ``system_prompt``) plus the shared ones and every
    `HoliTomConfig` field."""

    MODEL_ID = "qwen3_vl_holitom"
    FAMILY_ARGS: ClassVar[dict[str, Any]] = {**_QwenHoliTom.FAMILY_ARGS, "pretrained": "Qwen/Qwen3-VL-8B-Instruct"}

    def _family_classes(self) -> tuple[type, ...]:
        """The family's classes, dense first (the MoE variant is chosen by the checkpoint's ``model_type``)."""
        from lmms_holitom.hf.models import (
            HoliTomQwen3VLForConditionalGeneration,
            HoliTomQwen3VLMoeForConditionalGeneration,
        )

        return HoliTomQwen3VLForConditionalGeneration, HoliTomQwen3VLMoeForConditionalGeneration

    def _model_class(self) -> type:
        """The family class of the checkpoint's ``model_type``; another one loads with the dense class, whose
        loader names the model_type it found."""
        from lmms_holitom.hf.models import model_class_for

        classes = self._family_classes()
        try:
            found = model_class_for(self.checkpoint)
        except ValueError:
            return classes[0]
        return found if found in classes else classes[0]

    def _video_item(self, path: str) -> dict[str, Any]:
        import decord

        args = self.qwen_args
        item: dict[str, Any] = {"type": "video", "video": path, "min_pixels": args.min_pixels,
                                "max_pixels": args.max_pixels}
        if args.fps is not None:
            item.update(fps=args.fps, max_frames=args.max_num_frames)
        else:
            item["nframes"] = min(args.max_num_frames, len(decord.VideoReader(path)))
        return item

    def _read_video(self, path: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        from qwen_vl_utils import process_vision_info

        item = self._video_item(path)
        _, videos, kwargs = process_vision_info(
            [[{"role": "user", "content": [item]}]], return_video_kwargs=True, image_patch_size=16,
            return_video_metadata=True,
        )
        video, metadata = videos[0]
        return video, item, {**kwargs, "video_metadata": [metadata], "do_resize": False}


class Qwen3_5HoliTom(Qwen3VLHoliTom):
    """Qwen3.5 / Qwen3.5-MoE with HoliTom (``--model qwen3_5_holitom``); model args as lmms-eval's ``qwen3_5``
    (``min_pixels``, ``max_pixels``, ``total_pixels``, ``max_num_frames``, ``fps``, ``system_prompt``,
    ``enable_thinking``) plus the shared ones and every `HoliTomConfig` field. The merge layer must follow a
    full-attention layer (docs/algorithm.md §6.7)."""

    MODEL_ID = "qwen3_5_holitom"
    FAMILY_ARGS: ClassVar[dict[str, Any]] = {"pretrained": "Qwen/Qwen3.5-4B", **QWEN3_5_ARGS}

    def _describe(self) -> str:
        args = self.qwen_args
        return f"{super()._describe()}, total_pixels={args.total_pixels}, enable_thinking={args.enable_thinking}"

    def _family_classes(self) -> tuple[type, ...]:
        from lmms_holitom.hf.models import (
            HoliTomQwen3_5ForConditionalGeneration,
            HoliTomQwen3_5MoeForConditionalGeneration,
        )

        return HoliTomQwen3_5ForConditionalGeneration, HoliTomQwen3_5MoeForConditionalGeneration

    def _video_item(self, path: str) -> dict[str, Any]:
        args = self.qwen_args
        if args.total_pixels is None or args.fps is not None:
            return super()._video_item(path)
        return {"type": "video", "video": path, "min_pixels": args.min_pixels, "max_frames": args.max_num_frames,
                "total_pixels": args.total_pixels}

    def _inputs(self, context: str, visuals: Visuals) -> Any:
        thinking = self.qwen_args.enable_thinking
        extra = {} if thinking is None else {"enable_thinking": thinking}
        text = self.processor.apply_chat_template(
            self._messages(context, visuals), tokenize=False, add_generation_prompt=True, **extra
        )
        videos = None if visuals.video is None else [visuals.video]
        kwargs = visuals.processor_kwargs if isinstance(visuals, QwenVisuals) else {}
        return self.processor(text=[text], images=visuals.images or None, videos=videos, return_tensors="pt",
                              **kwargs)

    def _generate(self, base: dict[str, Any], context: str, gen_kwargs: dict, visuals: Visuals) -> str:
        """The answer; with ``enable_thinking`` only what follows ``</think>`` (as lmms-eval's ``qwen3_5``)."""
        answer = super()._generate(base, context, gen_kwargs, visuals)
        return answer.partition("</think>")[2].strip() if self.qwen_args.enable_thinking else answer
