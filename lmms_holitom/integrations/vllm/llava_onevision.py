"""LLaVA-OneVision in vLLM with HoliTom's outer merge (and the other pre-LLM methods).

Mirrors, in vLLM 0.32's ``vllm/model_executor/models/llava_onevision.py``:

* ``LlavaOnevisionProcessingInfo.get_num_video_tokens`` — ``F · N + 1`` placeholders (one newline after the
  video); here ``budget + 1``, the method's count (`settings.video_token_count`);
* ``LlavaOnevisionForConditionalGeneration._process_video_pixels`` — per video: tower → projector → bilinear
  pooling → ``[F·N tokens, newline]``; here the tower runs under the saliency probe and the pooled features
  ``(F, N, E)`` go through `lmms_holitom.core.outer.compress_video_on_one_thread` before the newline is appended.

Positions are plain counts (1-D RoPE), so the kept tokens simply take the placeholders' positions, in the same
order as the transformers backend (`lmms_holitom.hf.models.llava_onevision`) lays them out.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from vllm.model_executor.models.llava_onevision import (
    LlavaOnevisionDummyInputsBuilder,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionMultiModalProcessor,
    LlavaOnevisionProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.outer import compress_video_on_one_thread
from lmms_holitom.integrations.vllm.probe import QKVSaliencyProbe
from lmms_holitom.integrations.vllm.record import save_record
from lmms_holitom.integrations.vllm.settings import RECORD_ENV, video_token_count, vllm_settings
from lmms_holitom.ops import CompressedVideo

__all__ = ["HoliTomLlavaOnevisionForConditionalGeneration", "HoliTomLlavaOnevisionProcessingInfo"]

logger = logging.getLogger("vllm.lmms_holitom")  # a child of vLLM's logger: shown with vLLM's own lines


class HoliTomLlavaOnevisionProcessingInfo(LlavaOnevisionProcessingInfo):
    """Placeholder counts of the configured method (stock counts without a ``holitom`` entry)."""

    def get_num_video_tokens(self, *, image_width: int, image_height: int, num_frames: int) -> int:
        config = vllm_settings(self.get_hf_config())
        if config is None:
            return super().get_num_video_tokens(
                image_width=image_width, image_height=image_height, num_frames=num_frames
            )
        per_frame = self._get_num_frame_tokens(image_width=image_width, image_height=image_height)
        return video_token_count(config, num_frames, per_frame) + 1  # the newline after the video


@MULTIMODAL_REGISTRY.register_processor(
    LlavaOnevisionMultiModalProcessor,
    info=HoliTomLlavaOnevisionProcessingInfo,
    dummy_inputs=LlavaOnevisionDummyInputsBuilder,
)
class HoliTomLlavaOnevisionForConditionalGeneration(LlavaOnevisionForConditionalGeneration):
    """vLLM's LLaVA-OneVision; videos go through the configured method before the LLM."""

    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.holitom_config: HoliTomConfig | None = vllm_settings(self.config)
        if self.holitom_config is not None:
            logger.info("lmms-holitom: LLaVA-OneVision videos run %s", self.holitom_config.given_dict())

    def _process_video_pixels(self, inputs: Any) -> Any:
        config = self.holitom_config
        if config is None or config.spec.outer is None:
            return super()._process_video_pixels(inputs)
        pixels = inputs["pixel_values_videos"]
        videos = list(pixels) if isinstance(pixels, torch.Tensor) else pixels
        return [self._compress_one(video, config) for video in videos]

    def _features_and_saliency(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled features (F, N, E), received attention (F, N) and head-averaged keys (F, N, Dk), all pooled alike
        (`lmms_holitom.hf.models.llava_vision` does the same in transformers)."""
        layers = self.vision_tower.vision_model.encoder.layers  # vLLM builds the tower up to the feature layer
        with QKVSaliencyProbe(layers[-1].self_attn) as probe:
            features = self._video_pixels_to_features(self.vision_tower, frames)
        attention, keys = probe.attention, probe.keys
        if self.config.vision_feature_select_strategy == "default":  # the features drop the first token
            attention, keys = attention[:, 1:], keys[:, 1:]
        attention = self.apply_pooling(attention.unsqueeze(-1).contiguous()).squeeze(-1)
        return features, attention, self.apply_pooling(keys.contiguous())

    def merge_video(
        self, features: torch.Tensor, attention: torch.Tensor | None, keys: torch.Tensor | None
    ) -> CompressedVideo:
        """The configured method's outer merge of one video, as `_compress_one` runs it (the bench times this)."""
        return compress_video_on_one_thread(features, attention, self.holitom_config, keys)

    def _compress_one(self, frames: torch.Tensor, config: HoliTomConfig) -> torch.Tensor:
        """One video's frames (F, C, H, W) -> (K + 1, E): the kept tokens, then the newline."""
        if not config.spec.saliency:  # EVS, VidCom2: the features alone
            features = self._video_pixels_to_features(self.vision_tower, frames)  # (F, N, E), pooled
            out = self.merge_video(features, None, None)
        else:
            features, attention, keys = self._features_and_saliency(frames)
            out = self.merge_video(features, attention, keys)
        expected = video_token_count(config, features.shape[0], features.shape[1])
        if out.tokens.shape[0] != expected:
            raise RuntimeError(
                f"lmms-holitom: {config.method} kept {out.tokens.shape[0]} tokens where the prompt has {expected} "
                "placeholders"
            )
        logger.info(
            "lmms-holitom: video of %d frames x %d tokens -> %d tokens (%s)",
            features.shape[0], features.shape[1], expected, config.method,
        )
        tokens = out.tokens.to(features.dtype)
        video = torch.cat([tokens, self.image_newline[None, :].to(tokens.dtype)])
        if os.environ.get(RECORD_ENV):
            origins = torch.stack([out.frames, out.positions], dim=1)
            save_record({"method": config.method, "frames": int(features.shape[0]),
                         "tokens_per_frame": int(features.shape[1]), "origins": origins.cpu(),
                         "rows": video.detach().float().cpu()})
        return video

