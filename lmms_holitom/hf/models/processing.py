"""Processors for every checkpoint the package loads, LLaVA-NeXT-format ones included.

``load_processor(path_or_name, layout=None, **hub_kwargs)``: an HF-format checkpoint gets
``AutoProcessor.from_pretrained``; a LLaVA-NeXT-format one (`llava_next.is_llava_next_checkpoint`) gets a
`LayoutLlavaOnevisionProcessor` built from its tokenizer (``<image>``/``<video>`` added) and LLaVA-NeXT's SigLIP
preprocessing (mean = std = 0.5, square resize to the tower's image size, bicubic), whose ``<video>`` expands to
exactly ``layout.placeholder_count(frames, side)`` ids (``side`` = patches per side, 27 for SigLIP-384/14).
``tiny`` is the offline tiny model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from transformers import LlavaOnevisionProcessor

from lmms_holitom.hf.models.layout import VideoLayout

__all__ = ["LayoutLlavaOnevisionProcessor", "load_processor"]

SIGLIP_MEAN = SIGLIP_STD = [0.5, 0.5, 0.5]  # LLaVA-NeXT's SigLipImageProcessor


class LayoutLlavaOnevisionProcessor(LlavaOnevisionProcessor):
    """LlavaOnevisionProcessor whose ``<video>`` expansion follows a `VideoLayout` (OneVision or LLaVA-Video).

    ``layout``: the layout, or its LLaVA-NeXT dict as ``save_pretrained`` writes it (default: OneVision's, which
    gives the stock processor's ``F·196 + 1``). The other arguments are LlavaOnevisionProcessor's, spelled out
    because ProcessorMixin reads its sub-processors off the signature.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        video_processor=None,
        num_image_tokens=None,
        vision_feature_select_strategy=None,
        chat_template=None,
        image_token="<image>",
        video_token="<video>",
        vision_aspect_ratio="anyres_max_9",
        layout: VideoLayout | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            image_processor, tokenizer, video_processor, num_image_tokens=num_image_tokens,
            vision_feature_select_strategy=vision_feature_select_strategy, chat_template=chat_template,
            image_token=image_token, video_token=video_token, vision_aspect_ratio=vision_aspect_ratio, **kwargs,
        )
        self.layout = VideoLayout.from_config_dict(layout) if isinstance(layout, Mapping) else layout or VideoLayout()

    def to_dict(self) -> dict[str, Any]:
        """ProcessorMixin's dict, with the layout under its LLaVA-NeXT names (JSON for ``save_pretrained``)."""
        data = super().to_dict()
        data["layout"] = self.layout.to_config_dict()
        return data

    def _video_tokens(self, frames: int) -> int:
        side = math.isqrt(int(self.num_image_tokens))
        return self.layout.placeholder_count(frames, side)

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs: Any) -> str:
        video = video_inputs["pixel_values_videos"][video_idx]
        frames = len(video) if isinstance(video, (list, tuple)) else int(video.shape[0])
        return self.video_token * self._video_tokens(frames)

    def _get_num_multimodal_tokens(self, image_sizes=None, video_sizes=None, **kwargs: Any):
        data = super()._get_num_multimodal_tokens(image_sizes=image_sizes, video_sizes=video_sizes, **kwargs)
        if video_sizes is not None:
            data.num_video_tokens = [self._video_tokens(int(frames)) for frames, _, _ in video_sizes]
        return data


def _with_layout(processor: Any, layout: VideoLayout) -> LayoutLlavaOnevisionProcessor:
    """``processor`` (a LlavaOnevisionProcessor) re-made to expand videos by ``layout``."""
    if not isinstance(processor, LlavaOnevisionProcessor):
        raise ValueError(f"layout= applies to LLaVA-OneVision processors only, got {type(processor).__name__}")
    return LayoutLlavaOnevisionProcessor(
        image_processor=processor.image_processor,
        tokenizer=processor.tokenizer,
        video_processor=processor.video_processor,
        num_image_tokens=processor.num_image_tokens,
        vision_feature_select_strategy=processor.vision_feature_select_strategy,
        chat_template=processor.chat_template,
        layout=layout,
    )


def _llava_next_processor(path_or_name: str, raw: dict, layout: VideoLayout | None, hub: dict[str, Any]):
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionVideoProcessor

    from lmms_holitom.hf.models.chat_templates import QWEN_1_5 as CHAT_TEMPLATE
    from lmms_holitom.hf.models.llava_next import llava_next_config, load_llava_next_tokenizer

    config = llava_next_config(raw, cache_dir=hub.get("cache_dir"))
    vision = config.vision_config
    size = {"height": vision.image_size, "width": vision.image_size}
    common = {"image_mean": SIGLIP_MEAN, "image_std": SIGLIP_STD, "size": size}
    return LayoutLlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(image_grid_pinpoints=config.image_grid_pinpoints, **common),
        tokenizer=load_llava_next_tokenizer(path_or_name, **hub),
        video_processor=LlavaOnevisionVideoProcessor(**common),
        num_image_tokens=(vision.image_size // vision.patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        vision_aspect_ratio=config.vision_aspect_ratio,
        layout=layout or VideoLayout.from_config_dict(raw),
    )


def load_processor(path_or_name: str | os.PathLike, layout: VideoLayout | None = None, **hub_kwargs: Any):
    """The processor for ``path_or_name`` (a local folder, hub id or ``tiny``).

    ``layout``: the video layout the model runs with (``model``'s layout, overrides included); None = the
    checkpoint's own (a LLaVA-NeXT config's ``mm_*`` settings; for HF-format checkpoints the stock processor).
    ``hub_kwargs``: cache_dir, revision, local_files_only, token, ... (others are ignored).
    """
    from lmms_holitom.hf.models.llava_next import hub_kwargs as pick_hub_kwargs
    from lmms_holitom.hf.models.llava_next import read_llava_next_config
    from lmms_holitom.testing import resolve_pretrained

    name = resolve_pretrained(str(path_or_name))
    hub = pick_hub_kwargs(hub_kwargs)
    raw = read_llava_next_config(name, **hub)
    if raw is not None:
        return _llava_next_processor(name, raw, layout, hub)
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(name, **hub)
    return processor if layout is None else _with_layout(processor, layout)
