"""A tiny LLaVA-OneVision built offline: the project's "embedded default" model.

Random weights (seeded, reproducible) but the real geometry of the published checkpoints where it matters
for HoliTom: SigLIP at 384 px with 14 px patches (27×27 = 729 patches, pooled to 14×14 = 196 tokens per
frame), a Qwen2 decoder with grouped-query attention, a byte-level BPE tokenizer with the Qwen chat
tokens, and a processor with SigLIP's 0.5/0.5 normalisation. Nothing is downloaded.

``ensure_tiny_model()`` builds it once into a cache folder (``$LMMS_HOLITOM_CACHE`` or
``~/.cache/lmms_holitom``) and returns the folder; ``pretrained=tiny`` in the lmms-eval model args and
``--pretrained tiny`` on the command line resolve to it (``tiny-qwen2.5-vl`` and ``tiny-qwen3-vl`` resolve to
the tiny Qwen models of `lmms_holitom.testing.tiny_qwen`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lmms_holitom.offline_tokenizer import byte_level_tokenizer
from lmms_holitom.testing.cache import build_once, cache_root

__all__ = ["TINY_NAME", "TinySpec", "build_tiny_model", "ensure_tiny_model", "tiny_cache_dir"]

TINY_NAME = "tiny"
_FORMAT_VERSION = 1

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
@dataclass(frozen=True)
class TinySpec:
    """Shape of the tiny model (defaults: ~0.5 M parameters, runs in milliseconds on a CPU)."""

    vision_hidden: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    text_hidden: int = 64
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    init_range: float = 0.2  # larger than HF's 0.02 so outputs depend visibly on the video
    seed: int = 0


def _build_tokenizer():
    from lmms_holitom.hf.models.chat_templates import QWEN_1_5 as CHAT_TEMPLATE  # lazy: hf needs transformers >= 5.24

    return byte_level_tokenizer(
        SPECIAL_TOKENS,
        # a handful of merges so common words are not all single bytes (keeps prompts short)
        words=("the", "ing", "what", "video", "is", "in", "of", "and", "answer", "option"),
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHAT_TEMPLATE,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )


def build_tiny_model(path: str | os.PathLike, spec: TinySpec | None = None) -> Path:
    """Build the tiny model, tokenizer and processor and ``save_pretrained`` them into ``path``."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    from lmms_holitom.hf.models.chat_templates import QWEN_1_5 as CHAT_TEMPLATE

    spec = spec or TinySpec()
    path = Path(path)
    tokenizer = _build_tokenizer()
    vocab_size = len(tokenizer)  # every id decodes to something
    vision = SiglipVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=2 * spec.vision_hidden,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=384,
        patch_size=14,
        vision_use_head=False,
        initializer_range=spec.init_range,
    )
    text = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=spec.text_hidden,
        intermediate_size=spec.text_intermediate,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_kv_heads,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=False,
        initializer_range=spec.init_range,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
        # Random init leaves image_newline at zero in some versions; give it a value so it matters.
        with torch.no_grad():
            model.model.image_newline.normal_(0.0, 0.5)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    mean = std = [0.5, 0.5, 0.5]
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(image_mean=mean, image_std=std),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(image_mean=mean, image_std=std),
        num_image_tokens=729,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / "lmms_holitom_tiny.json").write_text(
        json.dumps({"format": _FORMAT_VERSION, "spec": spec.__dict__}, indent=1)
    )
    return path


def tiny_cache_dir() -> Path:
    return cache_root() / f"tiny-llava-ov-v{_FORMAT_VERSION}"


def ensure_tiny_model(path: str | os.PathLike | None = None) -> Path:
    """Return the folder of the tiny model, building it (atomically) on first use."""
    target = Path(path) if path is not None else tiny_cache_dir()
    return build_once(target, "lmms_holitom_tiny.json", build_tiny_model, ".tiny-")
