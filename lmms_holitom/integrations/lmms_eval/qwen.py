"""The lmms-eval models ``qwen2_5_vl_holitom`` and ``qwen3_vl_holitom``: Qwen2.5-VL / Qwen3-VL with HoliTom.

Prompts and frame sampling are those of lmms-eval 0.7.3's own ``qwen2_5_vl`` / ``qwen3_vl`` models (``simple``
variants), so that ``method=dense`` reproduces their runs: a system message, the video (``qwen_vl_utils``'
``process_vision_info`` with ``min_pixels`` / ``max_pixels``), then the question; Qwen2.5-VL keeps
``linspace(0, T-1, max_num_frames)`` of the decoded frames (unique, last frame included), Qwen3-VL asks
``process_vision_info`` for ``nframes = min(max_num_frames, frames)`` (or ``fps`` + ``max_frames``) and passes the
video metadata on. A video ``process_vision_info`` cannot read is one failed sample (`VisualError`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lmms_holitom.integrations.lmms_eval.base import HoliTomLmms
from lmms_holitom.integrations.lmms_eval.prompts import SYSTEM_PROMPT
from lmms_holitom.integrations.lmms_eval.settings import none_if_empty, parse_int
from lmms_holitom.integrations.lmms_eval.visuals import VisualError, Visuals, check_one_video
from lmms_holitom.values import MAX_FRAMES

__all__ = ["Qwen2_5_VLHoliTom", "Qwen3VLHoliTom"]

_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass
class QwenVisuals(Visuals):
    """`Visuals` plus what ``process_vision_info`` returned for the processor (Qwen3-VL's metadata)."""

    item: dict[str, Any] = field(default_factory=dict)
    processor_kwargs: dict[str, Any] = field(default_factory=dict)


class _QwenHoliTom(HoliTomLmms):
    """What both Qwen-VL lmms-eval models share."""

    FAMILY_ARGS: ClassVar[dict[str, Any]] = {
        "pretrained": "",
        "min_pixels": 256 * 28 * 28,
        "max_pixels": 1605632,
        "max_num_frames": 32,
        "fps": None,
        "system_prompt": SYSTEM_PROMPT,
    }

    def _family_setup(self, args: dict[str, Any]) -> None:
        self.min_pixels = parse_int("min_pixels", args["min_pixels"], 1)
        self.max_pixels = parse_int("max_pixels", args["max_pixels"], self.min_pixels)
        self.max_num_frames = parse_int("max_num_frames", args["max_num_frames"], 1, MAX_FRAMES)
        fps = none_if_empty(args["fps"])
        try:
            self.fps = None if fps is None else float(fps)
        except ValueError:
            raise ValueError(f"fps must be a number > 0, got {fps!r}") from None
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be a number > 0, got {fps!r}")
        self.system_prompt = none_if_empty(args["system_prompt"])

    def _describe(self) -> str:
        return f"max_num_frames={self.max_num_frames}, pixels [{self.min_pixels}, {self.max_pixels}], fps={self.fps}"

    def _load_processor(self, checkpoint: str) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(checkpoint, max_pixels=self.max_pixels, min_pixels=self.min_pixels)

    def _messages(self, context: str, visuals: Visuals) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        if isinstance(visuals, QwenVisuals) and visuals.item:
            content.append(visuals.item)
        content += [{"type": "image", "image": image} for image in visuals.images]
        context = context.replace("<image>", "")
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
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

        item = {"type": "video", "video": path, "max_pixels": self.max_pixels, "min_pixels": self.min_pixels}
        _, videos = process_vision_info([[{"role": "user", "content": [item]}]])
        video = videos[0]
        total = int(video.shape[0])
        indices = np.unique(np.linspace(0, total - 1, self.max_num_frames, dtype=int))
        if total - 1 not in indices:
            indices = np.unique(np.append(indices, total - 1))
        return video[indices], item, {}


class Qwen3VLHoliTom(_QwenHoliTom):
    """Qwen3-VL with HoliTom (``--model qwen3_vl_holitom``); model args as lmms-eval's ``qwen3_vl`` (video ones:
    ``min_pixels``, ``max_pixels``, ``max_num_frames``, ``fps``, ``system_prompt``) plus the shared ones and every
    `HoliTomConfig` field."""

    MODEL_ID = "qwen3_vl_holitom"
    FAMILY_ARGS: ClassVar[dict[str, Any]] = {**_QwenHoliTom.FAMILY_ARGS, "pretrained": "Qwen/Qwen3-VL-8B-Instruct"}

    def _model_class(self) -> type:
        from lmms_holitom.hf.models import HoliTomQwen3VLForConditionalGeneration

        return HoliTomQwen3VLForConditionalGeneration

    def _read_video(self, path: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        import decord
        from qwen_vl_utils import process_vision_info

        item: dict[str, Any] = {"type": "video", "video": path, "min_pixels": self.min_pixels,
                                "max_pixels": self.max_pixels}
        if self.fps is not None:
            item.update(fps=self.fps, max_frames=self.max_num_frames)
        else:
            item["nframes"] = min(self.max_num_frames, len(decord.VideoReader(path)))
        _, videos, kwargs = process_vision_info(
            [[{"role": "user", "content": [item]}]], return_video_kwargs=True, image_patch_size=16,
            return_video_metadata=True,
        )
        video, metadata = videos[0]
        return video, item, {**kwargs, "video_metadata": [metadata], "do_resize": False}
