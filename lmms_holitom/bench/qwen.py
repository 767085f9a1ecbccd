"""The bench's Qwen2.5-VL / Qwen3-VL side: synthetic processor-format inputs and the cost-model shape.

What ``--frames F`` means for Qwen: **F input frames**, i.e. ``F / 2`` temporal patch groups (the encoder fuses
2 consecutive frames into one group; a HoliTom "frame" is one group), so F must be even. Each frame is
``QWEN_FRAME_PX`` × ``QWEN_FRAME_PX`` px (448: lmms-eval's default ``min_pixels = 256·28·28``), giving
``(448/28)² = 256`` tokens per group on Qwen2.5-VL (patch 14) and ``(448/32)² = 196`` on Qwen3-VL (patch 16),
as the FLOPs presets (`lmms_holitom.flops.PRESETS`) assume.

The inputs are what the processor returns, built without a processor or tokenizer (no hub download):
``pixel_values_videos`` (T·h·w, C·tp·p·p) in the image processor's patch order, ``video_grid_thw`` (1, 3),
``input_ids`` laid out as the chat template does (Qwen2.5-VL: one ``<|vision_start|> pad×(T·N) <|vision_end|>``
run; Qwen3-VL: ``<|vision_start|>`` then per group a timestamp (3 ordinary ids standing for ``<t seconds>``),
``<|vision_start|> pad×N <|vision_end|>``, then ``<|vision_end|>``), ``mm_token_type_ids`` (2 at the video
placeholders) and, for Qwen2.5-VL, ``second_per_grid_ts`` (1 s per group: 2 fps sampling).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from lmms_holitom.flops import ModelShape

__all__ = ["QWEN_FRAME_PX", "QWEN_MODEL_TYPES", "is_qwen", "qwen_inputs", "qwen_shape", "qwen_tokens_per_frame"]

QWEN_MODEL_TYPES = ("qwen2_5_vl", "qwen3_vl")
QWEN_FRAME_PX = 448
_VIDEO_TOKEN_TYPE = 2  # mm_token_type_ids of a video placeholder
_TIMESTAMP_TOKENS = 3  # ids standing for Qwen3-VL's "<t seconds>" text before each group


def is_qwen(config: Any) -> bool:
    """Whether a model config is Qwen2.5-VL's or Qwen3-VL's."""
    return getattr(config, "model_type", None) in QWEN_MODEL_TYPES


def _unit(vision: Any) -> int:
    """Pixels per merged token side: ``patch_size · spatial_merge_size`` (28 or 32)."""
    return int(vision.patch_size) * int(vision.spatial_merge_size)


def qwen_tokens_per_frame(config: Any, size: int = QWEN_FRAME_PX) -> int:
    """Tokens per temporal group at ``size``×``size`` px: ``(size / (patch · merge))²``."""
    side = size // _unit(config.vision_config)
    return side * side


def qwen_shape(config: Any, name: str = "model", size: int = QWEN_FRAME_PX) -> ModelShape:
    """The `flops.ModelShape` of a Qwen VL config (decoder sizes, encoder depth/width, patches per group)."""
    text, vision = config.get_text_config(), config.vision_config
    patches = (size // int(vision.patch_size)) ** 2
    shape = ModelShape(
        name=name, layers=text.num_hidden_layers, hidden=text.hidden_size, intermediate=text.intermediate_size,
        heads=text.num_attention_heads, kv_heads=getattr(text, "num_key_value_heads", None) or text.num_attention_heads,
        vocab=text.vocab_size,
    )
    return replace(shape, vision_layers=int(vision.depth), vision_hidden=int(vision.hidden_size),
                   vision_intermediate=int(vision.intermediate_size), vision_patches=patches,
                   tokens_per_frame=qwen_tokens_per_frame(config, size), default_frames=16)


def check_qwen_frames(frames: int, config: Any) -> int:
    """The temporal groups of ``frames`` input frames; ValueError when ``frames`` is not a positive multiple of 2."""
    tp = int(config.vision_config.temporal_patch_size)
    if frames < tp or frames % tp:
        raise ValueError(f"--frames must be a positive multiple of {tp} for {config.model_type} "
                         f"({tp} input frames per temporal group), got {frames}")
    return frames // tp


def patchify(video: torch.Tensor, config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, F, C, S, S) frames -> (``pixel_values_videos`` (T·h·w, C·tp·p·p), ``video_grid_thw`` (1, 3)).

    The order of the Qwen2-VL image processor: groups, then merge windows row-major, then the patches of a
    window, each patch flattened as (C, tp, p, p).
    """
    vision = config.vision_config
    tp, p, m = int(vision.temporal_patch_size), int(vision.patch_size), int(vision.spatial_merge_size)
    _, f, c, s, _ = video.shape
    t, side = f // tp, s // p
    x = video[0].reshape(t, tp, c, side // m, m, p, side // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    pixels = x.reshape(t * side * side, c * tp * p * p).contiguous()
    return pixels, torch.tensor([[t, side, side]])


def _layout(config: Any, groups: int, n: int, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(``input_ids`` (1, L), ``mm_token_type_ids`` (1, L)): text halves around the family's video layout."""
    start, end, pad = config.vision_start_token_id, config.vision_end_token_id, config.video_token_id
    before, after = text[: text.numel() // 2].tolist(), text[text.numel() // 2:].tolist()
    stamps = text.tolist()[:_TIMESTAMP_TOKENS] or [pad]  # ordinary ids standing for "<t seconds>"
    ids: list[int] = list(before)
    if config.model_type == "qwen3_vl":
        ids.append(start)
        for _ in range(groups):
            ids += [*stamps, start, *([pad] * n), end]
        ids.append(end)
    else:
        ids += [start, *([pad] * (groups * n)), end]
    ids += after
    input_ids = torch.tensor([ids])
    types = torch.where(input_ids == pad, _VIDEO_TOKEN_TYPE, 0)
    return input_ids, types


def qwen_inputs(model: Any, video: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
    """The processor-format inputs of a Qwen VL model for ``video`` (1, F, C, S, S) and ``text`` ids (the prompt's).

    Raises ValueError when F is not a multiple of the temporal patch size.
    """
    config = model.config
    groups = check_qwen_frames(int(video.shape[1]), config)
    pixels, grid = patchify(video, config)
    input_ids, types = _layout(config, groups, qwen_tokens_per_frame(config, int(video.shape[-1])), text)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "mm_token_type_ids": types,
              "pixel_values_videos": pixels, "video_grid_thw": grid}
    if config.model_type == "qwen2_5_vl":
        inputs["second_per_grid_ts"] = torch.ones(1)
    return inputs
