"""HoliTom's adapter for Qwen3-VL and Qwen3-VL-MoE (transformers' `Qwen3VLForConditionalGeneration`,
`Qwen3VLMoeForConditionalGeneration`), docs/algorithm.md §11.4.

The MoE variant only changes the decoder's MLPs, which the engine calls inside whole decoder layers: the two classes
share everything (`Qwen3VLRules`) but their stock bases and ``forward`` signatures (MoE adds
``output_router_logits``).

The processor gives every temporal group its own ``<t seconds><|vision_start|> pad×N <|vision_end|>`` run; each
run is shortened on its own (a static token sits in its segment's first group's run; a run may become empty, its
timestamp and markers stay). The deepstack streams are compressed with the main features' merge plan and added
after decoder layers 0..n-1 at the visual rows; a merge layer before the last injection is rejected. Positions are
the stock M-RoPE positions of each survivor's origin (`qwen_common`); q/k norms are applied by the engine's
attention probe.
"""

from dataclasses import dataclass
from typing import Any

import torch
from transformers import Qwen3VLForConditionalGeneration, Qwen3VLMoeForConditionalGeneration
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen3_vl import modeling_qwen3_vl as stock
from transformers.models.qwen3_vl_moe import modeling_qwen3_vl_moe as stock_moe
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.hf.model import HoliTomModelMixin
from lmms_holitom.hf.models.qwen_common import QwenForwardMixin, QwenVisionMixin
from lmms_holitom.hf.outputs import HoliTomVision, StockTuple

__all__ = [
    "HoliTomQwen3VLForConditionalGeneration",
    "HoliTomQwen3VLModel",
    "HoliTomQwen3VLMoeForConditionalGeneration",
    "HoliTomQwen3VLMoeModel",
    "HoliTomQwen3VLVisionOutput",
]


@dataclass
class HoliTomQwen3VLVisionOutput(StockTuple, stock.BaseModelOutputWithDeepstackFeatures):
    """Qwen3-VL's vision output (with its deepstack features) plus ``holitom`` (`HoliTomVision`)."""

    holitom: HoliTomVision | None = None


class HoliTomQwen3VLModel(QwenVisionMixin, stock.Qwen3VLModel):
    """The stock Qwen3-VL base model; ``get_video_features`` also records HoliTom's saliency."""

    vision_output_class = HoliTomQwen3VLVisionOutput


@dataclass
class HoliTomQwen3VLMoeVisionOutput(StockTuple, stock_moe.BaseModelOutputWithDeepstackFeatures):
    """Qwen3-VL-MoE's vision output (with its deepstack features) plus ``holitom`` (`HoliTomVision`)."""

    holitom: HoliTomVision | None = None


class HoliTomQwen3VLMoeModel(QwenVisionMixin, stock_moe.Qwen3VLMoeModel):
    """The stock Qwen3-VL-MoE base model; ``get_video_features`` also records HoliTom's saliency."""

    vision_output_class = HoliTomQwen3VLMoeVisionOutput


class Qwen3VLRules:
    """The Qwen3-VL family's constraints on the merge layer (deepstack) and its per-group runs."""

    per_group_runs = True
    config: Any
    num_decoder_layers: int

    def default_merge_layer(self) -> int | None:
        """The paper's relative depth, but never before the last deepstack injection (None: no such layer)."""
        streams = len(self.config.vision_config.deepstack_visual_indexes)
        layer = max(super().default_merge_layer(), streams)  # type: ignore[misc]
        return layer if layer < self.num_decoder_layers else None

    def holitom_check_config(self, holitom: HoliTomConfig) -> None:
        """A merge layer must come after the last deepstack injection (docs/algorithm.md §11.4)."""
        streams = len(self.config.vision_config.deepstack_visual_indexes)
        if holitom.inner_mode is not None and holitom.merge_layer < streams:
            raise ValueError(
                f"merge_layer must be >= {streams} for this Qwen3-VL model: its {streams} deepstack streams are "
                f"added after decoder layers 0..{streams - 1}, before any token may be merged; got "
                f"{holitom.merge_layer}"
            )


class HoliTomQwen3VLForConditionalGeneration(
    Qwen3VLRules, QwenForwardMixin, HoliTomModelMixin, Qwen3VLForConditionalGeneration
):
    """Qwen3-VL with HoliTom (and VisionZip / FastV / dense) video token reduction.

    Args:
        config: a `Qwen3VLConfig`.
        holitom, probe_chunk, sync_timings: as `HoliTomLlavaOnevisionForConditionalGeneration`.
    """

    output_class = stock.MultimodalCausalLMOutputWithPast
    stock_pretrained_class = stock.Qwen3VLPreTrainedModel
    base_model_class = HoliTomQwen3VLModel
    checkpoint_model_type = "qwen3_vl"

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
        """The stock forward (same parameters, in the same order; ``use_cache`` comes through ``kwargs``) plus
        ``holitom`` and ``holitom_prompt_length`` (as `HoliTomQwen2_5_VLForConditionalGeneration.forward`)."""
        named = dict(locals())
        del named["self"], named["kwargs"]
        return self.holitom_forward(named, kwargs)


class HoliTomQwen3VLMoeForConditionalGeneration(
    Qwen3VLRules, QwenForwardMixin, HoliTomModelMixin, Qwen3VLMoeForConditionalGeneration
):
    """Qwen3-VL-MoE with HoliTom (and VisionZip / FastV / dense) video token reduction; as
    `HoliTomQwen3VLForConditionalGeneration` (the experts run inside the engine's whole decoder layers)."""

    output_class = stock_moe.Qwen3VLMoeCausalLMOutputWithPast
    stock_pretrained_class = stock_moe.Qwen3VLMoePreTrainedModel
    base_model_class = HoliTomQwen3VLMoeModel
    checkpoint_model_type = "qwen3_vl_moe"

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
