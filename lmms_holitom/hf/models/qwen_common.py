"""What HoliTom's Qwen2.5-VL and Qwen3-VL adapters share (docs/algorithm.md §10, §11.3–§11.4).

* `QwenVisionMixin` (mixed into the family's base model): ``get_video_features`` runs the stock method with
  `qwen_vision.QwenVisionSaliencyProbe` hooked on the encoder while the active method needs saliency, and returns the
  stock output typed (`vision_output_class`) with ``holitom`` (`HoliTomVision`: the `QwenVideoSaliency`, the token
  grids and the `StageTimer`); with ``return_dict=False`` the stock tuple;
* `QwenAdapterMixin` (mixed into the ForConditionalGeneration class): the engine's adapter methods. A HoliTom frame
  is one temporal patch group; positions are **preserved**: the stock ``get_rope_index`` runs on the dense prompt,
  and every surviving row takes the dense position of its origin (a static token: its segment's first group).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.splice import Spliced, VisualRun
from lmms_holitom.core.state import HoliTomRuntime
from lmms_holitom.core.stats import StageTimer, empty_stats
from lmms_holitom.core.video import EncodedVideo
from lmms_holitom.hf.models.qwen_vision import QwenVisionSaliencyProbe, VideoTokenGrid, video_token_grid
from lmms_holitom.hf.outputs import (
    HoliTomVision,
    HoliTomVisionOutput,
    absorb_encoded,
    holitom_vision,
    pop_return_dict,
    typed_output,
)

__all__ = ["QwenAdapterMixin", "QwenForwardMixin", "QwenVideoSaliency", "QwenVisionMixin"]

#: the forward arguments that carry media (passed to the stock forward only when given, as the stock code expects)
_MEDIA_KEYS = (
    "pixel_values", "pixel_values_videos", "image_grid_thw", "video_grid_thw", "mm_token_type_ids",
    "second_per_grid_ts", "mm_encoder_outputs",
)


@dataclass(frozen=True)
class QwenVideoSaliency:
    """The probe's findings for one ``get_video_features`` call: per video (t, N) saliency and (t, N, Dk) keys."""

    attention: list[torch.Tensor]
    keys: list[torch.Tensor]
    grids: list[VideoTokenGrid]
    peak_elements: int


class QwenVisionMixin:
    """Vision side of the Qwen adapters (see module docstring)."""

    #: the model's one `HoliTomRuntime`, set by the outer model's ``holitom_init`` (None: a base model built on its
    #: own encodes as the stock one)
    holitom_runtime: HoliTomRuntime | None = None
    #: the stock vision output class of the family with the ``holitom`` field
    vision_output_class: type = HoliTomVisionOutput

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        video_grid_thw: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Any:
        """Stock ``get_video_features`` (same arguments and output), typed with ``holitom`` (`HoliTomVision`)."""
        return_dict = pop_return_dict(self, kwargs)
        kwargs["return_dict"] = True
        runtime = self.holitom_runtime or HoliTomRuntime()
        cfg = runtime.config
        timer = StageTimer(pixel_values_videos.device, runtime.sync_timings)
        saliency = None
        with timer.stage("vision"):
            if cfg is not None and cfg.needs_saliency:
                with QwenVisionSaliencyProbe(self.visual, runtime.probe_chunk, want_keys=True) as probe:
                    output = super().get_video_features(pixel_values_videos, video_grid_thw, **kwargs)
                saliency = QwenVideoSaliency(probe.saliency(), probe.keys(), probe.grids(), probe.peak_elements)
            else:
                output = super().get_video_features(pixel_values_videos, video_grid_thw, **kwargs)
        if not return_dict:
            return output.to_tuple()
        grids = video_token_grid(video_grid_thw, self.visual.spatial_merge_size)
        return typed_output(self.vision_output_class, output, HoliTomVision(timer, saliency=saliency, grids=grids))


class QwenAdapterMixin:
    """The engine's adapter methods for Qwen-VL families; a family sets `per_group_runs` and `deepstack`."""

    #: Qwen3-VL: one placeholder run per temporal group (timestamps between); Qwen2.5-VL: one run per video.
    per_group_runs = False

    # ------------------------------------------------------------------ media
    def holitom_video_count(self, media: dict[str, Any]) -> int | None:
        grid = media["video_grid_thw"]
        return int(grid.shape[0]) if grid is not None else None

    def _encode_media(self, media: dict[str, Any], timer: StageTimer) -> dict[str, Any]:
        mm = dict(media["mm_encoder_outputs"] or {})
        absorb_encoded(timer, mm)
        if media["pixel_values"] is not None and mm.get("image") is None:
            mm["image"] = self.model.get_image_features(
                media["pixel_values"], media["image_grid_thw"], return_dict=True
            )
        if media["pixel_values_videos"] is not None and mm.get("video") is None:
            mm["video"] = self.model.get_video_features(
                media["pixel_values_videos"], media["video_grid_thw"], return_dict=True
            )
            timer.absorb(mm["video"].holitom.timer)
        return mm

    def holitom_encode(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, media: dict[str, Any],
        timer: StageTimer,
    ) -> tuple[torch.Tensor, EncodedVideo]:
        if input_ids is None:
            raise ValueError(
                "a compressed Qwen-VL prefill needs input_ids (its M-RoPE positions are computed from them)"
            )
        mm = self._encode_media(media, timer)
        embeds = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
        image_streams: tuple[torch.Tensor, ...] = ()
        image_rows = None
        if mm.get("image") is not None:  # images in the same prompt: exactly as the stock model
            image = torch.cat(mm["image"].pooler_output, dim=0).to(embeds.device, embeds.dtype)
            image_mask, _ = self.model.get_placeholder_mask(input_ids, inputs_embeds=embeds, image_features=image)
            embeds = embeds.masked_scatter(image_mask, image)
            deepstack = getattr(mm["image"], "deepstack_features", None) or ()
            image_streams = tuple(torch.cat(layer, dim=0) for layer in deepstack)
            if image_streams:
                image_rows = (input_ids[0] == self.config.image_token_id).nonzero().flatten()
        video = mm["video"]
        (grid,) = self._video_grids(video, media)
        features = video.pooler_output[0].view(grid.t, grid.n, -1)
        vision = holitom_vision(video)  # None: features encoded by a stock model
        saliency = vision.saliency if vision is not None else None
        streams = tuple(s[0].view(grid.t, grid.n, -1) for s in getattr(video, "deepstack_features", None) or ())
        return embeds, EncodedVideo(
            features=features,
            saliency=saliency.attention[0] if saliency is not None else None,
            keys=saliency.keys[0] if saliency is not None else None,
            streams=streams,
            peak_elements=saliency.peak_elements if saliency is not None else 0,
            image_streams=image_streams,
            image_rows=image_rows,
        )

    def _video_grids(self, video: Any, media: dict[str, Any]) -> list[VideoTokenGrid]:
        """The token grids of the encoded videos (``generate`` encodes them before the forward and drops
        ``video_grid_thw``; our ``get_video_features`` records them)."""
        vision = holitom_vision(video)
        grids = vision.grids if vision is not None else None
        if grids is None:
            grids = video_token_grid(media["video_grid_thw"], self.model.visual.spatial_merge_size)
        return grids

    # ------------------------------------------------------------------ layout and positions
    def holitom_layout(self, video: EncodedVideo, compressed: Any) -> VisualRun:
        F, N, E = video.features.shape
        if compressed is None:  # FastV: every token enters the LLM
            tokens = video.features.reshape(F * N, E)
            frames = torch.arange(F, device=tokens.device).repeat_interleave(N)
            positions = torch.arange(N, device=tokens.device).repeat(F)
            streams = tuple(s.reshape(F * N, -1) for s in video.streams)
            per_frame = (N,) * F
        else:
            tokens, frames, positions = compressed.tokens, compressed.frames, compressed.positions
            streams = tuple(compressed.plan.apply(s) for s in video.streams)
            per_frame = tuple(compressed.plan.frame_counts)
        runs = per_frame if self.per_group_runs else (int(tokens.shape[0]),)
        return VisualRun(
            tokens=tokens, origins=torch.stack([frames, positions], dim=1).long(), run_lengths=runs,
            dense_rows=frames.long() * N + positions.long(), streams=streams,
        )

    def holitom_dense_runs(self, video: EncodedVideo) -> tuple[int, ...]:
        F, N = video.frames, video.tokens_per_frame
        return (N,) * F if self.per_group_runs else (F * N,)

    def holitom_placeholder_mask(self, input_ids: torch.Tensor | None, embeds: torch.Tensor) -> torch.Tensor:
        return input_ids[0] == self.config.video_token_id

    def holitom_positions(
        self, spliced: Spliced, *, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
        media: dict[str, Any],
    ) -> torch.Tensor:
        """The stock dense M-RoPE positions, gathered at every row's origin (§10): (3, 1, L').

        The dense positions are the ones ``generate`` computed with the stock ``get_rope_index`` (rows 1..3 of its
        (4, B, L) tensor), else computed here the same way."""
        given = media.get("position_ids")
        if given is not None and given.dim() == 3 and given.shape[-1] == input_ids.shape[-1]:
            dense = given[-3:]
        else:
            dense = self.holitom_dense_positions(input_ids, attention_mask, media)
        return dense.index_select(2, spliced.source_rows.to(dense.device))

    def holitom_dense_positions(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, media: dict[str, Any]
    ) -> torch.Tensor:
        types = media["mm_token_type_ids"]
        if types is None:
            types = torch.zeros_like(input_ids, dtype=torch.int)
            types[input_ids == self.config.image_token_id] = 1
            types[input_ids == self.config.video_token_id] = 2
        extra = {"second_per_grid_ts": media["second_per_grid_ts"]} if media["second_per_grid_ts"] is not None else {}
        positions, _ = self.model.get_rope_index(
            input_ids, types, image_grid_thw=media["image_grid_thw"], video_grid_thw=media["video_grid_thw"],
            attention_mask=attention_mask, **extra,
        )
        return positions

    def holitom_language_model(self) -> nn.Module:
        return self.model.language_model

    # ------------------------------------------------------------------ the stock path
    def holitom_stock_stats(self, cfg: HoliTomConfig, tokens: torch.Tensor, media: dict[str, Any], timer: StageTimer):
        """Stats of a stock (dense / text / image) prefill."""
        length = int(tokens.shape[1])
        stats = empty_stats(cfg.method).replace(prompt_tokens_dense=length, prompt_tokens=length)
        video = (media["mm_encoder_outputs"] or {}).get("video")
        if video is not None or media["video_grid_thw"] is not None:
            grids = self._video_grids(video, media)
            frames, dense = sum(g.t for g in grids), sum(g.tokens for g in grids)
            stats = stats.replace(
                frames=frames, tokens_per_frame=grids[0].n, dense_tokens=dense, outer_tokens=dense,
                inner_tokens=dense, segments=frames,
            )
        return stats


class QwenForwardMixin(QwenAdapterMixin):
    """The ``forward`` / ``__init__`` glue both Qwen-VL classes share (with `hf.model.HoliTomModelMixin`)."""

    #: set by the family module: its output class, the stock PreTrainedModel class, our base-model subclass and the
    #: checkpoints' model_type
    output_class: type = object
    stock_pretrained_class: type = object
    base_model_class: type = object
    checkpoint_model_type: str = ""
    holitom_video_token = "<|video_pad|>"

    def __init__(
        self, config: Any, holitom: HoliTomConfig | Mapping[str, Any] | None = None, probe_chunk: int = 8,
        sync_timings: bool = False,
    ) -> None:
        # The stock __init__ with the base model replaced by its HoliTom subclass (same modules, same weights).
        self.stock_pretrained_class.__init__(self, config)
        self.model = self.base_model_class(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()
        self.holitom_init(holitom, probe_chunk, sync_timings)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: Any, *args: Any, holitom: Any = None, probe_chunk: int = 8,
        sync_timings: bool = False, **kwargs: Any,
    ) -> Any:
        """Load a checkpoint of this family (hub id, local folder, or its ``tiny-...`` model); ``holitom`` selects
        the method, other keyword arguments go to transformers (``output_loading_info`` included)."""
        from lmms_holitom.hf.models.checkpoints import load_family_checkpoint

        return load_family_checkpoint(
            cls, super().from_pretrained, cls.checkpoint_model_type, pretrained_model_name_or_path, args, kwargs,
            holitom=holitom, probe_chunk=probe_chunk, sync_timings=sync_timings,
        )

    def holitom_forward(self, named: dict[str, Any], kwargs: dict[str, Any]) -> Any:
        """The family's ``forward``: ``named`` its named arguments (the stock ones, in the stock order, plus ``holitom``
        and ``holitom_prompt_length``), ``kwargs`` the rest (`TransformersKwargs` and what the stock forward takes
        through ``**kwargs``, e.g. Qwen3-VL's ``use_cache``). Routed by `HoliTomModelMixin.holitom_dispatch`."""
        args = {**named, **kwargs}
        holitom, prompt_length = args.pop("holitom"), args.pop("holitom_prompt_length")
        if "past_key_values" in args:
            past = args.pop("past_key_values")
            args["cache"] = past if args.get("cache") is None else args["cache"]
        return_dict = pop_return_dict(self, args)
        media = {key: args.get(key) for key in _MEDIA_KEYS}
        media["position_ids"] = args.get("position_ids")
        encoded = media["mm_encoder_outputs"] is not None and media["mm_encoder_outputs"].get("video") is not None
        cache, input_ids, inputs_embeds = args.get("cache"), args.get("input_ids"), args.get("inputs_embeds")

        def stock() -> Any:
            passed = {k: v for k, v in args.items() if k not in _MEDIA_KEYS or v is not None}
            if not self.holitom_records_prefill(cache):
                return super(QwenForwardMixin, self).forward(**passed)
            tokens = input_ids if input_ids is not None else inputs_embeds
            timer = StageTimer(tokens.device, self.holitom_sync_timings)
            with timer.stage("prefill"):
                media["mm_encoder_outputs"] = self._encode_media(media, timer) or None
                passed = {k: v for k, v in passed.items() if not k.startswith("pixel_values")}
                passed["mm_encoder_outputs"] = media["mm_encoder_outputs"]
                with timer.stage("llm"):
                    output = super(QwenForwardMixin, self).forward(**passed)
            self.holitom_record(self.holitom_stock_stats(cfg, tokens, media, timer), timer)
            return output

        with self.holitom_override(holitom) as cfg:
            output = self.holitom_dispatch(
                cfg, has_video=media["pixel_values_videos"] is not None or encoded, stock_forward=stock,
                output_class=self.output_class, input_ids=input_ids, inputs_embeds=inputs_embeds,
                attention_mask=args.get("attention_mask"), cache=cache, use_cache=args.get("use_cache"),
                labels=args.get("labels"), logits_to_keep=args.get("logits_to_keep", 0), media=media,
                prompt_length=prompt_length,
            )
        return output if return_dict else output.to_tuple()
