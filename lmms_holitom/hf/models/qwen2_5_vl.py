"""HoliTom's adapter for Qwen2.5-VL (transformers' `Qwen2_5_VLForConditionalGeneration`), docs/algorithm.md §11.3.

One ``<|vision_start|> video_pad×(T·N) <|vision_end|>`` run per video; a frame is one temporal patch group; the
saliency comes from the encoder's last full-attention block, restored to the features' order after the window
reordering (`qwen_vision`); positions are the stock M-RoPE positions of each survivor's origin (`qwen_common`).
"""

from typing import Any

import torch
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as stock
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.hf.model import HoliTomModelMixin
from lmms_holitom.hf.models.checkpoints import register_weight_conversions
from lmms_holitom.hf.models.qwen_common import QwenForwardMixin, QwenVisionMixin

__all__ = ["HoliTomQwen2_5_VLForConditionalGeneration", "HoliTomQwen2_5_VLModel"]

# checkpoints store the legacy ``model.layers.*`` / ``visual.*`` keys: the stock mappings, under our class names
register_weight_conversions("HoliTomQwen2_5_VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration")
register_weight_conversions("HoliTomQwen2_5_VLModel", "Qwen2_5_VLModel")


class HoliTomQwen2_5_VLModel(QwenVisionMixin, stock.Qwen2_5_VLModel):
    """The stock Qwen2.5-VL base model; ``get_video_features`` also records HoliTom's saliency."""


class HoliTomQwen2_5_VLForConditionalGeneration(
    QwenForwardMixin, HoliTomModelMixin, Qwen2_5_VLForConditionalGeneration
):
    """Qwen2.5-VL with HoliTom (and VisionZip / FastV / dense) video token reduction.

    Args:
        config: a `Qwen2_5_VLConfig`.
        holitom, probe_chunk, sync_timings: as `HoliTomLlavaOnevisionForConditionalGeneration`.
    """

    output_class = stock.MultimodalCausalLMOutputWithPast
    stock_pretrained_class = stock.Qwen2_5_VLPreTrainedModel
    base_model_class = HoliTomQwen2_5_VLModel
    checkpoint_model_type = "qwen2_5_vl"

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        holitom: HoliTomConfig | None = None,
        holitom_prompt_length: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Any:
        """The stock forward (same parameters, in the same order) plus ``holitom`` (per-call configuration) and
        ``holitom_prompt_length`` (as LLaVA-OneVision's: tokens after it are continuation tokens of an uncached
        recompute)."""
        named = dict(locals())
        del named["self"], named["kwargs"]
        return self.holitom_forward(named, kwargs)
