"""Random-weight LLaVA-OneVision checkpoints of a chosen shape, written for vLLM (``holitom bench --backend vllm``).

Built in the vLLM environment (transformers 5.19 there): the config, tokenizer and processor come from transformers'
own classes (present in 5.19), and every weight is drawn here from one seeded generator, in sorted key order, in the
published checkpoints' key layout (``vision_tower.vision_model.*``, ``language_model.model.*``), which vLLM reads.
No transformers model is instantiated, so a shape of any size is written in seconds. Head sizes are at least 32
(vLLM's CPU attention accepts 32–512). SigLIP at 384 px / 14 px patches: 729 patches, pooled to 196 tokens per frame.

`VLLM_SHAPES`:

* ``tiny`` — vision 1 × 64, decoder 2 × 128 (4/2 heads): the tests' shape;
* ``small`` — vision 2 × 128, decoder 4 × 512 (8/2 heads): a short run; its LLM prefill is only about half of dense
  TTFT at 8 frames on a 2-core CPU, so ratios to dense mostly measure the vision path;
* ``issue`` (the default) — vision 4 × 256, decoder 8 × 1024 (8/2 heads): the shape of issue 18's EVS measurement;
  at 8 frames (1,569 visual tokens) the dense LLM prefill is most of dense TTFT on a 2-core CPU (about 4/5: the
  vision path is 0.4–0.9 s of 2–5 s), so a method's TTFT ratio to dense reflects the tokens it removes (README,
  "Serve with vLLM", has the measured table).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from lmms_holitom.testing.cache import build_once, cache_root

__all__ = ["DEFAULT_VLLM_SHAPE", "VLLM_SHAPES", "VllmShape", "checkpoint_shapes", "ensure_bench_model",
           "resolve_vllm_shape"]

_FORMAT_VERSION = 1
_MARKER = "lmms_holitom_vllm_bench.json"
_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
PATCHES = 27  # 384 / 14
MIN_HEAD = 32


@dataclass(frozen=True)
class VllmShape:
    """The geometry of a random-weight LLaVA-OneVision (SigLIP 384/14 tower, Qwen2 decoder)."""

    name: str
    vision_layers: int
    vision_width: int
    vision_heads: int
    text_layers: int
    text_width: int
    text_heads: int
    text_kv_heads: int
    seed: int = 0

    def __post_init__(self) -> None:
        for field in ("vision", "text"):
            width, heads = getattr(self, f"{field}_width"), getattr(self, f"{field}_heads")
            if width % heads or width // heads < MIN_HEAD:
                raise ValueError(f"--shape {self.name}: {field} width {width} / {heads} heads must be a head size "
                                 f">= {MIN_HEAD} (vLLM's CPU attention)")
        if self.text_heads % self.text_kv_heads:
            raise ValueError(f"--shape {self.name}: {self.text_heads} heads must be a multiple of "
                             f"{self.text_kv_heads} key/value heads")

    @property
    def text_intermediate(self) -> int:
        return 11 * self.text_width // 4  # lighter than Qwen2's 5.3-5.4 (3584 -> 18944): the bench stays short

    @property
    def vision_intermediate(self) -> int:
        return 4 * self.vision_width

    def describe(self) -> str:
        return (f"vision {self.vision_layers} blocks x {self.vision_width} ({self.vision_heads} heads), decoder "
                f"{self.text_layers} layers x {self.text_width} ({self.text_heads}/{self.text_kv_heads} heads)")


VLLM_SHAPES = {
    "tiny": VllmShape("tiny", 1, 64, 2, 2, 128, 4, 2),
    "small": VllmShape("small", 2, 128, 4, 4, 512, 8, 2),
    "issue": VllmShape("issue", 4, 256, 8, 8, 1024, 8, 2),
}
DEFAULT_VLLM_SHAPE = "issue"


def resolve_vllm_shape(name: str | None) -> VllmShape:
    """A preset of `VLLM_SHAPES` (``None``: the default); ValueError naming the allowed ones."""
    key = DEFAULT_VLLM_SHAPE if name is None else name.strip().lower()
    if key not in VLLM_SHAPES:
        raise ValueError(f"--shape must be one of {', '.join(VLLM_SHAPES)} with --backend vllm, got {name!r}")
    return VLLM_SHAPES[key]


def checkpoint_shapes(shape: VllmShape, vocab: int) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint, published key -> shape."""
    v, t = shape.vision_width, shape.text_width
    kv = t // shape.text_heads * shape.text_kv_heads
    out: dict[str, tuple[int, ...]] = {
        "image_newline": (t,),
        "language_model.lm_head.weight": (vocab, t),
        "language_model.model.embed_tokens.weight": (vocab, t),
        "language_model.model.norm.weight": (t,),
        "multi_modal_projector.linear_1.weight": (t, v), "multi_modal_projector.linear_1.bias": (t,),
        "multi_modal_projector.linear_2.weight": (t, t), "multi_modal_projector.linear_2.bias": (t,),
        "vision_tower.vision_model.embeddings.patch_embedding.weight": (v, 3, 14, 14),
        "vision_tower.vision_model.embeddings.patch_embedding.bias": (v,),
        "vision_tower.vision_model.embeddings.position_embedding.weight": (PATCHES * PATCHES, v),
        "vision_tower.vision_model.post_layernorm.weight": (v,),
        "vision_tower.vision_model.post_layernorm.bias": (v,),
    }
    for i in range(shape.text_layers):
        p = f"language_model.model.layers.{i}."
        out |= {p + "input_layernorm.weight": (t,), p + "post_attention_layernorm.weight": (t,),
                p + "mlp.gate_proj.weight": (shape.text_intermediate, t),
                p + "mlp.up_proj.weight": (shape.text_intermediate, t),
                p + "mlp.down_proj.weight": (t, shape.text_intermediate),
                p + "self_attn.q_proj.weight": (t, t), p + "self_attn.q_proj.bias": (t,),
                p + "self_attn.k_proj.weight": (kv, t), p + "self_attn.k_proj.bias": (kv,),
                p + "self_attn.v_proj.weight": (kv, t), p + "self_attn.v_proj.bias": (kv,),
                p + "self_attn.o_proj.weight": (t, t)}
    for i in range(shape.vision_layers):
        p = f"vision_tower.vision_model.encoder.layers.{i}."
        out |= {p + f"{n}.{w}": (v,) for n in ("layer_norm1", "layer_norm2") for w in ("weight", "bias")}
        out |= {p + "mlp.fc1.weight": (shape.vision_intermediate, v), p + "mlp.fc1.bias": (shape.vision_intermediate,),
                p + "mlp.fc2.weight": (v, shape.vision_intermediate), p + "mlp.fc2.bias": (v,)}
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out |= {p + f"self_attn.{proj}.weight": (v, v), p + f"self_attn.{proj}.bias": (v,)}
    return out


def _draw(key: str, shape: tuple[int, ...], generator):
    """One tensor: norms near 1, biases small, matrices ~ N(0, 1/fan_in) (activations stay O(1) at any width)."""
    import torch

    draw = torch.randn(shape, generator=generator, dtype=torch.float32)
    if "norm" in key and key.endswith("weight"):
        return 1.0 + 0.1 * draw
    if key.endswith("bias"):
        return 0.02 * draw
    if key == "image_newline" or "embed" in key:
        return 0.5 * draw
    return draw / math.sqrt(math.prod(shape[1:]))


def _write_weights(path: Path, shape: VllmShape, vocab: int) -> None:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(shape.seed)
    shapes = checkpoint_shapes(shape, vocab)
    weights = {k: _draw(k, shapes[k], generator).to(torch.bfloat16).contiguous() for k in sorted(shapes)}
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})


def _tokenizer():
    from lmms_holitom.offline_tokenizer import byte_level_tokenizer

    return byte_level_tokenizer(
        _SPECIAL, words=("the", "what", "video", "is", "in"), additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
    )


def _config(shape: VllmShape, tokenizer):
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    vision = SiglipVisionConfig(hidden_size=shape.vision_width, intermediate_size=shape.vision_intermediate,
                                num_hidden_layers=shape.vision_layers, num_attention_heads=shape.vision_heads,
                                image_size=384, patch_size=14, vision_use_head=False)
    text = Qwen2Config(vocab_size=len(tokenizer), hidden_size=shape.text_width,
                       intermediate_size=shape.text_intermediate, num_hidden_layers=shape.text_layers,
                       num_attention_heads=shape.text_heads, num_key_value_heads=shape.text_kv_heads,
                       max_position_embeddings=32768, tie_word_embeddings=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
                       eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id)
    config = LlavaOnevisionConfig(vision_config=vision, text_config=text,
                                  image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                                  video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
                                  vision_feature_layer=-1, vision_feature_select_strategy="full",
                                  vision_aspect_ratio="anyres_max_9")
    config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    config.dtype = "bfloat16"
    return config


def _build(shape: VllmShape, path: Path) -> None:
    from transformers import (
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = _tokenizer()
    _config(shape, tokenizer).save_pretrained(path)
    half = [0.5, 0.5, 0.5]
    LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(image_mean=half, image_std=half), tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(image_mean=half, image_std=half), num_image_tokens=729,
        vision_feature_select_strategy="full",
    ).save_pretrained(path)
    _write_weights(path, shape, len(tokenizer))
    (path / _MARKER).write_text(json.dumps({"format": _FORMAT_VERSION, "shape": asdict(shape)}, indent=1))


def ensure_bench_model(shape: VllmShape, path: str | os.PathLike | None = None) -> Path:
    """The checkpoint folder of ``shape``, built atomically on first use (cache: `testing.cache.cache_root`)."""
    target = Path(path) if path is not None else cache_root() / f"vllm-bench-{shape.name}-v{_FORMAT_VERSION}"
    return build_once(target, _MARKER, lambda p: _build(shape, p), f".vllm-bench-{shape.name}-")
