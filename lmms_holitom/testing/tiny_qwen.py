"""Tiny offline Qwen-VL models: ``pretrained=tiny-qwen2.5-vl`` / ``tiny-qwen3-vl`` / ``tiny-qwen3-vl-moe`` /
``tiny-qwen3.5`` / ``tiny-qwen3.5-moe``.

Random weights (seeded inside the builder), built from configs on first use into the cache root of the tiny
LLaVA-OneVision model (``$LMMS_HOLITOM_CACHE`` or ``~/.cache/lmms_holitom``), nothing downloaded. What is kept
from the published checkpoints because HoliTom depends on it:

* the vision geometry: patch 14 (Qwen2.5-VL) / 16 (Qwen3-VL), temporal patch 2, 2×2 merger; Qwen2.5-VL's
  window attention really reorders (``window_size`` 56 px = 2×2 merged tokens per window, so any frame larger
  than 56×56 px spans several windows) with the last block full attention; Qwen3-VL's two deepstack streams
  (after vision blocks 0 and 1, injected after decoder layers 0 and 1) and the processor's per-group
  ``<t seconds>`` timestamps;
* a 4-layer decoder with grouped-query heads (4 heads, 2 key/value heads) and multimodal RoPE
  (``mrope_section`` scaled to head_dim 16; interleaved for Qwen3-VL; q/k norms for Qwen3-VL), so an inner merge
  at layer 2 happens after the last deepstack injection;
* a byte-level BPE tokenizer with the real special tokens (``<|im_start|>``, ``<|im_end|>``,
  ``<|vision_start|>``, ``<|vision_end|>``, ``<|image_pad|>``, ``<|video_pad|>``, ...) and chat templates
  that render like the checkpoints' (Qwen2.5-VL adds the default system prompt, Qwen3-VL does not).

The processors keep the checkpoints' defaults except the pixel budget, which is small so that tiny clips stay
tiny: a 64×64 frame keeps 4 tokens per temporal group, 112×112 keeps 16. Qwen3-VL's video processor samples
frames like the real one (``do_sample_frames=True``, 2 fps, at least 4 frames; without ``video_metadata`` it
assumes 24 fps): pass ``do_sample_frames=False`` to keep every frame you give it.

Qwen3.5 (``tiny-qwen3.5``, ``tiny-qwen3.5-moe``) keeps the published hybrid decoder's pattern: 8 layers, three
Gated DeltaNet (linear-attention) layers then one full-attention layer (``full_attention_interval`` 4), so layers
3 and 7 are full attention and merge layer 4 is the one an inner merge may take; the gated query projection, q/k
norms and partial rotary (``partial_rotary_factor`` 0.25 of head_dim 32: 8 rotary dims, the 9B's interleaved
``mrope_section`` [11, 11, 10] scaled to [2, 1, 1]); the Qwen3-VL vision geometry without deepstack. The MoE
variants (``tiny-qwen3-vl-moe``: Qwen3-VL's 4 layers; ``tiny-qwen3.5-moe``) replace each MLP with 4 experts, 2 per
token (Qwen3.5-MoE also a shared expert); everything else is their dense twin's.

Prompt layout of a video (as the installed transformers renders the real checkpoints): Qwen2.5-VL
``<|vision_start|>`` + ``<|video_pad|>``×(t·N) + ``<|vision_end|>``; Qwen3-VL t × (``<x.x seconds><|vision_start|>``
+ ``<|video_pad|>``×N + ``<|vision_end|>``) — transformers 5.24 and older also keep the chat template's outer
``<|vision_start|>`` … ``<|vision_end|>`` pair around the groups, 5.25 drops it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from lmms_holitom.offline_tokenizer import byte_level_tokenizer
from lmms_holitom.testing.cache import build_once, cache_root

__all__ = [
    "TINY_QWEN_NAMES",
    "TinyQwenSpec",
    "build_tiny_qwen_model",
    "ensure_tiny_qwen_model",
    "tiny_qwen_cache_dir",
]

_FORMAT_VERSION = 1
_MARKER = "lmms_holitom_tiny.json"
QWEN25 = "tiny-qwen2.5-vl"
QWEN3 = "tiny-qwen3-vl"
QWEN3_MOE = "tiny-qwen3-vl-moe"
QWEN35 = "tiny-qwen3.5"
QWEN35_MOE = "tiny-qwen3.5-moe"
TINY_QWEN_NAMES = (QWEN25, QWEN3, QWEN3_MOE, QWEN35, QWEN35_MOE)
#: the tiny MoE decoders: experts, experts per token, expert width
_MOE = {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32}

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
)
_GENERATION = "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
#: Qwen2.5-VL: a default system prompt when the conversation has none.
CHAT_TEMPLATE_QWEN25 = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n" + _CONTENT + "<|im_end|>\n{% endfor %}" + _GENERATION
)
#: Qwen3-VL: no default system prompt.
CHAT_TEMPLATE_QWEN3 = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n" + _CONTENT + "<|im_end|>\n{% endfor %}"
    + _GENERATION
)


@dataclass(frozen=True)
class TinyQwenSpec:
    """Sizes of the tiny Qwen models (~0.3 M parameters without the position table)."""

    vision_hidden: int = 32
    vision_heads: int = 2
    text_hidden: int = 64
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    init_range: float = 0.2  # larger than HF's 0.02 so outputs depend visibly on the video
    seed: int = 0


def _build_tokenizer(chat_template: str):
    return byte_level_tokenizer(
        SPECIAL_TOKENS,
        words=("the", "ing", "what", "video", "is", "in", "of", "and", "answer", "option", "seconds"),
        additional_special_tokens=SPECIAL_TOKENS[1:],
        chat_template=chat_template,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )


def _ids(tokenizer) -> dict[str, int]:
    tid = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": tid("<|image_pad|>"), "video_token_id": tid("<|video_pad|>"),
        "vision_start_token_id": tid("<|vision_start|>"), "vision_end_token_id": tid("<|vision_end|>"),
    }


def _text_kwargs(spec: TinyQwenSpec, tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer), hidden_size=spec.text_hidden, intermediate_size=spec.text_intermediate,
        num_hidden_layers=spec.text_layers, num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_kv_heads, max_position_embeddings=32768,
        initializer_range=spec.init_range, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )


def _qwen25_parts(spec: TinyQwenSpec):
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _build_tokenizer(CHAT_TEMPLATE_QWEN25)
    vision = dict(depth=2, hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
                  num_heads=spec.vision_heads, out_hidden_size=spec.text_hidden, patch_size=14, window_size=56,
                  fullatt_block_indexes=[1], tokens_per_second=2, initializer_range=spec.init_range)
    # the 7B checkpoint's mrope_section [16, 24, 24] (head_dim 128) scaled to head_dim 16
    text = _text_kwargs(spec, tokenizer) | {"rope_parameters": {
        "rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]}}
    config = Qwen2_5_VLConfig(vision_config=vision, text_config=text, **_ids(tokenizer))
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 224 * 224}),
        video_processor=Qwen2VLVideoProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 224 * 224}),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE_QWEN25,
    )
    return Qwen2_5_VLForConditionalGeneration, config, processor, tokenizer


def _qwen3_vision(spec: TinyQwenSpec, deepstack: list[int]) -> dict:
    return dict(depth=3, hidden_size=spec.vision_hidden, intermediate_size=2 * spec.vision_hidden,
                num_heads=spec.vision_heads, out_hidden_size=spec.text_hidden, patch_size=16,
                num_position_embeddings=2304, initializer_range=spec.init_range,
                **({"deepstack_visual_indexes": deepstack} if deepstack else {}))


def _qwen3_processor():
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    tokenizer = _build_tokenizer(CHAT_TEMPLATE_QWEN3)
    half = [0.5, 0.5, 0.5]
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16, image_mean=half, image_std=half,
                                              size={"shortest_edge": 64 * 64, "longest_edge": 256 * 256}),
        video_processor=Qwen3VLVideoProcessor(image_mean=half, image_std=half, cap_pixels_per_frame=False,
                                              size={"shortest_edge": 2 * 64 * 64, "longest_edge": 64 * 128 * 128}),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE_QWEN3,
    )
    return processor, tokenizer


def _qwen3_parts(spec: TinyQwenSpec, moe: bool = False):
    from transformers import (
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLMoeConfig,
        Qwen3VLMoeForConditionalGeneration,
    )

    processor, tokenizer = _qwen3_processor()
    head_dim = spec.text_hidden // spec.text_heads
    # the 8B checkpoint's interleaved mrope_section [24, 20, 20] (head_dim 128) scaled to head_dim 16
    text = _text_kwargs(spec, tokenizer) | {"head_dim": head_dim, "rope_parameters": {
        "rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True}}
    config_class, cls = Qwen3VLConfig, Qwen3VLForConditionalGeneration
    if moe:
        text |= _MOE | {"decoder_sparse_step": 1}
        config_class, cls = Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration
    config = config_class(vision_config=_qwen3_vision(spec, [0, 1]), text_config=text, **_ids(tokenizer))
    return cls, config, processor, tokenizer


def _qwen35_parts(spec: TinyQwenSpec, moe: bool = False):
    from transformers import (
        Qwen3_5Config,
        Qwen3_5ForConditionalGeneration,
        Qwen3_5MoeConfig,
        Qwen3_5MoeForConditionalGeneration,
    )

    processor, tokenizer = _qwen3_processor()
    text = _text_kwargs(spec, tokenizer) | {
        "num_hidden_layers": 8, "full_attention_interval": 4, "head_dim": 32, "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_num_key_heads": 2,
        "linear_num_value_heads": 4,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10_000_000.0, "mrope_section": [2, 1, 1],
                            "mrope_interleaved": True, "partial_rotary_factor": 0.25},
    }
    config_class, cls = Qwen3_5Config, Qwen3_5ForConditionalGeneration
    if moe:
        text |= _MOE | {"shared_expert_intermediate_size": 32}
        config_class, cls = Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration
    config = config_class(vision_config=_qwen3_vision(spec, []), text_config=text, **_ids(tokenizer))
    return cls, config, processor, tokenizer


_PARTS = {
    QWEN25: _qwen25_parts,
    QWEN3: _qwen3_parts,
    QWEN3_MOE: lambda spec: _qwen3_parts(spec, moe=True),
    QWEN35: _qwen35_parts,
    QWEN35_MOE: lambda spec: _qwen35_parts(spec, moe=True),
}


def build_tiny_qwen_model(name: str, path: str | os.PathLike, spec: TinyQwenSpec | None = None) -> Path:
    """Build one of `TINY_QWEN_NAMES` and ``save_pretrained`` model + processor into ``path``."""
    import torch

    if name not in TINY_QWEN_NAMES:
        raise ValueError(f"unknown tiny Qwen model {name!r}; known: {', '.join(TINY_QWEN_NAMES)}")
    spec = spec or TinyQwenSpec()
    cls, config, processor, tokenizer = _PARTS[name](spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = cls(config).eval()
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / _MARKER).write_text(
        json.dumps({"name": name, "format": _FORMAT_VERSION, "spec": asdict(spec)}, indent=1)
    )
    return path


def tiny_qwen_cache_dir(name: str) -> Path:
    return cache_root() / f"{name}-v{_FORMAT_VERSION}"


def ensure_tiny_qwen_model(name: str, path: str | os.PathLike | None = None) -> Path:
    """The folder of a tiny Qwen model, built (atomically: temporary folder, then rename) on first use."""
    if name not in TINY_QWEN_NAMES:
        raise ValueError(f"unknown tiny Qwen model {name!r}; known: {', '.join(TINY_QWEN_NAMES)}")
    target = Path(path) if path is not None else tiny_qwen_cache_dir(name)
    return build_once(target, _MARKER, lambda tmp: build_tiny_qwen_model(name, tmp), f".{name}-")
