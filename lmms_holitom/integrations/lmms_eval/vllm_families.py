"""How ``vllm_holitom`` feeds each family to vLLM: its model args, frames, prompt, video item and token counts.

`FAMILIES` maps a checkpoint's architecture (``config.json``'s ``architectures[0]``, the name vLLM and the plugin's
``integrations.vllm.plugin.FAMILIES`` use) to a `VllmFamily` subclass. Each family mirrors one transformers lmms-eval
model (``lmms_eval_model``): its model args and defaults, its frame sampling and its prompt, so that a study can
switch backends without changing its keys. Adding a family (e.g. Qwen3-VL once the plugin has it) is one subclass
and one entry: its video reader and its video item as vLLM wants it (Qwen: ``(frames, metadata)``).
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any, ClassVar

from lmms_holitom.integrations.lmms_eval.prompts import CONV_TEMPLATES, SYSTEM_PROMPT, build_prompt
from lmms_holitom.integrations.lmms_eval.settings import none_if_empty, parse_choice, parse_int
from lmms_holitom.integrations.lmms_eval.visuals import VisualError, Visuals, check_one_video, load_visuals
from lmms_holitom.integrations.lmms_eval.vllm_video import read_qwen25_video
from lmms_holitom.values import MAX_FRAMES
from lmms_holitom.video import VideoDecodeError, check_backend

__all__ = ["FAMILIES", "LlavaOneVisionFamily", "Qwen2_5_VLFamily", "VllmFamily", "architecture_of"]

_VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@functools.cache
def architecture_of(pretrained: str) -> str:
    """The architecture named by a checkpoint's ``config.json`` (a folder, or a hub id in the local cache)."""
    from transformers import PretrainedConfig

    try:
        config, _ = PretrainedConfig.get_config_dict(pretrained)
    except (OSError, ValueError) as exc:
        raise ValueError(f"pretrained={pretrained!r} has no readable config.json: {exc}".splitlines()[0]) from None
    return (config.get("architectures") or ["an unknown architecture"])[0]


@functools.cache
def _processing_info(llm: Any) -> Any:
    """The engine's multimodal processing info (our plugin's subclass when the plugin is registered)."""
    from vllm.multimodal import MULTIMODAL_REGISTRY

    return MULTIMODAL_REGISTRY.create_processor(llm.llm_engine.model_config).info


class VllmFamily:
    """One family: ``ARGS`` (model arg -> default, those of ``lmms_eval_model``) are validated by the constructor."""

    name: ClassVar[str] = ""
    #: the transformers lmms-eval model whose args, frames and prompt this family reproduces
    lmms_eval_model: ClassVar[str] = ""
    ARGS: ClassVar[dict[str, Any]] = {}

    def __init__(self, args: dict[str, Any]) -> None:
        pass

    def visuals(self, visuals: list[Any]) -> Visuals:
        """The document's video (frames sampled as the transformers model samples them); raise `VisualError`."""
        raise NotImplementedError

    def request(self, context: str, visuals: Visuals, checkpoint: str) -> dict[str, Any]:
        """The vLLM prompt dict (``prompt`` and ``multi_modal_data``) of one sample."""
        raise NotImplementedError

    def frames(self, hf_config: Any, visuals: Visuals) -> int:
        """HoliTom frames of the video: decoded frames (LLaVA), temporal groups of ``temporal_patch_size`` (Qwen)."""
        return int(visuals.video.shape[0])

    def tokens_per_frame(self, llm: Any, visuals: Visuals) -> int:
        """Dense visual tokens per HoliTom frame of this video in this engine."""
        raise NotImplementedError

    def video_tokens(self, hf_config: Any, prompt_ids: list[int]) -> int:
        """The video's visual tokens in vLLM's prompt (separators excluded)."""
        raise NotImplementedError


class LlavaOneVisionFamily(VllmFamily):
    """LLaVA-OneVision: frames as ``llava_onevision_holitom`` samples them, its prompt (``conv_template``), the
    frames ``(F, H, W, 3)`` uint8 as the video (no metadata needed); one newline token closes the video."""

    name = "LLaVA-OneVision"
    lmms_eval_model = "llava_onevision_holitom"
    ARGS: ClassVar[dict[str, Any]] = {"max_frames_num": 32, "video_decode_backend": "pyav", "conv_template": "qwen_1_5"}

    def __init__(self, args: dict[str, Any]) -> None:
        self.max_frames_num = parse_int("max_frames_num", args["max_frames_num"], 1, MAX_FRAMES)
        self.video_decode_backend = check_backend(args["video_decode_backend"])
        self.conv_template = parse_choice("conv_template", args["conv_template"], CONV_TEMPLATES)

    def visuals(self, visuals: list[Any]) -> Visuals:
        loaded = load_visuals(visuals, self.max_frames_num, self.video_decode_backend)
        if loaded.images:
            raise VisualError(f"{len(loaded.images)} image input(s): vllm_holitom evaluates videos (its engine "
                              "accepts no images); use llava_onevision_holitom for image tasks")
        return loaded

    def request(self, context: str, visuals: Visuals, checkpoint: str) -> dict[str, Any]:
        video = visuals.video is not None
        processor = None if self.conv_template == "qwen_1_5" else _hf_processor(checkpoint)
        prompt = build_prompt(context, video, 0, self.conv_template, processor)
        return {"prompt": prompt, "multi_modal_data": {"video": visuals.video}} if video else {"prompt": prompt}

    def tokens_per_frame(self, llm: Any, visuals: Visuals) -> int:
        height, width = visuals.video.shape[1:3]
        return int(_processing_info(llm)._get_num_frame_tokens(image_width=width, image_height=height))

    def video_tokens(self, hf_config: Any, prompt_ids: list[int]) -> int:
        return prompt_ids.count(int(hf_config.video_token_index)) - 1  # the newline after the video


class Qwen2_5_VLFamily(VllmFamily):
    """Qwen2.5-VL: model args, frames (`vllm_video.read_qwen25_video`) and chat prompt of ``qwen2_5_vl_holitom``; the
    video goes in as ``(frames, metadata)`` with the timing transformers assumes for frames given without one (as
    that model and lmms-eval's ``qwen2_5_vl`` give them), and ``min_pixels``/``max_pixels`` as the processor's, so
    the placeholder count and the M-RoPE positions are the transformers model's. ``fps`` is validated and, as in
    ``qwen2_5_vl_holitom``, not used by Qwen2.5-VL's sampling. A HoliTom frame is a temporal group."""

    name = "Qwen2.5-VL"
    lmms_eval_model = "qwen2_5_vl_holitom"
    ARGS: ClassVar[dict[str, Any]] = {"min_pixels": 256 * 28 * 28, "max_pixels": 1605632, "max_num_frames": 32,
                                      "fps": None, "system_prompt": SYSTEM_PROMPT}

    def __init__(self, args: dict[str, Any]) -> None:
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

    def visuals(self, visuals: list[Any]) -> Visuals:
        if not visuals:
            return Visuals()
        paths = [v for v in visuals if isinstance(v, (str, os.PathLike)) and str(v).lower().endswith(_VIDEO_SUFFIXES)]
        if not paths:
            raise VisualError(f"{len(visuals)} image input(s): vllm_holitom evaluates videos (its engine accepts no "
                              f"images); use {self.lmms_eval_model} for image tasks")
        path = check_one_video(paths)
        t0 = time.perf_counter()
        try:
            frames = read_qwen25_video(path, self.min_pixels, self.max_pixels, self.max_num_frames)
        except VideoDecodeError as exc:
            raise VisualError(f"VideoDecodeError: {exc}", path) from exc
        return Visuals(video=frames, video_path=path, decode_ms=(time.perf_counter() - t0) * 1000.0)

    def messages(self, context: str, video: bool) -> list[dict[str, Any]]:
        """``qwen2_5_vl_holitom``'s chat messages: the system prompt, then the video and the question."""
        content = [{"type": "video"}] if video else []
        content.append({"type": "text", "text": context.replace("<image>", "")})
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": content}]

    def request(self, context: str, visuals: Visuals, checkpoint: str) -> dict[str, Any]:
        from transformers.video_utils import VideoMetadata

        video = visuals.video is not None
        prompt = _hf_processor(checkpoint).apply_chat_template(self.messages(context, video), tokenize=False,
                                                               add_generation_prompt=True)
        if not video:
            return {"prompt": prompt}
        count = int(visuals.video.shape[0])
        fps = VideoMetadata(total_num_frames=count).sampled_fps  # what transformers assumes without a timing
        metadata = {"total_num_frames": count, "fps": fps, "duration": count / fps,
                    "frames_indices": list(range(count)), "video_backend": "pyav", "do_sample_frames": False}
        return {"prompt": prompt, "multi_modal_data": {"video": (visuals.video, metadata)},
                "mm_processor_kwargs": {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}}

    def frames(self, hf_config: Any, visuals: Visuals) -> int:
        return math.ceil(int(visuals.video.shape[0]) / int(hf_config.vision_config.temporal_patch_size))

    def tokens_per_frame(self, llm: Any, visuals: Visuals) -> int:
        vision = llm.llm_engine.model_config.hf_config.vision_config
        side = vision.patch_size * vision.spatial_merge_size
        height, width = visuals.video.shape[1:3]
        return (height // side) * (width // side)

    def video_tokens(self, hf_config: Any, prompt_ids: list[int]) -> int:
        return prompt_ids.count(int(hf_config.video_token_id))


@functools.cache
def _hf_processor(checkpoint: str) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(checkpoint)


#: architecture -> family (the plugin's `integrations.vllm.plugin.FAMILIES` names the same architectures)
FAMILIES: dict[str, type[VllmFamily]] = {
    "LlavaOnevisionForConditionalGeneration": LlavaOneVisionFamily,
    "Qwen2_5_VLForConditionalGeneration": Qwen2_5_VLFamily,
}
