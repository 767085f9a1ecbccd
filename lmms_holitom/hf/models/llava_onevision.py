"""HoliTom's adapter for LLaVA-OneVision and LLaVA-Video (transformers' `LlavaOnevisionForConditionalGeneration`).

`HoliTomLlavaOnevisionForConditionalGeneration` = the stock class + `hf.model.HoliTomModelMixin` + the adapter
methods the engine calls (`hf.adapter.HoliTomAdapter`). Nothing global is patched; the modules are the stock
ones (every checkpoint loads unchanged; the stock weight-key conversion is registered for our class name), the
vision side is `llava_vision.HoliTomLlavaOnevisionModel`. What is LLaVA-specific:

* layout (`layout.VideoLayout`, `llava_layout`): LLaVA-OneVision pools bilinearly to 14×14 and puts one newline
  after the video; LLaVA-Video pools 2×2-average to 13×13 with a newline after each row (docs/algorithm.md §5b);
* positions (§10): the spliced sequence is renumbered contiguously, as the authors' code does (their outputs
  reproduce only so); after the inner merge the survivors keep their ids;
* checkpoints: HF-format LLaVA-OneVision checkpoints and LLaVA-NeXT-format ones (`llava_next`), whose layout
  comes from ``mm_spatial_pool_mode`` / ``mm_newline_position`` (overridable).

``dense``, text-only and image-only prompts run the stock forward untouched; ``model.holitom_stats`` describes the
last prefill in every case.
"""

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import LlavaOnevisionForConditionalGeneration
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava_onevision.modeling_llava_onevision import (
    LlavaOnevisionCausalLMOutputWithPast,
    LlavaOnevisionPreTrainedModel,
)
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.splice import Spliced, VisualRun
from lmms_holitom.core.stats import StageTimer, empty_stats
from lmms_holitom.core.video import EncodedVideo
from lmms_holitom.hf.model import HoliTomModelMixin
from lmms_holitom.hf.models.checkpoints import register_weight_conversions
from lmms_holitom.hf.models.layout import VideoLayout
from lmms_holitom.hf.models.llava_layout import grid_run, one_token_run
from lmms_holitom.hf.models.llava_vision import HoliTomLlavaOnevisionModel
from lmms_holitom.hf.outputs import absorb_encoded, holitom_vision, pop_return_dict

__all__ = ["HoliTomLlavaOnevisionForConditionalGeneration"]

register_weight_conversions("HoliTomLlavaOnevisionForConditionalGeneration", "llava_onevision")
_LAYOUT_KWARGS = ("mm_spatial_pool_mode", "mm_spatial_pool_stride", "mm_newline_position")


class HoliTomLlavaOnevisionForConditionalGeneration(HoliTomModelMixin, LlavaOnevisionForConditionalGeneration):
    """LLaVA-OneVision / LLaVA-Video with HoliTom (and VisionZip / FastV / dense) video token reduction.

    Args:
        config: a `LlavaOnevisionConfig` (its ``mm_spatial_pool_mode`` / ``mm_newline_position`` attributes, when
            present, select the video layout).
        holitom: a `HoliTomConfig` (or a mapping). None: the paper's defaults; on a decoder with fewer layers than
            the default ``merge_layer`` (18 of 28) the merge layer moves to the same relative depth.
        probe_chunk: frames per chunk of the vision attention probe (memory ``chunk · heads · 729²`` fp32).
        sync_timings: synchronise CUDA at each stage boundary for wall-clock stage timings.

    Attributes:
        holitom: the active `HoliTomConfig` (assignment validates). ``holitom_stats``, ``holitom_trace``,
        ``holitom_last_trace``: see `HoliTomModelMixin`. ``video_layout``: the `VideoLayout`.
    """

    #: our subclass of the stock base model (``self.model``)
    base_model_class = HoliTomLlavaOnevisionModel

    def __init__(
        self,
        config: Any,
        holitom: HoliTomConfig | Mapping[str, Any] | None = None,
        probe_chunk: int = 8,
        sync_timings: bool = False,
    ) -> None:
        # The stock __init__ with the base model replaced by its HoliTom subclass (same modules, same weights).
        LlavaOnevisionPreTrainedModel.__init__(self, config)
        self.model = self.base_model_class(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()
        self.video_layout = VideoLayout.from_config_dict(config.to_dict())
        self.holitom_init(holitom, probe_chunk, sync_timings)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args: Any,
        holitom: HoliTomConfig | Mapping[str, Any] | None = None,
        probe_chunk: int = 8,
        sync_timings: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Load a LLaVA-OneVision checkpoint: HF format (``llava-hf/...``), LLaVA-NeXT format (``lmms-lab/...``,
        also LLaVA-Video), a local folder, or ``tiny``.

        ``holitom`` selects the method; ``mm_spatial_pool_mode`` / ``mm_spatial_pool_stride`` /
        ``mm_newline_position`` override the checkpoint's video layout; other keyword arguments go to transformers'
        ``from_pretrained`` (``dtype``, ``device_map``, ``attn_implementation``, ``output_loading_info``, ...).
        A checkpoint of another architecture raises a ValueError naming the model_type it has.
        """
        from lmms_holitom.hf.models.checkpoints import load_checkpoint

        overrides = {k: kwargs.pop(k) for k in _LAYOUT_KWARGS if k in kwargs}
        model, info = load_checkpoint(
            cls, super().from_pretrained, pretrained_model_name_or_path, model_args, overrides, kwargs
        )
        model.holitom_probe_chunk = probe_chunk
        model.holitom_sync_timings = sync_timings
        if holitom is not None:
            model.set_holitom(holitom)
        return (model, info) if info is not None else model

    @property
    def video_layout(self) -> VideoLayout:
        return self.model.holitom_layout

    @video_layout.setter
    def video_layout(self, layout: VideoLayout) -> None:
        """Use ``layout`` for every following video (also recorded in the config, so it is saved with it)."""
        if not isinstance(layout, VideoLayout):
            raise TypeError(f"video_layout must be a VideoLayout, got {type(layout).__name__}")
        self.model.holitom_layout = layout
        for key, value in layout.to_config_dict().items():
            setattr(self.config, key, value)

    def video_placeholder_count(self, frames: int) -> int:
        """Video placeholder ids a prompt for ``frames`` frames carries for this checkpoint's layout."""
        if int(frames) < 1:
            raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
        return self.video_layout.placeholder_count(int(frames), self.model.patch_side)

    # ------------------------------------------------------------------ forward
    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_sizes_videos: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        vision_aspect_ratio: str | None = None,
        batch_num_images: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict[str, BaseModelOutputWithPooling] | None = None,
        holitom: HoliTomConfig | Mapping[str, Any] | None = None,
        holitom_prompt_length: int | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | LlavaOnevisionCausalLMOutputWithPast:
        r"""The stock forward (same parameters, in the same order) plus two arguments.

        holitom (`HoliTomConfig`, *optional*):
            Per-call configuration (default: ``self.holitom``); only a prefill reads it.
        holitom_prompt_length (`int`, *optional*):
            Length of the prompt in ``input_ids`` (un-shortened, with all video placeholders). Tokens after it
            are continuation tokens (e.g. generated tokens recomputed without a cache): the inner-merge saliency
            is the attention of token ``holitom_prompt_length - 1`` and the continuation stays causal at layer
            K-1. Default: the whole input is the prompt.
        """
        if "past_key_values" in kwargs:
            past = kwargs.pop("past_key_values")
            cache = past if cache is None else cache
        return_dict = pop_return_dict(self, kwargs)
        media = {
            "mm_encoder_outputs": mm_encoder_outputs, "pixel_values": pixel_values, "image_sizes": image_sizes,
            "pixel_values_videos": pixel_values_videos, "vision_feature_layer": vision_feature_layer,
            "vision_feature_select_strategy": vision_feature_select_strategy, "batch_num_images": batch_num_images,
        }
        video_encoded = mm_encoder_outputs is not None and mm_encoder_outputs.get("video") is not None
        with self.holitom_override(holitom) as cfg:
            stock = dict(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, cache=cache,
                use_cache=use_cache, labels=labels, logits_to_keep=logits_to_keep, position_ids=position_ids,
                image_sizes_videos=image_sizes_videos, vision_aspect_ratio=vision_aspect_ratio, **media, **kwargs,
            )
            output = self.holitom_dispatch(
                cfg, has_video=pixel_values_videos is not None or video_encoded,
                stock_forward=lambda: self._stock_forward(cfg, **stock),
                output_class=LlavaOnevisionCausalLMOutputWithPast, input_ids=input_ids, inputs_embeds=inputs_embeds,
                attention_mask=attention_mask, cache=cache, use_cache=use_cache, labels=labels,
                logits_to_keep=logits_to_keep, media=media, prompt_length=holitom_prompt_length,
            )
        return output if return_dict else output.to_tuple()

    def _stock_forward(self, cfg: HoliTomConfig, **kwargs: Any) -> LlavaOnevisionCausalLMOutputWithPast:
        """The stock forward. A prefill also records stats: images and videos are encoded first (timed) with the
        stock methods and handed over as ``mm_encoder_outputs`` — what ``generate`` itself does."""
        if not self.holitom_records_prefill(kwargs["cache"]):
            return super().forward(**kwargs)
        tokens = kwargs["input_ids"] if kwargs["input_ids"] is not None else kwargs["inputs_embeds"]
        timer = StageTimer(tokens.device, self.holitom_sync_timings)
        pixel_values_videos = kwargs["pixel_values_videos"]
        with timer.stage("prefill"):
            kwargs["mm_encoder_outputs"] = self._encode_media(kwargs, timer) or None
            with timer.stage("llm"):
                output = super().forward(**kwargs)
        length = int(tokens.shape[1])
        stats = empty_stats(cfg.method).replace(prompt_tokens_dense=length, prompt_tokens=length)
        if output.video_outputs is not None:
            dense = int(output.video_outputs.pooler_output.shape[1])  # per video, newlines included
            vision = holitom_vision(output.video_outputs)
            features = vision.features if vision is not None else None
            per_frame = self.video_layout.tokens_per_frame(self.model.patch_side)
            frames = int(features.shape[1]) if features is not None else int(pixel_values_videos.shape[1])
            stats = stats.replace(
                frames=frames, tokens_per_frame=per_frame, dense_tokens=dense, outer_tokens=dense,
                inner_tokens=dense, segments=frames,
            )
        self.holitom_record(stats, timer)
        return output

    def _encode_media(self, media: dict[str, Any], timer: StageTimer) -> dict[str, Any]:
        """Image/video features as ``mm_encoder_outputs``: those ``generate`` encoded before this forward (their
        vision time is added to ``prefill``), plus the raw ``pixel_values``/``pixel_values_videos`` encoded here
        with exactly the calls of the stock forward. The pixel entries of ``media`` are set to None."""
        mm = dict(media["mm_encoder_outputs"] or {})
        absorb_encoded(timer, mm)
        if media["pixel_values"] is not None and mm.get("image") is None:
            mm["image"] = self.model.get_image_features(
                media["pixel_values"], media["image_sizes"], vision_feature_layer=media["vision_feature_layer"],
                vision_feature_select_strategy=media["vision_feature_select_strategy"],
                batch_num_images=media["batch_num_images"], return_dict=True,
            )
            timer.absorb(mm["image"].holitom.timer)
        if media["pixel_values_videos"] is not None and mm.get("video") is None:
            mm["video"] = self.model.get_video_features(
                media["pixel_values_videos"], vision_feature_layer=media["vision_feature_layer"],
                vision_feature_select_strategy=media["vision_feature_select_strategy"], return_dict=True,
            )
            timer.absorb(mm["video"].holitom.timer)
        media.update(pixel_values=None, pixel_values_videos=None)
        return mm

    # ------------------------------------------------------------------ the engine's adapter methods
    def holitom_language_model(self) -> nn.Module:
        return self.model.language_model

    def holitom_video_count(self, media: dict[str, Any]) -> int | None:
        pixels = media["pixel_values_videos"]
        if pixels is not None:
            return int(pixels.shape[0])
        video = (media["mm_encoder_outputs"] or {}).get("video")  # encoded by generate before the forward
        return int(video.pooler_output.shape[0]) if video is not None else None

    def holitom_encode(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, media: dict[str, Any],
        timer: StageTimer,
    ) -> tuple[torch.Tensor, EncodedVideo]:
        mm = self._encode_media(media, timer)
        embeds = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
        if mm.get("image") is not None:  # images in the same prompt: exactly as the stock model
            image_features = torch.cat(mm["image"].pooler_output, dim=0).to(embeds.device, embeds.dtype)
            image_mask, _ = self.model.get_placeholder_mask(input_ids, embeds, image_features=image_features)
            embeds = embeds.masked_scatter(image_mask, image_features)
        video = mm["video"]
        vision = holitom_vision(video)  # None: features encoded by a stock model
        features = vision.features if vision is not None else None
        if features is None and self.video_layout.grid:
            raise ValueError(
                "these video features were encoded without HoliTom's model (pre-computed mm_encoder_outputs); in the "
                "grid layout their patch grid cannot be recovered — pass pixel_values_videos"
            )
        if features is None:  # encoded by a stock model: recover the patch grid from the one-newline layout
            per_frame = self.video_layout.tokens_per_frame(self.model.patch_side)
            pooled = video.pooler_output
            features = pooled[:, :-1].reshape(pooled.shape[0], -1, per_frame, pooled.shape[-1])
        if features.shape[0] != 1:
            raise ValueError(f"a compressed method compresses one video per call, got {features.shape[0]}")
        saliency = vision.saliency if vision is not None else None
        return embeds, EncodedVideo(
            features=features[0],
            saliency=saliency.attention if saliency is not None else None,
            keys=saliency.keys if saliency is not None else None,
            newline=self.model.image_newline,
            peak_elements=saliency.peak_elements if saliency is not None else 0,
        )

    def holitom_layout(self, video: EncodedVideo, compressed: Any) -> VisualRun:
        features = video.features
        if compressed is None:  # FastV: every token enters the LLM
            F, N, E = features.shape
            tokens = features.reshape(F * N, E)
            frames = torch.arange(F, device=tokens.device).repeat_interleave(N)
            positions = torch.arange(N, device=tokens.device).repeat(F)
        else:
            tokens, frames, positions = compressed.tokens, compressed.frames, compressed.positions
        if self.video_layout.grid:
            side = self.video_layout.pooled_side(self.model.patch_side)
            return grid_run(tokens, frames, positions, video.newline, side)
        return one_token_run(tokens, frames, positions, video.newline)

    def holitom_dense_runs(self, video: EncodedVideo) -> tuple[int, ...]:
        return (self.video_layout.placeholder_count(video.frames, self.model.patch_side),)

    def holitom_placeholder_mask(self, input_ids: torch.Tensor | None, embeds: torch.Tensor) -> torch.Tensor:
        _, video_mask = self.model.get_placeholder_mask(input_ids, inputs_embeds=embeds)
        return video_mask[0, :, 0]

    def holitom_positions(
        self, spliced: Spliced, *, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
        media: dict[str, Any],
    ) -> torch.Tensor:
        """Contiguous renumbering of the spliced sequence (padding-aware), as the authors' code does (§10)."""
        mask = spliced.attention_mask  # None without padding
        if mask is None:
            return torch.arange(spliced.embeds.shape[1], device=spliced.embeds.device).unsqueeze(0)
        return (mask.long().cumsum(-1) - 1).clamp_min(0)
