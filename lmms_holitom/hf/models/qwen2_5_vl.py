"""HoliTom's adapter for Qwen2.5-VL (transformers' `Qwen2_5_VLForConditionalGeneration`), docs/algorithm.md §11.3.

One ``<|vision_start|> video_pad×(T·N) <|vision_end|>`` run per video; a frame is one temporal patch group; the
saliency comes from the encoder's last full-attention block, restored to the features' order after the window
reordering (`qwen_vision`); positions are the stock M-RoPE positions of each survivor's origin (`qwen_common`).
"""

from __future__ import annotations

from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as stock

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
