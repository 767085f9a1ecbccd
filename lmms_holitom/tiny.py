"""A tiny LLaVA-OneVision built offline: the project's "embedded default" model.

Random weights (seeded, reproducible) but the real geometry of the published checkpoints where it matters
for HoliTom: SigLIP at 384 px with 14 px patches (27×27 = 729 patches, pooled to 14×14 = 196 tokens per
frame), a Qwen2 decoder with grouped-query attention, a byte-level BPE tokenizer with the Qwen chat
tokens, and a processor with SigLIP's 0.5/0.5 normalisation. Nothing is downloaded.

``ensure_tiny_model()`` builds it once into a cache folder (``$LMMS_HOLITOM_CACHE`` or
``~/.cache/lmms_holitom``) and returns the folder; ``pretrained=tiny`` in the lmms-eval model args and
``--pretrained tiny`` on the command line resolve to it (``tiny-qwen2.5-vl`` and ``tiny-qwen3-vl`` resolve to
the tiny Qwen models of `lmms_holitom.tiny_qwen`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TINY_NAME", "TinySpec", "build_tiny_model", "ensure_tiny_model", "tiny_cache_dir"]

TINY_NAME = "tiny"
_FORMAT_VERSION = 1

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
# Qwen-1.5 chat template: the same prompt lmms-eval's `qwen_1_5` conversation template builds.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<image>\n"
    "{% elif content['type'] == 'video' %}<video>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


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


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode map (the alphabet of byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _build_tokenizer():
    from transformers import Qwen2Tokenizer

    alphabet = sorted(_bytes_to_unicode().values())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    # A handful of merges so common words are not all single bytes (keeps prompts short).
    merges: list[tuple[str, str]] = []
    for word in ("the", "ing", "what", "video", "is", "in", "of", "and", "answer", "option"):
        pieces = list(word)
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append((pieces[0], pieces[1]))
            pieces = [merged, *pieces[2:]]
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


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
    root = os.environ.get("LMMS_HOLITOM_CACHE") or os.path.join(Path.home(), ".cache", "lmms_holitom")
    return Path(root) / f"tiny-llava-ov-v{_FORMAT_VERSION}"


def build_once(target: Path, marker: str, build: Callable[[Path], object], prefix: str) -> Path:
    """``target`` holding a finished build (``marker`` file present), built on first use: into a temporary folder
    beside it, then renamed — so a half-built folder is never seen, and of two racing processes one wins."""
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        build(tmp)
        os.replace(tmp, target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / marker).exists():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def ensure_tiny_model(path: str | os.PathLike | None = None) -> Path:
    """Return the folder of the tiny model, building it (atomically) on first use."""
    target = Path(path) if path is not None else tiny_cache_dir()
    return build_once(target, "lmms_holitom_tiny.json", build_tiny_model, ".tiny-")


def resolve_pretrained(name: str) -> str:
    """Map ``tiny`` (and ``tiny-qwen2.5-vl`` / ``tiny-qwen3-vl``, see `lmms_holitom.tiny_qwen`) to the built
    tiny model's folder; anything else is returned unchanged."""
    if name == TINY_NAME:
        return str(ensure_tiny_model())
    from lmms_holitom.tiny_qwen import TINY_QWEN_NAMES, ensure_tiny_qwen_model

    if name in TINY_QWEN_NAMES:
        return str(ensure_tiny_qwen_model(name))
    return name
