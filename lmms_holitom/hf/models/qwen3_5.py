"""HoliTom's adapter for Qwen3.5 and Qwen3.5-MoE (transformers' `Qwen3_5ForConditionalGeneration`,
`Qwen3_5MoeForConditionalGeneration`), docs/algorithm.md §11.4b and §6.7.

The vision side and the prompt layout are Qwen3-VL's without deepstack: one ``<t seconds><|vision_start|> pad×N
<|vision_end|>`` run per temporal group, each shortened on its own, survivors at their stock M-RoPE positions
(`qwen_common`). The decoder is hybrid — Gated DeltaNet (linear-attention) layers and one full-attention layer in
four (``config.layer_types``) — which the engine runs by layer kind (`hf.decoder`): the merge layer K must follow a
full-attention layer (layer K-1 supplies the attention row), and the default K is the paper's moved to the nearest
such layer (`hf.model.default_merge_layer_of`). The MoE variant only changes the MLPs (inside whole decoder layers):
the two classes share everything but their stock bases and ``forward`` signatures (MoE adds
``output_router_logits``).
"""

from typing import Any

import torch
from transformers import Qwen3_5ForConditionalGeneration, Qwen3_5MoeForConditionalGeneration
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen3_5 import modeling_qwen3_5 as stock
from transformers.models.qwen3_5_moe import modeling_qwen3_5_moe as stock_moe
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.hf.model import HoliTomModelMixin
from lmms_holitom.hf.models.qwen_common import QwenForwardMixin, QwenVisionMixin

__all__ = [
    "HoliTomQwen3_5ForConditionalGeneration",
    "HoliTomQwen3_5Model",
    "HoliTomQwen3_5MoeForConditionalGeneration",
    "HoliTomQwen3_5MoeModel",
]


class HoliTomQwen3_5Model(QwenVisionMixin, stock.Qwen3_5Model):
    """The stock Qwen3.5 base model; ``get_video_features`` also records HoliTom's saliency."""


class HoliTomQwen3_5MoeModel(QwenVisionMixin, stock_moe.Qwen3_5MoeModel):
    """The stock Qwen3.5-MoE base model; ``get_video_features`` also records HoliTom's saliency."""


class HoliTomQwen3_5ForConditionalGeneration(QwenForwardMixin, HoliTomModelMixin, Qwen3_5ForConditionalGeneration):
    """Qwen3.5 with HoliTom (and VisionZip / FastV / dense) video token reduction.

    Args:
        config: a `Qwen3_5Config`.
        holitom, probe_chunk, sync_timings: as `HoliTomLlavaOnevisionForConditionalGeneration`.
    """

    output_class = stock.MultimodalCausalLMOutputWithPast
    stock_pretrained_class = stock.Qwen3_5PreTrainedModel
    base_model_class = HoliTomQwen3_5Model
    checkpoint_model_type = "qwen3_5"
    per_group_runs = True

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        holitom: HoliTomConfig | None = None,
        holitom_prompt_length: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Any:
        """The stock forward (same parameters, in the same order) plus ``holitom`` and ``holitom_prompt_length``
        (as `HoliTomQwen2_5_VLForConditionalGeneration.forward`)."""
        named = dict(locals())
        del named["self"], named["kwargs"]
        return self.holitom_forward(named, kwargs)


class HoliTomQwen3_5MoeForConditionalGeneration(
    QwenForwardMixin, HoliTomModelMixin, Qwen3_5MoeForConditionalGeneration
):
    """Qwen3.5-MoE with HoliTom; as `HoliTomQwen3_5ForConditionalGeneration` (experts inside whole decoder layers)."""

    output_class = stock_moe.Qwen3_5MoeCausalLMOutputWithPast
    stock_pretrained_class = stock_moe.Qwen3_5MoePreTrainedModel
    base_model_class = HoliTomQwen3_5MoeModel
    checkpoint_model_type = "qwen3_5_moe"
    per_group_runs = True

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        output_router_logits: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        holitom: HoliTomConfig | None = None,
        holitom_prompt_length: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Any:
        """The stock forward (same parameters, in the same order) plus ``holitom`` and ``holitom_prompt_length``;
        ``output_router_logits`` reaches the stock (dense) path only."""
        named = dict(locals())
        del named["self"], named["kwargs"]
        return self.holitom_forward(named, kwargs)
