"""HoliTom inside transformers' LLaVA-OneVision: subclasses of `LlavaOnevisionModel` and
`LlavaOnevisionForConditionalGeneration`.

Nothing global is patched. The subclasses have exactly the stock modules (every LLaVA-OneVision checkpoint
loads unchanged; the stock weight-key conversion is registered for the two class names), and:

* `HoliTomLlavaOnevisionModel.get_video_features` runs the stock method — with, when the active method
  needs it, `VisionSaliencyProbe` hooked on ONE of its own vision attention modules for the duration of the
  call — and attaches the pooled saliency (``.holitom_saliency``) and its own stage timer (``.holitom_timer``)
  to the returned output. (transformers 5.x ``generate`` calls ``get_video_features`` itself before the first
  forward and hands the result over as ``mm_encoder_outputs``; this is why the probe lives here.)
* `HoliTomLlavaOnevisionForConditionalGeneration.forward` handles the video prefill and the decoding steps
  after it.

Prefill of a prompt with a video (method != ``dense``), batch size 1:

1. text embeddings; images (if any) are scattered in as in the stock model;
2. ``vision``: stock video features (tower on SDPA/flash, projector, bilinear pooling, newline) + saliency;
3. ``outer_merge``: `lmms_holitom.ops.compress_video` (HoliTom / VisionZip; FastV keeps all tokens), the
   ``image_newline`` token appended, and the run of ``F·N + 1`` video placeholders replaced by the ``V``
   compressed tokens — the sequence entering the LLM is shorter and gets contiguous positions ``0..L'-1``;
4. ``llm``: `decoder.prefill_decoder`, with the inner merge at ``merge_layer`` (HoliTom merge / FastV drop);
5. the cache carries a `HoliTomCacheState`; later steps (`decoder.decode_decoder`) take positions and
   per-layer masks from it and ignore ``generate``'s ``position_ids``/``attention_mask`` (which count the
   un-shortened prompt).

``generate`` returns the caller's full ``input_ids`` followed by the new tokens, as the stock model does.
Compressed methods are inference-only: their forward runs under ``torch.no_grad`` and rejects ``labels``.
The logits of a compressed prefill cover the shortened sequence (the last position is still the last prompt
token). ``dense``, text-only and image-only prompts run the stock forward untouched.

``model.holitom_stats`` describes the last prefill (`docs/CONTRACTS.md`; timings: `lmms_holitom.models.stats`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import LlavaOnevisionForConditionalGeneration, LlavaOnevisionModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_utils import slice_logits_to_keep
from transformers.models.llava_onevision.modeling_llava_onevision import (
    LlavaOnevisionCausalLMOutputWithPast,
    LlavaOnevisionPreTrainedModel,
)

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.models.decoder import (
    HoliTomCacheState,
    InnerMergeSpec,
    check_language_model,
    decode_decoder,
    prefill_decoder,
)
from lmms_holitom.models.names import resolve_model_name
from lmms_holitom.models.probes import VisionSaliencyProbe, feature_attention_module
from lmms_holitom.models.stats import StageTimer, empty_stats

__all__ = [
    "SUPPORTED_TEXT_MODELS",
    "HoliTomLlavaOnevisionForConditionalGeneration",
    "HoliTomLlavaOnevisionModel",
    "VideoSaliency",
    "check_checkpoint",
    "default_merge_layer",
]

logger = logging.getLogger(__name__)

#: Decoder families whose layers `decoder.py` and `probes.last_token_attention` handle (q/k projections,
#: rotate-half RoPE, no q/k norm).
SUPPORTED_TEXT_MODELS = ("qwen2", "llama", "mistral")
_HUB_KWARGS = (
    "cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies",
    "trust_remote_code",
)
_PAPER_MERGE_LAYER, _PAPER_LAYERS = 18, 28


def _register_weight_conversions() -> None:
    """Checkpoints are stored in LLaVA-NeXT key layout (``language_model.lm_head...``); transformers maps them
    by class name or model_type, but skips classes defined outside transformers unless registered. Register the
    stock ``llava_onevision`` mapping under our class names (the public extension point; nothing else changes).
    """
    try:
        from transformers.conversion_mapping import (
            get_checkpoint_conversion_mapping,
            register_checkpoint_conversion_mapping,
        )
    except ImportError:  # a transformers without key conversions: checkpoints load by their own keys
        return
    mapping = get_checkpoint_conversion_mapping("llava_onevision")
    if mapping is not None:
        register_checkpoint_conversion_mapping(
            "HoliTomLlavaOnevisionForConditionalGeneration", mapping, overwrite=True
        )


_register_weight_conversions()


def default_merge_layer(num_layers: int) -> int:
    """``merge_layer`` 18 (the paper's, of 28 layers) when the decoder has more than 18 layers; otherwise the same
    relative depth, ``round(18 * num_layers / 28)`` clamped to [1, num_layers - 1]."""
    if num_layers > _PAPER_MERGE_LAYER:
        return _PAPER_MERGE_LAYER
    return max(1, min(num_layers - 1, round(_PAPER_MERGE_LAYER * num_layers / _PAPER_LAYERS)))


def check_checkpoint(pretrained: str | os.PathLike, config: Any = None, **hub_kwargs: Any) -> None:
    """Raise a ValueError naming the model_type found unless ``pretrained`` is a LLaVA-OneVision checkpoint."""
    from transformers import PretrainedConfig

    if config is None or isinstance(config, (str, os.PathLike)):
        source = pretrained if config is None else config
        try:
            config_dict, _ = PretrainedConfig.get_config_dict(source, **hub_kwargs)
        except OSError as err:
            raise OSError(f"cannot read the config of {str(source)!r}: {err}") from err
        model_type = config_dict.get("model_type")
        archs = config_dict.get("architectures") or []
        text_type = (config_dict.get("text_config") or {}).get("model_type", "qwen2")
    else:
        model_type = getattr(config, "model_type", None)
        archs = getattr(config, "architectures", None) or []
        text_type = getattr(getattr(config, "text_config", None), "model_type", "qwen2")
    if model_type != "llava_onevision":
        found = f"model_type {model_type!r}" + (f" ({', '.join(archs)})" if archs else "")
        raise ValueError(
            f"{str(pretrained)!r} is not a LLaVA-OneVision checkpoint: expected model_type 'llava_onevision', "
            f"found {found}. HoliTom runs on LLaVA-OneVision-architecture models (llava-hf/llava-onevision-*-hf, "
            "llava-hf/LLaVA-Video-7B-Qwen2-hf)."
        )
    if text_type not in SUPPORTED_TEXT_MODELS:
        raise ValueError(
            f"{str(pretrained)!r} has a {text_type!r} language model; HoliTom's decoder supports "
            f"{', '.join(SUPPORTED_TEXT_MODELS)}"
        )


@dataclass
class VideoSaliency:
    """What the vision probe found for one `get_video_features` call (attached as ``.holitom_saliency``).

    Attributes:
        attention: (B·F, N) fp32, received attention pooled like the features (spec §1).
        keys: (B·F, N, head_dim) fp32, head-averaged keys of the same layer, pooled like the features (VisionZip).
        raw_attention: (B·F, T) fp32 before pooling (T = 729 patches for SigLIP-384/14).
        peak_elements: elements of the largest score tensor the probe created (chunk · heads · T²).
        chunk: frames per probe chunk.
    """

    attention: torch.Tensor
    keys: torch.Tensor
    raw_attention: torch.Tensor
    peak_elements: int
    chunk: int


class HoliTomLlavaOnevisionModel(LlavaOnevisionModel):
    """The stock LLaVA-OneVision base model; `get_video_features` also records HoliTom's vision saliency.

    Attributes:
        holitom_encode: the configuration the next video encoding serves (set by the outer model); saliency is
            computed when ``holitom_encode.outer_merge`` (HoliTom, VisionZip).
        holitom_probe_chunk: frames per chunk of the probe.
        holitom_sync_timings: see `stats.StageTimer`.
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.holitom_encode: HoliTomConfig | None = None
        self.holitom_probe_chunk = 8
        self.holitom_sync_timings = False

    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Stock `get_video_features` (same arguments and output), plus ``.holitom_saliency``
        (`VideoSaliency` or None) and ``.holitom_timer`` (a `StageTimer` with the ``vision`` stage)."""
        if pixel_values_videos.ndim != 5 or pixel_values_videos.shape[1] == 0:
            raise ValueError(
                "the video has 0 frames or a wrong shape: pixel_values_videos must be (batch, frames >= 1, "
                f"channels, height, width), got {tuple(pixel_values_videos.shape)}"
            )
        return_dict = kwargs.pop("return_dict", True)
        vision_feature_layer = (
            self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        )
        vision_feature_select_strategy = vision_feature_select_strategy or self.config.vision_feature_select_strategy
        cfg = self.holitom_encode
        probe = None
        if cfg is not None and cfg.outer_merge:
            module = feature_attention_module(self.vision_tower, vision_feature_layer)
            probe = VisionSaliencyProbe(module, self.holitom_probe_chunk, want_keys=True)
        timer = StageTimer(pixel_values_videos.device, self.holitom_sync_timings)
        with timer.stage("vision"):
            if probe is None:
                output = super().get_video_features(
                    pixel_values_videos, vision_feature_layer=vision_feature_layer,
                    vision_feature_select_strategy=vision_feature_select_strategy, return_dict=True, **kwargs,
                )
                saliency = None
            else:
                with probe:
                    output = super().get_video_features(
                        pixel_values_videos, vision_feature_layer=vision_feature_layer,
                        vision_feature_select_strategy=vision_feature_select_strategy, return_dict=True, **kwargs,
                    )
                rows = pixel_values_videos.shape[0] * pixel_values_videos.shape[1]
                saliency = self._pool_saliency(probe, rows, vision_feature_select_strategy)
        output.holitom_saliency = saliency
        output.holitom_timer = timer
        return output if return_dict else output.to_tuple()

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        image_sizes: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        vision_aspect_ratio: str | None = None,
        batch_num_images: torch.LongTensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Stock `get_image_features` (same arguments — ``generate`` selects them by name — and output), plus
        ``.holitom_timer`` (a `StageTimer` with the ``vision`` stage)."""
        return_dict = kwargs.pop("return_dict", True)
        timer = StageTimer(pixel_values.device, self.holitom_sync_timings)
        with timer.stage("vision"):
            output = super().get_image_features(
                pixel_values, image_sizes, vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                vision_aspect_ratio=vision_aspect_ratio, batch_num_images=batch_num_images, return_dict=True,
                **kwargs,
            )
        output.holitom_timer = timer
        return output if return_dict else output.to_tuple()

    def _pool_saliency(self, probe: VisionSaliencyProbe, rows: int, select_strategy: str) -> VideoSaliency:
        """Probe outputs pooled exactly like the features (`apply_pooling`, bilinear 27×27 -> 14×14)."""
        if probe.attention is None or probe.keys is None or probe.calls != 1 or probe.attention.shape[0] != rows:
            seen = None if probe.attention is None else tuple(probe.attention.shape)
            raise RuntimeError(
                f"the vision attention probe saw {probe.calls} call(s) giving {seen}; expected one call over "
                f"{rows} frames"
            )
        attention, keys = probe.attention, probe.keys
        if select_strategy == "default":  # the features drop the first token; so does the saliency
            attention, keys = attention[:, 1:], keys[:, 1:]
        return VideoSaliency(
            attention=self.apply_pooling(attention.unsqueeze(-1).contiguous()).squeeze(-1),
            keys=self.apply_pooling(keys.contiguous()),
            raw_attention=probe.attention,
            peak_elements=probe.peak_elements,
            chunk=probe.chunk,
        )


class HoliTomLlavaOnevisionForConditionalGeneration(LlavaOnevisionForConditionalGeneration):
    """LLaVA-OneVision with HoliTom (and VisionZip / FastV / dense) video token reduction.

    Args:
        config: a `LlavaOnevisionConfig`.
        holitom: a `HoliTomConfig` (or a mapping for `HoliTomConfig.from_dict`). None: the paper's defaults;
            when the model has fewer layers than the default ``merge_layer`` (18 of 28), the merge layer is put
            at the same relative depth, with a log line. An explicit config is validated strictly.
        probe_chunk: frames per chunk of the vision attention probe (memory ``chunk · heads · 729²`` fp32).
        sync_timings: synchronise CUDA at each stage boundary for wall-clock stage timings (see `stats`).

    Attributes:
        holitom: the active `HoliTomConfig` (assignment validates, like `set_holitom`).
        holitom_stats: statistics of the last prefill (None before the first one).
        holitom_debug: tensors of the last compressed prefill, for inspection and tests: ``saliency``
            (`VideoSaliency` or None), ``compressed`` (the `CompressedVideo` or None), ``visual_start``,
            ``visual_length``, ``inner_attention`` (V,) and ``inner_keep`` (indices kept for layers >= K).
    """

    def __init__(
        self,
        config: Any,
        holitom: HoliTomConfig | Mapping[str, Any] | None = None,
        probe_chunk: int = 8,
        sync_timings: bool = False,
    ) -> None:
        # The stock __init__ with the base model replaced by its HoliTom subclass (same modules, same weights).
        LlavaOnevisionPreTrainedModel.__init__(self, config)
        self.model = HoliTomLlavaOnevisionModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()
        self.holitom_debug: dict[str, Any] = {}
        self._holitom_stats: dict[str, Any] | None = None
        self._holitom_timer: StageTimer | None = None
        self.holitom_probe_chunk = probe_chunk
        self.holitom_sync_timings = sync_timings
        self.set_holitom(self._default_holitom() if holitom is None else holitom)

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
    ) -> HoliTomLlavaOnevisionForConditionalGeneration:
        """Load any LLaVA-OneVision checkpoint (hub id, local folder, lmms-lab name, or ``tiny``).

        ``holitom`` selects the method; other keyword arguments go to transformers' ``from_pretrained``
        (``dtype``, ``device_map``, ``attn_implementation``, ...). A checkpoint of another architecture raises a
        ValueError naming the model_type it has.
        """
        name = pretrained_model_name_or_path
        if isinstance(name, (str, os.PathLike)):
            name = resolve_model_name(os.fspath(name))
        hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        check_checkpoint(name, kwargs.get("config"), **hub_kwargs)
        model = super().from_pretrained(name, *model_args, **kwargs)
        model.holitom_probe_chunk = probe_chunk
        model.holitom_sync_timings = sync_timings
        if holitom is not None:
            model.set_holitom(holitom)
        return model

    # ------------------------------------------------------------------ configuration
    @property
    def num_decoder_layers(self) -> int:
        return int(self.config.get_text_config().num_hidden_layers)

    @property
    def holitom_probe_chunk(self) -> int:
        return self.model.holitom_probe_chunk

    @holitom_probe_chunk.setter
    def holitom_probe_chunk(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"probe_chunk must be an integer >= 1, got {value!r}")
        self.model.holitom_probe_chunk = int(value)

    @property
    def holitom_sync_timings(self) -> bool:
        return self.model.holitom_sync_timings

    @holitom_sync_timings.setter
    def holitom_sync_timings(self, value: bool) -> None:
        self.model.holitom_sync_timings = bool(value)

    def default_merge_layer(self) -> int:
        """The paper's merge layer (18 of 28) for this decoder: 18 if it exists, else the same relative depth."""
        return default_merge_layer(self.num_decoder_layers)

    def _default_holitom(self) -> HoliTomConfig:
        cfg = HoliTomConfig()
        n = self.num_decoder_layers
        if cfg.merge_layer is not None and cfg.merge_layer >= n:
            layer = default_merge_layer(n)
            logger.info(
                "lmms-holitom: default merge_layer %d does not exist in this %d-layer decoder; using %d "
                "(same relative depth as 18 of 28)", cfg.merge_layer, n, layer,
            )
            cfg = cfg.replace(merge_layer=layer)
        return cfg

    def validate_holitom(self, holitom: HoliTomConfig | Mapping[str, Any]) -> HoliTomConfig:
        """``holitom`` as a `HoliTomConfig`, checked against this model (merge_layer in [1, layers - 1])."""
        if isinstance(holitom, Mapping):
            holitom = HoliTomConfig.from_dict(holitom)
        if not isinstance(holitom, HoliTomConfig):
            raise TypeError(f"holitom must be a HoliTomConfig or a mapping, got {type(holitom).__name__}")
        n = self.num_decoder_layers
        if holitom.inner_mode is not None and not 1 <= holitom.merge_layer < n:
            raise ValueError(
                f"merge_layer must be in [1, {n - 1}] for this model ({n} decoder layers), got "
                f"{holitom.merge_layer} (method {holitom.method!r})"
            )
        return holitom

    def set_holitom(self, holitom: HoliTomConfig | Mapping[str, Any]) -> HoliTomConfig:
        """Validate ``holitom`` against this model and make it the active configuration."""
        cfg = self.validate_holitom(holitom)
        self._holitom = cfg
        self.model.holitom_encode = cfg
        return cfg

    @property
    def holitom(self) -> HoliTomConfig:
        return self._holitom

    @holitom.setter
    def holitom(self, value: HoliTomConfig | Mapping[str, Any]) -> None:
        self.set_holitom(value)

    @contextmanager
    def holitom_override(self, holitom: HoliTomConfig | Mapping[str, Any] | None) -> Iterator[HoliTomConfig]:
        """Temporarily make ``holitom`` the active configuration (None: keep the current one)."""
        previous = self._holitom
        if holitom is None:
            yield previous
            return
        cfg = self.set_holitom(holitom)
        try:
            yield cfg
        finally:
            self.set_holitom(previous)

    @property
    def holitom_stats(self) -> dict[str, Any] | None:
        """Stats of the last prefill; CUDA-event timings are resolved (one sync) on first read."""
        if self._holitom_stats is not None and self._holitom_timer is not None:
            self._holitom_stats["timings_ms"] = self._holitom_timer.resolve()
            self._holitom_timer = None
        return self._holitom_stats

    def _record(self, stats: dict[str, Any], timer: StageTimer) -> None:
        self._holitom_stats = stats
        self._holitom_timer = timer
        if not timer.pending:
            stats["timings_ms"] = timer.resolve()
            self._holitom_timer = None

    def _tokens_per_frame(self) -> int:
        side = self.config.vision_config.image_size // self.config.vision_config.patch_size
        return math.ceil(side / 2) ** 2

    # ------------------------------------------------------------------ generate
    def generate(self, inputs: torch.Tensor | None = None, *args: Any, holitom: Any = None, **kwargs: Any) -> Any:
        """`GenerationMixin.generate`, plus ``holitom=`` (a per-call configuration, active for this call only).

        It also passes ``holitom_prompt_length`` (the prompt length) to every forward, so that
        ``use_cache=False`` recomputes each step with the same compression as cached decoding.
        """
        ids = inputs if inputs is not None else kwargs.get("input_ids")
        if ids is None and kwargs.get("inputs_embeds") is not None:
            ids = kwargs["inputs_embeds"][..., 0]
        if ids is not None and kwargs.get("holitom_prompt_length") is None:
            kwargs["holitom_prompt_length"] = int(ids.shape[1])
        with self.holitom_override(holitom):
            return super().generate(inputs, *args, **kwargs)

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
        mm_encoder_outputs: dict[str, Any] | None = None,
        holitom: HoliTomConfig | Mapping[str, Any] | None = None,
        holitom_prompt_length: int | None = None,
        **kwargs: Any,
    ) -> LlavaOnevisionCausalLMOutputWithPast | tuple:
        r"""The stock forward plus two arguments.

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
        return_dict = kwargs.pop("return_dict", True)
        with self.holitom_override(holitom) as cfg:
            state = getattr(cache, "_holitom_state", None) if cache is not None else None
            video_encoded = mm_encoder_outputs is not None and mm_encoder_outputs.get("video") is not None
            has_video = pixel_values_videos is not None or video_encoded
            common = {
                "input_ids": input_ids, "pixel_values": pixel_values, "image_sizes": image_sizes,
                "attention_mask": attention_mask, "inputs_embeds": inputs_embeds,
                "vision_feature_layer": vision_feature_layer,
                "vision_feature_select_strategy": vision_feature_select_strategy,
                "batch_num_images": batch_num_images, "logits_to_keep": logits_to_keep, "cache": cache,
                "mm_encoder_outputs": mm_encoder_outputs, "pixel_values_videos": pixel_values_videos,
                "use_cache": use_cache, "labels": labels,
            }
            if state is not None:
                if has_video:
                    raise ValueError("a video cannot be added to a cache that already holds a HoliTom prefill")
                with torch.no_grad():  # compressed methods are inference-only
                    output = self._decode_step(input_ids, inputs_embeds, cache, state, logits_to_keep)
            elif has_video and cfg.method != "dense":
                with torch.no_grad():
                    output = self._compressed_prefill(cfg, prompt_length=holitom_prompt_length, **common)
            else:
                output = self._stock_forward(
                    cfg, image_sizes_videos=image_sizes_videos, position_ids=position_ids,
                    vision_aspect_ratio=vision_aspect_ratio, **common, **kwargs,
                )
        return output if return_dict else output.to_tuple()

    # ------------------------------------------------------------------ stock path (dense, text, images)
    def _encode_media(self, kwargs: dict[str, Any], timer: StageTimer) -> dict[str, Any]:
        """Image/video features as ``mm_encoder_outputs``: those ``generate`` encoded before this forward (their
        vision time is added to ``prefill``), plus the raw ``pixel_values``/``pixel_values_videos`` encoded here
        with exactly the calls of the stock forward. The pixel entries of ``kwargs`` are set to None."""
        mm = dict(kwargs["mm_encoder_outputs"] or {})
        for encoded in mm.values():
            if encoded is not None and getattr(encoded, "holitom_timer", None) is not None:
                timer.absorb(encoded.holitom_timer, also_as="prefill")
        if kwargs["pixel_values"] is not None and mm.get("image") is None:
            mm["image"] = self.model.get_image_features(
                kwargs["pixel_values"], kwargs["image_sizes"], vision_feature_layer=kwargs["vision_feature_layer"],
                vision_feature_select_strategy=kwargs["vision_feature_select_strategy"],
                batch_num_images=kwargs["batch_num_images"], return_dict=True,
            )
            timer.absorb(mm["image"].holitom_timer)
        if kwargs["pixel_values_videos"] is not None and mm.get("video") is None:
            mm["video"] = self.model.get_video_features(
                kwargs["pixel_values_videos"], vision_feature_layer=kwargs["vision_feature_layer"],
                vision_feature_select_strategy=kwargs["vision_feature_select_strategy"], return_dict=True,
            )
            timer.absorb(mm["video"].holitom_timer)
        kwargs.update(pixel_values=None, pixel_values_videos=None)
        return mm

    def _stock_forward(self, cfg: HoliTomConfig, **kwargs: Any) -> LlavaOnevisionCausalLMOutputWithPast:
        """The stock forward. A prefill also records stats: images and videos are encoded first (timed) with the
        stock methods and handed over as ``mm_encoder_outputs`` — what ``generate`` itself does."""
        cache = kwargs["cache"]
        if cache is not None and cache.get_seq_length() > 0:
            return super().forward(**kwargs)
        tokens = kwargs["input_ids"] if kwargs["input_ids"] is not None else kwargs["inputs_embeds"]
        timer = StageTimer(tokens.device, self.holitom_sync_timings)
        stats = empty_stats(cfg.method, None)
        pixel_values_videos = kwargs["pixel_values_videos"]
        with timer.stage("prefill"):
            kwargs["mm_encoder_outputs"] = self._encode_media(kwargs, timer) or None
            with timer.stage("llm"):
                output = super().forward(**kwargs)
        length = int(tokens.shape[1])
        stats.update(prompt_tokens_dense=length, prompt_tokens=length)
        if output.video_outputs is not None:
            dense = int(output.video_outputs.pooler_output.shape[1])  # F*N + 1 (per video)
            per_frame = self._tokens_per_frame()
            frames = int(pixel_values_videos.shape[1]) if pixel_values_videos is not None else (dense - 1) // per_frame
            stats.update(
                frames=frames, tokens_per_frame=per_frame, dense_tokens=dense, outer_tokens=dense,
                inner_tokens=dense, segments=frames,
            )
        self._record(stats, timer)
        return output

    # ------------------------------------------------------------------ compressed prefill
    def _compressed_prefill(
        self,
        cfg: HoliTomConfig,
        *,
        input_ids: torch.LongTensor | None,
        pixel_values: torch.Tensor | None,
        image_sizes: torch.LongTensor | None,
        pixel_values_videos: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        cache: Cache | None,
        use_cache: bool | None,
        labels: torch.LongTensor | None,
        vision_feature_layer: Any,
        vision_feature_select_strategy: str | None,
        batch_num_images: torch.LongTensor | None,
        logits_to_keep: int | torch.Tensor,
        mm_encoder_outputs: dict[str, Any] | None,
        prompt_length: int | None,
    ) -> LlavaOnevisionCausalLMOutputWithPast:
        """Prefill of a prompt with one video under HoliTom / VisionZip / FastV (module docstring, steps 1-5)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        if labels is not None:
            raise NotImplementedError(
                f"labels (training loss) are not supported with method {cfg.method!r}: the sequence is shortened"
            )
        batch = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        videos = pixel_values_videos.shape[0] if pixel_values_videos is not None else None
        if batch != 1 or videos not in (None, 1):
            raise ValueError(
                f"method {cfg.method!r} compresses one video per call: got batch size {batch} with {videos} "
                "video(s); use batch size 1 (one video per prompt) or method 'dense'"
            )
        if cache is not None and cache.get_seq_length() > 0:
            raise NotImplementedError("a video prefill must start from an empty cache under HoliTom")
        vision_feature_layer = (
            self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        )
        vision_feature_select_strategy = vision_feature_select_strategy or self.config.vision_feature_select_strategy
        use_cache = self.config.get_text_config().use_cache if use_cache is None else use_cache
        language_model = self.model.language_model
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config.get_text_config())
        check_language_model(language_model, cache)

        device = (input_ids if input_ids is not None else inputs_embeds).device
        timer = StageTimer(device, self.holitom_sync_timings)
        media = {
            "mm_encoder_outputs": mm_encoder_outputs, "pixel_values": pixel_values, "image_sizes": image_sizes,
            "pixel_values_videos": pixel_values_videos, "vision_feature_layer": vision_feature_layer,
            "vision_feature_select_strategy": vision_feature_select_strategy, "batch_num_images": batch_num_images,
        }
        with timer.stage("prefill"):
            mm = self._encode_media(media, timer)
            embeds = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
            if mm.get("image") is not None:  # images in the same prompt: exactly as the stock model
                image_features = torch.cat(mm["image"].pooler_output, dim=0).to(embeds.device, embeds.dtype)
                image_mask, _ = self.model.get_placeholder_mask(input_ids, embeds, image_features=image_features)
                embeds = embeds.masked_scatter(image_mask, image_features)
            video = mm["video"]
            saliency: VideoSaliency | None = getattr(video, "holitom_saliency", None)
            if cfg.outer_merge and saliency is None:
                raise ValueError(
                    f"method {cfg.method!r} needs the vision saliency recorded while the video is encoded; these "
                    "video features were encoded without it (pre-computed mm_encoder_outputs?) — pass "
                    "pixel_values_videos, or use method 'dense' or 'fastv'"
                )
            pooled = video.pooler_output
            if pooled.shape[0] != 1:
                raise ValueError(f"method {cfg.method!r} compresses one video per call, got {pooled.shape[0]}")
            per_frame = self._tokens_per_frame()
            frames = (pooled.shape[1] - 1) // per_frame
            features = pooled[0, :-1].reshape(frames, per_frame, pooled.shape[-1])
            newline = pooled[0, -1]

            with timer.stage("outer_merge"):
                from lmms_holitom.ops import compress_video

                compressed = None
                if cfg.outer_merge:
                    compressed = compress_video(features, saliency.attention, cfg, keys=saliency.keys)
                    tokens = compressed.tokens
                else:
                    tokens = features.reshape(-1, features.shape[-1])
                visual = torch.cat([tokens, newline.unsqueeze(0).to(tokens.dtype)]).to(embeds.device, embeds.dtype)
                embeds, attention_mask, start, dense_run = self._splice_video(
                    input_ids, embeds, attention_mask, visual, frames * per_frame + 1
                )
            v = int(visual.shape[0])
            removed = dense_run - v
            length_dense = embeds.shape[1] + removed
            prompt_dense = length_dense if prompt_length is None else int(prompt_length)
            if not start + dense_run <= prompt_dense <= length_dense:
                raise ValueError(
                    f"holitom_prompt_length must cover the video and not exceed the input: the video ends at "
                    f"{start + dense_run}, the input has {length_dense} tokens, got {prompt_length}"
                )
            prompt = prompt_dense - removed
            if attention_mask is not None and bool(attention_mask.all()):
                attention_mask = None
            if attention_mask is None:
                position_ids = torch.arange(embeds.shape[1], device=embeds.device).unsqueeze(0)
            else:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)

            inner = None
            if cfg.inner_mode is not None:
                inner = InnerMergeSpec(
                    layer=cfg.merge_layer, ratio=cfg.merge_ratio, mode=cfg.inner_mode, fidelity=cfg.fidelity,
                    visual_start=start, visual_length=v,
                )
            with timer.stage("llm"):
                result = prefill_decoder(
                    language_model, embeds, attention_mask=attention_mask, position_ids=position_ids,
                    prompt_length=prompt, cache=cache, use_cache=use_cache, inner=inner, timer=timer,
                )
                logits = self.lm_head(slice_logits_to_keep(result.last_hidden_state, logits_to_keep))

        if use_cache and cache is not None:
            dropped = inner.visual_length - inner.kept_visual if inner is not None else 0
            mask_high = attention_mask
            if attention_mask is not None and result.keep is not None:
                mask_high = attention_mask[:, result.keep.to(attention_mask.device)]
            cache._holitom_state = HoliTomCacheState(
                merge_layer=inner.layer if inner is not None else None,
                prompt_length=prompt,
                prompt_length_high=prompt - dropped,
                next_position=prompt if attention_mask is None else int(position_ids[0, prompt - 1]) + 1,
                mask_low=attention_mask[:, :prompt] if attention_mask is not None else None,
                mask_high=mask_high[:, : prompt - dropped] if mask_high is not None else None,
                method=cfg.method,
            )

        stats = empty_stats(cfg.method, cfg.merge_layer if inner is not None else None)
        cstats = compressed.stats if compressed is not None else {}
        stats.update(
            frames=frames,
            tokens_per_frame=per_frame,
            dense_tokens=dense_run,
            outer_tokens=v,
            inner_tokens=inner.kept_visual if inner is not None else v,
            segments=int(cstats.get("segments", frames)),
            static_tokens=int(cstats.get("static_tokens", 0)),
            prompt_tokens_dense=prompt_dense,
            prompt_tokens=prompt,
            probe_peak_elements=saliency.peak_elements if saliency is not None else 0,
        )
        self.holitom_debug = {
            "saliency": saliency,
            "compressed": compressed,
            "visual_start": start,
            "visual_length": v,
            "inner_attention": result.attention_row,
            "inner_keep": result.keep,
        }
        self._record(stats, timer)
        return LlavaOnevisionCausalLMOutputWithPast(logits=logits, cache=cache if use_cache else None)

    def _splice_video(
        self,
        input_ids: torch.LongTensor | None,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        visual: torch.Tensor,
        expected: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
        """Replace the run of ``expected`` video placeholders by ``visual`` (V, E).

        Returns:
            new embeddings (1, L - expected + V, E), the 2D mask shortened the same way (or None), the start
            index of the run and its (dense) length.
        """
        _, video_mask = self.model.get_placeholder_mask(input_ids, inputs_embeds=embeds)
        where = video_mask[0, :, 0].nonzero().flatten()
        count = int(where.numel())
        if count != expected:
            raise ValueError(
                f"Video features and video tokens do not match, tokens: {count}, features: {expected} "
                "(the processor expands one <video> into frames * tokens_per_frame + 1 placeholders)"
            )
        start = int(where[0])
        if int(where[-1]) - start + 1 != count:
            raise ValueError("the video placeholders must form one contiguous run (one video per prompt)")
        stop = start + count
        embeds = torch.cat([embeds[:, :start], visual.unsqueeze(0), embeds[:, stop:]], dim=1)
        if attention_mask is not None:
            run = attention_mask[:, start : start + 1].expand(-1, visual.shape[0])
            attention_mask = torch.cat([attention_mask[:, :start], run, attention_mask[:, stop:]], dim=1)
        return embeds, attention_mask, start, count

    # ------------------------------------------------------------------ decoding
    def _decode_step(
        self,
        input_ids: torch.LongTensor | None,
        inputs_embeds: torch.Tensor | None,
        cache: Cache,
        state: HoliTomCacheState,
        logits_to_keep: int | torch.Tensor,
    ) -> LlavaOnevisionCausalLMOutputWithPast:
        """A decoding forward after a HoliTom prefill (positions and masks from ``cache._holitom_state``)."""
        embeds = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
        if embeds.shape[0] != 1:
            raise ValueError(f"HoliTom decoding runs with batch size 1, got {embeds.shape[0]}")
        hidden = decode_decoder(self.model.language_model, embeds, state=state, cache=cache)
        logits = self.lm_head(slice_logits_to_keep(hidden, logits_to_keep))
        return LlavaOnevisionCausalLMOutputWithPast(logits=logits, cache=cache)
