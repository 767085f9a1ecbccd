"""How ``vllm_holitom`` feeds each family to vLLM: its model args, frames, prompt, video item and token counts.

`FAMILIES` maps a checkpoint's architecture (``config.json``'s ``architectures[0]``, the name vLLM and the plugin's
``integrations.vllm.plugin.FAMILIES`` use) to a `VllmFamily` subclass. Each family mirrors one transformers lmms-eval
model (``lmms_eval_model``): its model args and defaults, its frame sampling and its prompt, so that a study can
switch backends without changing its keys. Adding a family is one subclass and one entry: its video reader and its
video item as vLLM wants it (Qwen: ``(frames, metadata)``). Qwen3-VL-MoE shares Qwen3-VL's entry (as
``qwen3_vl_holitom`` serves both), Qwen3.5-MoE Qwen3.5's (as ``qwen3_5_holitom``).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lmms_holitom.integrations.lmms_eval.prompts import CONV_TEMPLATES, build_prompt
from lmms_holitom.integrations.lmms_eval.qwen_args import QWEN3_5_ARGS, QWEN_ARGS, QwenArgs
from lmms_holitom.integrations.lmms_eval.settings import parse_choice, parse_int
from lmms_holitom.integrations.lmms_eval.visuals import VisualError, Visuals, check_one_video, load_visuals
from lmms_holitom.integrations.lmms_eval.vllm_video import read_qwen25_video, read_qwen_video
from lmms_holitom.values import MAX_FRAMES
from lmms_holitom.video import VideoDecodeError, check_backend

__all__ = ["FAMILIES", "LlavaOneVisionFamily", "Qwen2_5_VLFamily", "Qwen3VLFamily", "Qwen3_5Family", "VllmFamily",
           "architecture_of"]

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

    def answer(self, text: str) -> str:
        """The sample's answer from vLLM's generated text."""
        return text.strip()

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


@dataclass
class QwenVllmVisuals(Visuals):
    """`Visuals` plus the metadata vLLM gets with the Qwen frames (``fps``, ``frames_indices``, ...)."""

    metadata: dict[str, Any] = field(default_factory=dict)


class Qwen2_5_VLFamily(VllmFamily):
    """Qwen2.5-VL: model args, frames (`vllm_video.read_qwen25_video`) and chat prompt of ``qwen2_5_vl_holitom``; the
    video goes in as ``(frames, metadata)`` with the timing transformers assumes for frames given without one (as
    that model and lmms-eval's ``qwen2_5_vl`` give them), and ``min_pixels``/``max_pixels`` as the processor's, so
    the placeholder count and the M-RoPE positions are the transformers model's. ``fps`` is validated and, as in
    ``qwen2_5_vl_holitom``, not used by Qwen2.5-VL's sampling. A HoliTom frame is a temporal group."""

    name = "Qwen2.5-VL"
    lmms_eval_model = "qwen2_5_vl_holitom"
    ARGS: ClassVar[dict[str, Any]] = QWEN_ARGS

    def __init__(self, args: dict[str, Any]) -> None:
        self.qwen_args = QwenArgs.parse(args)

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
            frames, metadata = self.read_video(path)
        except VideoDecodeError as exc:
            raise VisualError(f"VideoDecodeError: {exc}", path) from exc
        return QwenVllmVisuals(video=frames, video_path=path, decode_ms=(time.perf_counter() - t0) * 1000.0,
                               metadata=metadata)

    def read_video(self, path: str) -> tuple[Any, dict[str, Any]]:
        """(frames (F, H, W, 3) uint8, the metadata vLLM gets with them) of one video file."""
        args = self.qwen_args
        frames = read_qwen25_video(path, args.min_pixels, args.max_pixels, args.max_num_frames)
        count = int(frames.shape[0])
        fps = _assumed_fps(count)  # what transformers assumes for frames without a timing
        return frames, {"total_num_frames": count, "fps": fps, "duration": count / fps,
                        "frames_indices": list(range(count)), "video_backend": "pyav"}

    def messages(self, context: str, video: bool) -> list[dict[str, Any]]:
        """``qwen2_5_vl_holitom``'s chat messages: the system prompt, then the video and the question."""
        content = [{"type": "video"}] if video else []
        content.append({"type": "text", "text": context.replace("<image>", "")})
        prompt = self.qwen_args.system_prompt
        system = [{"role": "system", "content": prompt}] if prompt else []
        return [*system, {"role": "user", "content": content}]

    def prompt(self, context: str, video: bool, checkpoint: str) -> str:
        """The chat prompt of ``lmms_eval_model``."""
        return _hf_processor(checkpoint).apply_chat_template(self.messages(context, video), tokenize=False,
                                                             add_generation_prompt=True)

    def processor_kwargs(self) -> dict[str, Any]:
        """``mm_processor_kwargs``: the processor settings ``lmms_eval_model`` loads its processor with."""
        return {"min_pixels": self.qwen_args.min_pixels, "max_pixels": self.qwen_args.max_pixels}

    def request(self, context: str, visuals: Visuals, checkpoint: str) -> dict[str, Any]:
        video = visuals.video is not None
        prompt = self.prompt(context, video, checkpoint)
        if not video:
            return {"prompt": prompt}
        metadata = {**visuals.metadata, "do_sample_frames": False}  # the frames are sampled already
        return {"prompt": prompt, "multi_modal_data": {"video": (visuals.video, metadata)},
                "mm_processor_kwargs": self.processor_kwargs()}

    def frames(self, hf_config: Any, visuals: Visuals) -> int:
        return math.ceil(int(visuals.video.shape[0]) / int(hf_config.vision_config.temporal_patch_size))

    def tokens_per_frame(self, llm: Any, visuals: Visuals) -> int:
        vision = llm.llm_engine.model_config.hf_config.vision_config
        side = vision.patch_size * vision.spatial_merge_size
        height, width = visuals.video.shape[1:3]
        return (height // side) * (width // side)

    def video_tokens(self, hf_config: Any, prompt_ids: list[int]) -> int:
        return prompt_ids.count(int(hf_config.video_token_id))


class Qwen3VLFamily(Qwen2_5_VLFamily):
    """Qwen3-VL and Qwen3-VL-MoE: model args, frames and chat prompt of ``qwen3_vl_holitom`` (``process_vision_info``
    with ``image_patch_size=16`` and ``nframes = min(max_num_frames, frames)``, or ``fps`` + ``max_frames``;
    `vllm_video.read_qwen_video`); the video goes in as ``(frames, metadata)`` with the **real** metadata (source
    fps, sampled frame indices, frame count) that ``qwen3_vl_holitom`` passes its processor, so the timestamp
    tokens are the transformers model's; the frames are resized already (``do_resize=False``, as there)."""

    name = "Qwen3-VL"
    lmms_eval_model = "qwen3_vl_holitom"
    ARGS: ClassVar[dict[str, Any]] = Qwen2_5_VLFamily.ARGS

    def video_item(self) -> dict[str, Any]:
        """``qwen3_vl_holitom``'s ``process_vision_info`` item (``nframes`` capped at the video's frame count)."""
        args = self.qwen_args
        item: dict[str, Any] = {"min_pixels": args.min_pixels, "max_pixels": args.max_pixels}
        if args.fps is not None:
            return {**item, "fps": args.fps, "max_frames": args.max_num_frames}
        return {**item, "nframes": args.max_num_frames}

    def read_video(self, path: str) -> tuple[Any, dict[str, Any]]:
        return read_qwen_video(path, self.video_item(), image_patch_size=16)

    def processor_kwargs(self) -> dict[str, Any]:
        return {"do_resize": False}


class Qwen3_5Family(Qwen3VLFamily):
    """Qwen3.5: model args, frames and prompt of ``qwen3_5_holitom`` (a ``total_pixels`` budget with ``max_frames``
    unless ``total_pixels`` is empty or ``fps`` is set; ``enable_thinking`` passed to the chat template, the answer
    being what follows ``</think>``), for Qwen3.5 and Qwen3.5-MoE checkpoints. vLLM 0.32 runs Qwen3.5 on CPU in bf16
    only (``dtype=bfloat16``)."""

    name = "Qwen3.5"
    lmms_eval_model = "qwen3_5_holitom"
    ARGS: ClassVar[dict[str, Any]] = QWEN3_5_ARGS

    def video_item(self) -> dict[str, Any]:
        args = self.qwen_args
        if args.total_pixels is None or args.fps is not None:
            return super().video_item()
        return {"min_pixels": args.min_pixels, "max_frames": args.max_num_frames, "total_pixels": args.total_pixels}

    def prompt(self, context: str, video: bool, checkpoint: str) -> str:
        thinking = self.qwen_args.enable_thinking
        extra = {} if thinking is None else {"enable_thinking": thinking}
        return _hf_processor(checkpoint).apply_chat_template(self.messages(context, video), tokenize=False,
                                                             add_generation_prompt=True, **extra)

    def answer(self, text: str) -> str:
        return text.partition("</think>")[2].strip() if self.qwen_args.enable_thinking else text.strip()


def _assumed_fps(count: int) -> float:
    """The fps transformers assumes for ``count`` frames given without a timing."""
    from transformers.video_utils import VideoMetadata

    return VideoMetadata(total_num_frames=count).sampled_fps


@functools.cache
def _hf_processor(checkpoint: str) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(checkpoint)


#: architecture -> family (the plugin's `integrations.vllm.plugin.FAMILIES` names the same architectures)
FAMILIES: dict[str, type[VllmFamily]] = {
    "LlavaOnevisionForConditionalGeneration": LlavaOneVisionFamily,
    "Qwen2_5_VLForConditionalGeneration": Qwen2_5_VLFamily,
    "Qwen3VLForConditionalGeneration": Qwen3VLFamily,
    "Qwen3VLMoeForConditionalGeneration": Qwen3VLFamily,
    "Qwen3_5ForConditionalGeneration": Qwen3_5Family,
    "Qwen3_5MoeForConditionalGeneration": Qwen3_5Family,
}
