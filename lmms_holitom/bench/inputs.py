"""The bench's synthetic inputs: a reproducible video with temporal redundancy and a video-question prompt.

No processor or tokenizer is needed: the video is already in ``pixel_values_videos`` form and the prompt is
laid out from the model config's ids.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lmms_holitom.flops import shape_from_hf_config

__all__ = ["ordinary_ids", "synthetic_prompt", "synthetic_text", "synthetic_video", "tokens_per_frame"]

_SPECIAL_ID_NAMES = ("image_token_index", "video_token_index", "image_token_id", "video_token_id",
                     "eos_token_id", "pad_token_id", "bos_token_id", "vision_start_token_id", "vision_end_token_id")


def synthetic_video(frames: int, *, size: int = 384, scenes: int = 4, seed: int = 0) -> torch.Tensor:
    """``pixel_values_videos`` (1, F, 3, size, size), fp32 in [-1, 1] (SigLIP-normalised range), on the CPU.

    ``scenes`` scenes of smooth noise (24×24 noise upsampled bilinearly), each drifting slowly from frame to
    frame (a random walk of step 0.05 on the low-resolution noise), plus faint per-frame pixel noise: the
    temporal redundancy HoliTom's segmentation looks for, reproducible from ``seed``.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    gen = torch.Generator().manual_seed(seed)
    scenes = max(1, min(scenes, frames))
    per_scene = math.ceil(frames / scenes)
    low = 24
    clips: list[torch.Tensor] = []
    for _ in range(scenes):
        base = torch.randn(3, low, low, generator=gen)
        steps = 0.05 * torch.randn(per_scene, 3, low, low, generator=gen)
        clips.append(base + steps.cumsum(0))
    small = torch.cat(clips)[:frames]
    video = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    video = video + 0.02 * torch.randn(video.shape, generator=gen)
    return (0.6 * video).clamp_(-1.0, 1.0).unsqueeze(0).contiguous()


def _special_ids(model: Any) -> set[int]:
    """Every special id (image/video placeholders, eos, pad, bos) named by the model's configs."""
    cfg = model.config
    ids: set[int] = set()
    for source in (cfg, cfg.get_text_config(), getattr(model, "generation_config", None)):
        for name in _SPECIAL_ID_NAMES:
            value = getattr(source, name, None) if source is not None else None
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(v for v in value if isinstance(v, int))
    return ids


def tokens_per_frame(config: Any) -> int:
    """Pooled tokens per frame of a LLaVA-OneVision config: ``ceil(side / 2)²`` (196 at 384/14)."""
    return shape_from_hf_config(config).tokens_per_frame


def ordinary_ids(model: Any) -> torch.Tensor:
    """(P,) ordinary ids: the middle of the vocabulary's first 2000 ids, without the config's special ids."""
    vocab = int(model.config.get_text_config().vocab_size)
    hi = min(2000, vocab - 64) if vocab > 128 else vocab
    special = _special_ids(model)
    pool = torch.tensor([i for i in range(hi // 2, hi) if i not in special], dtype=torch.long)
    if pool.numel() == 0:
        raise ValueError(f"no ordinary token ids to build a prompt from (vocab {vocab})")
    return pool


def synthetic_text(model: Any, text_tokens: int = 30, seed: int = 0) -> torch.Tensor:
    """``text_tokens`` ordinary ids (1-D), drawn reproducibly from `ordinary_ids`.

    Never a special id of the config, so no tokenizer is needed.
    """
    pool = ordinary_ids(model)
    gen = torch.Generator().manual_seed(seed + 1)
    return pool[torch.randint(0, pool.numel(), (text_tokens,), generator=gen)]


def synthetic_prompt(model: Any, frames: int, *, text_tokens: int = 30, seed: int = 0) -> torch.Tensor:
    """``input_ids`` (1, L) as the processor lays out a video question: text, ``F·N + 1`` video placeholders, text.

    The ``text_tokens`` text ids (`synthetic_text`; about half before the video, half after, like the chat
    template's system/user header and the question).
    """
    text = synthetic_text(model, text_tokens, seed)
    before = text_tokens // 2
    video = torch.full((frames * tokens_per_frame(model.config) + 1,), int(model.config.video_token_index))
    return torch.cat([text[:before], video, text[before:]]).unsqueeze(0)
