"""The bench's Qwen2.5-VL / Qwen3-VL side: synthetic processor-format inputs and the cost-model shape.

What ``--frames F`` means for Qwen: **F input frames**, i.e. ``F / 2`` temporal patch groups (the encoder fuses
2 consecutive frames into one group; a HoliTom "frame" is one group), so F must be even. Each frame is
``QWEN_FRAME_PX`` × ``QWEN_FRAME_PX`` px (448: lmms-eval's default ``min_pixels = 256·28·28``), giving
``(448/28)² = 256`` tokens per group on Qwen2.5-VL (patch 14) and ``(448/32)² = 196`` on Qwen3-VL (patch 16),
as the FLOPs presets (`lmms_holitom.flops.PRESETS`) assume.

The inputs are what the installed transformers' own processor class of the family (``Qwen2_5_VLProcessor`` /
``Qwen3VLProcessor``) returns for the video, so the placeholder layout follows whatever that release emits
(transformers 5.25 dropped Qwen3-VL's outer ``<|vision_start|>``/``<|vision_end|>`` pair around the per-group runs;
nothing here hard-codes either layout). No checkpoint processor or tokenizer is needed: the processor is built
offline around a byte-level stand-in tokenizer (`stand_in_processor`) configured with the model's patch, merge and
temporal-patch sizes, and is given the chat template's rendering of a video
(``<|vision_start|><|video_pad|><|vision_end|>``) between the prompt's two text halves. Its special tokens are
mapped to the model config's ids and the timestamp text Qwen3-VL puts before each group to ordinary ids of the
model's vocabulary; ``pixel_values_videos``, ``video_grid_thw``, ``mm_token_type_ids`` and, for Qwen2.5-VL,
``second_per_grid_ts`` (the processor's 2 fps: 1 s per group) are the processor's own.
"""

from __future__ import annotations

from typing import Any

import torch

from lmms_holitom.flops import ModelShape, decoder_fields

__all__ = [
    "QWEN_FRAME_PX",
    "QWEN_MODEL_TYPES",
    "is_qwen",
    "processor_video",
    "qwen_inputs",
    "qwen_shape",
    "qwen_tokens_per_frame",
    "stand_in_processor",
]

QWEN_MODEL_TYPES = ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")
QWEN_FRAME_PX = 448


def is_qwen(config: Any) -> bool:
    """Whether a model config is a Qwen VL family's (Qwen2.5-VL, Qwen3-VL, Qwen3-VL-MoE, Qwen3.5, Qwen3.5-MoE)."""
    return getattr(config, "model_type", None) in QWEN_MODEL_TYPES


def _unit(vision: Any) -> int:
    """Pixels per merged token side: ``patch_size · spatial_merge_size`` (28 or 32)."""
    return int(vision.patch_size) * int(vision.spatial_merge_size)


def qwen_tokens_per_frame(config: Any, size: int = QWEN_FRAME_PX) -> int:
    """Tokens per temporal group at ``size``×``size`` px: ``(size / (patch · merge))²``."""
    side = size // _unit(config.vision_config)
    return side * side


def qwen_shape(config: Any, name: str = "model", size: int = QWEN_FRAME_PX) -> ModelShape:
    """The `flops.ModelShape` of a Qwen VL config (decoder sizes with layer kinds and MoE, `flops.decoder_fields`;
    encoder depth/width, patches per group)."""
    text, vision = config.get_text_config(), config.vision_config
    patches = (size // int(vision.patch_size)) ** 2
    return ModelShape(name=name, **decoder_fields(text), vision_layers=int(vision.depth),
                      vision_hidden=int(vision.hidden_size), vision_intermediate=int(vision.intermediate_size),
                      vision_patches=patches, tokens_per_frame=qwen_tokens_per_frame(config, size), default_frames=16)


def check_qwen_frames(frames: int, config: Any) -> int:
    """The temporal groups of ``frames`` input frames; ValueError when ``frames`` is not a positive multiple of 2."""
    tp = int(config.vision_config.temporal_patch_size)
    if frames < tp or frames % tp:
        raise ValueError(f"--frames must be a positive multiple of {tp} for {config.model_type} "
                         f"({tp} input frames per temporal group), got {frames}")
    return frames // tp


_VIDEO_TEXT = "<|vision_start|><|video_pad|><|vision_end|>"  # the chat templates' rendering of one video
_FPS = 2.0  # the frames' rate: lmms-eval's Qwen sampling (1 s per temporal group)
_CONFIG_IDS = {"<|vision_start|>": "vision_start_token_id", "<|vision_end|>": "vision_end_token_id",
               "<|video_pad|>": "video_token_id", "<|image_pad|>": "image_token_id"}


def stand_in_processor(config: Any) -> Any:
    """The family's transformers processor class around a byte-level stand-in tokenizer (built offline), with the
    model's patch, merge and temporal-patch sizes."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    from lmms_holitom.offline_tokenizer import byte_level_tokenizer

    specials = list(_CONFIG_IDS)
    # " seconds" one token, as in Qwen's vocabulary: "<0.5 seconds>" is 6 tokens, as the checkpoints' tokenizer makes it
    tokenizer = byte_level_tokenizer(["<|endoftext|>", *specials], words=("Ġseconds",),
                                     additional_special_tokens=specials, pad_token="<|endoftext|>")
    vision = config.vision_config
    sizes = dict(patch_size=int(vision.patch_size), temporal_patch_size=int(vision.temporal_patch_size),
                 merge_size=int(vision.spatial_merge_size))
    video_sizes = sizes | {"cap_pixels_per_frame": False}  # frames are taken as they are (no resizing)
    if config.model_type != "qwen2_5_vl":  # Qwen3-VL(-MoE), Qwen3.5(-MoE): transformers' Qwen3VLProcessor
        return Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(**sizes),
                                video_processor=Qwen3VLVideoProcessor(**video_sizes), tokenizer=tokenizer)
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**sizes),
                               video_processor=Qwen2VLVideoProcessor(**video_sizes), tokenizer=tokenizer)


def processor_video(processor: Any, video: torch.Tensor) -> dict[str, torch.Tensor]:
    """The processor's outputs for one video prompt ``_VIDEO_TEXT``: ``video`` (1, F, C, S, S) taken as it is (no
    resizing, rescaling, normalising or frame sampling), its frames 0.5 s apart (2 fps)."""
    frames = int(video.shape[1])
    metadata = {"fps": _FPS, "total_num_frames": frames, "frames_indices": list(range(frames))}
    return dict(processor(text=[_VIDEO_TEXT], videos=[video[0]], video_metadata=[metadata], do_sample_frames=False,
                          do_resize=False, do_rescale=False, do_normalize=False, return_tensors="pt"))


def _model_ids(processor: Any, ids: torch.Tensor, config: Any, ordinary: torch.Tensor) -> torch.Tensor:
    """Stand-in token ids (L,) -> the model's: special tokens by name, any other token to an ordinary id."""
    tokens = processor.tokenizer.convert_ids_to_tokens(ids.tolist())
    return torch.tensor([getattr(config, _CONFIG_IDS[t]) if t in _CONFIG_IDS else int(ordinary[i % ordinary.numel()])
                         for t, i in zip(tokens, ids.tolist())])


def qwen_inputs(model: Any, video: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
    """The processor-format inputs of a Qwen VL model for ``video`` (1, F, C, S, S) and ``text`` ids (the prompt's):
    the text's first half, the processor's video span, the second half.

    Raises ValueError when F is not a multiple of the temporal patch size.
    """
    from lmms_holitom.bench.inputs import ordinary_ids

    config = model.config
    check_qwen_frames(int(video.shape[1]), config)
    processor = stand_in_processor(config)
    out = processor_video(processor, video)
    span = _model_ids(processor, out["input_ids"][0], config, ordinary_ids(model))
    half = text.numel() // 2
    input_ids = torch.cat([text[:half], span, text[half:]]).unsqueeze(0)
    types = torch.cat([text.new_zeros(half), out["mm_token_type_ids"][0].long(), text.new_zeros(text.numel() - half)])
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "mm_token_type_ids": types[None],
              "pixel_values_videos": out["pixel_values_videos"], "video_grid_thw": out["video_grid_thw"]}
    if "second_per_grid_ts" in out:
        inputs["second_per_grid_ts"] = torch.as_tensor(out["second_per_grid_ts"], dtype=torch.float32)
    return inputs
