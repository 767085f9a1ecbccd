"""How ``vllm_holitom`` feeds each family to vLLM: its model args, frames, prompt, video item and token counts.

`FAMILIES` maps a checkpoint's architecture (``config.json``'s ``architectures[0]``, the name vLLM and the plugin's
``integrations.vllm.plugin.FAMILIES`` use) to a `VllmFamily` subclass. Adding a family (e.g. Qwen2.5-VL / Qwen3-VL
once the plugin has them) is one subclass and one entry: its args and prompt as its transformers lmms-eval model
builds them (``qwen.py``), and its video item as vLLM wants it (Qwen: ``(frames, metadata)``).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from lmms_holitom.integrations.lmms_eval.prompts import CONV_TEMPLATES, build_prompt
from lmms_holitom.integrations.lmms_eval.settings import parse_choice, parse_int
from lmms_holitom.integrations.lmms_eval.visuals import VisualError, Visuals, load_visuals
from lmms_holitom.values import MAX_FRAMES
from lmms_holitom.video import check_backend

__all__ = ["FAMILIES", "LlavaOneVisionFamily", "VllmFamily", "architecture_of"]


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
    """One family: ``ARGS`` (model arg -> default) are validated by the constructor."""

    name: ClassVar[str] = ""
    ARGS: ClassVar[dict[str, Any]] = {}

    def __init__(self, args: dict[str, Any]) -> None:
        pass

    def visuals(self, visuals: list[Any]) -> Visuals:
        """The document's video (frames sampled as the transformers model samples them); raise `VisualError`."""
        raise NotImplementedError

    def request(self, context: str, visuals: Visuals, checkpoint: str) -> dict[str, Any]:
        """The vLLM prompt dict (``prompt`` and ``multi_modal_data``) of one sample."""
        raise NotImplementedError

    def tokens_per_frame(self, llm: Any, visuals: Visuals) -> int:
        """Dense visual tokens per frame of this video in this engine."""
        raise NotImplementedError

    def video_tokens(self, hf_config: Any, prompt_ids: list[int]) -> int:
        """The video's visual tokens in vLLM's prompt (separators excluded)."""
        raise NotImplementedError


class LlavaOneVisionFamily(VllmFamily):
    """LLaVA-OneVision: frames as ``llava_onevision_holitom`` samples them, its prompt (``conv_template``), the
    frames ``(F, H, W, 3)`` uint8 as the video (no metadata needed); one newline token closes the video."""

    name = "LLaVA-OneVision"
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


@functools.cache
def _hf_processor(checkpoint: str) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(checkpoint)


#: architecture -> family (the plugin's `integrations.vllm.plugin.FAMILIES` names the same architectures)
FAMILIES: dict[str, type[VllmFamily]] = {
    "LlavaOnevisionForConditionalGeneration": LlavaOneVisionFamily,
}
