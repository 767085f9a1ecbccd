"""Theoretical cost model (spec §8): the paper's LLM FLOPs, and an exact calculator.

``convention="paper"`` reproduces the HoliTom paper's figures: LLM only, visual tokens only, per decoder
layer ``4·n·d² + 2·n²·d + 2·n·d·m`` (d hidden size, m MLP width); with an inner-LLM step at layer K,
layers < K see n tokens and layers >= K see ``round(n·(1 − r))``.

``convention="exact"`` counts 2 FLOPs per multiply-add of a prefill: q/o projections (d×d), k/v
projections of grouped-query width, causal attention scores and values, SwiGLU's three matrices, the text
tokens beside the visual ones, and the LM head for the last position; ``vision_flops`` adds the vision
tower and projector per frame.

The paper's budgets count ``F · ceil(retain · N)`` visual tokens (e.g. 32 · 30 = 960 at 15 %), which is what
its tables use: `paper_visual_tokens` gives that count, and `setting_flops` the FLOPs of one
`HoliTomConfig` on a preset model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from lmms_holitom.config import HoliTomConfig

__all__ = [
    "PRESETS",
    "ModelShape",
    "llm_flops",
    "paper_visual_tokens",
    "setting_flops",
    "shape_from_hf_config",
    "vision_flops",
]

Convention = Literal["paper", "exact"]


@dataclass(frozen=True)
class ModelShape:
    """The sizes the cost model needs (LLM decoder + vision tower + video geometry)."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    vision_layers: int = 26
    vision_hidden: int = 1152
    vision_intermediate: int = 4304
    vision_patches: int = 729
    tokens_per_frame: int = 196
    default_frames: int = 32

    @property
    def kv_hidden(self) -> int:
        return self.hidden // self.heads * self.kv_heads


PRESETS: dict[str, ModelShape] = {
    "llava-onevision-0.5b": ModelShape("llava-onevision-0.5b", 24, 896, 4864, 14, 2, 151936),
    "llava-onevision-7b": ModelShape("llava-onevision-7b", 28, 3584, 18944, 28, 4, 152064),
    "llava-onevision-72b": ModelShape("llava-onevision-72b", 80, 8192, 29568, 64, 8, 152064),
    "llava-video-7b": ModelShape(
        "llava-video-7b", 28, 3584, 18944, 28, 4, 152064, tokens_per_frame=169, default_frames=64
    ),
    # Qwen VL: a "frame" is one temporal patch group (2 input frames); the geometry is 448x448 px per frame
    # (lmms-eval's default min_pixels = 256*28*28), 32 input frames = 16 groups. Qwen2.5-VL-7B: patch 14 ->
    # 32x32 = 1024 patches -> 256 tokens; Qwen3-VL-8B: patch 16 -> 28x28 = 784 patches -> 196 tokens.
    # Sizes: the checkpoints' config.json (see `lmms_holitom.shapes.QWEN_SHAPES`).
    "qwen2.5-vl-7b": ModelShape(
        "qwen2.5-vl-7b", 28, 3584, 18944, 28, 4, 152064, vision_layers=32, vision_hidden=1280,
        vision_intermediate=3420, vision_patches=1024, tokens_per_frame=256, default_frames=16,
    ),
    "qwen3-vl-8b": ModelShape(
        "qwen3-vl-8b", 36, 4096, 12288, 32, 8, 151936, vision_layers=27, vision_hidden=1152,
        vision_intermediate=4304, vision_patches=784, tokens_per_frame=196, default_frames=16,
    ),
}
_ALIASES = {"0.5b": "llava-onevision-0.5b", "7b": "llava-onevision-7b", "72b": "llava-onevision-72b",
            "ov-0.5b": "llava-onevision-0.5b", "ov-7b": "llava-onevision-7b", "ov-72b": "llava-onevision-72b",
            "video-7b": "llava-video-7b", "qwen2.5-vl": "qwen2.5-vl-7b", "qwen3-vl": "qwen3-vl-8b"}


def get_preset(name: str) -> ModelShape:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[key]


def _check_count(name: str, value: int | float, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"{name} must be a number >= {minimum}, got {value!r}")


def _paper_layer(n: int, d: int, m: int) -> float:
    return 4 * n * d * d + 2 * n * n * d + 2 * n * d * m


def _exact_layer(n: int, context: int, d: int, d_kv: int, m: int) -> float:
    """2·MACs of one prefill layer: ``n`` new tokens attending causally over ``context`` tokens in all.

    ``context >= n``; the new tokens are the last ``n`` of the context, so query i sees
    ``context - n + i + 1`` keys.
    """
    projections = n * d * (2 * d + 2 * d_kv)
    pairs = n * (context - n) + n * (n + 1) // 2
    attention = 2 * pairs * d  # scores (q·k) and values (p·v), summed over heads
    mlp = 3 * n * d * m  # SwiGLU: gate, up, down
    return 2.0 * (projections + attention + mlp)


def llm_flops(
    visual_tokens: int,
    *,
    layers: int,
    hidden: int,
    intermediate: int,
    merge_layer: int | None = None,
    merge_ratio: float = 0.0,
    convention: Convention = "paper",
    text_tokens: int = 0,
    kv_hidden: int | None = None,
    vocab: int = 0,
) -> float:
    """FLOPs of the LLM prefill for ``visual_tokens`` visual tokens (spec §8).

    Args:
        visual_tokens: n, the visual tokens entering the LLM.
        layers, hidden, intermediate: decoder depth, width d and MLP width m.
        merge_layer: K of an inner-LLM merge/drop; layers >= K see ``round(n·(1 − merge_ratio))``.
        merge_ratio: r, the fraction merged away at K.
        convention: ``paper`` (visual tokens only, the paper's per-layer formula) or ``exact``
            (2 FLOPs per multiply-add; text tokens, grouped-query k/v width, SwiGLU, causal attention,
            and the LM head of the last position).
        text_tokens, kv_hidden, vocab: used by ``exact`` only (kv_hidden defaults to ``hidden``).
    """
    _check_count("visual_tokens", visual_tokens)
    _check_count("layers", layers, 1)
    _check_count("hidden", hidden, 1)
    _check_count("intermediate", intermediate, 1)
    _check_count("text_tokens", text_tokens)
    if not 0.0 <= merge_ratio < 1.0:
        raise ValueError(f"merge_ratio must be in [0, 1), got {merge_ratio!r}")
    if merge_layer is not None and not 0 <= merge_layer <= layers:
        raise ValueError(f"merge_layer must be in [0, {layers}] (layers={layers}), got {merge_layer!r}")
    n = int(visual_tokens)
    k = layers if merge_layer is None else int(merge_layer)
    n_late = n if merge_layer is None else round(n * (1 - merge_ratio))
    if convention == "paper":
        return k * _paper_layer(n, hidden, intermediate) + (layers - k) * _paper_layer(
            n_late, hidden, intermediate
        )
    if convention != "exact":
        raise ValueError(f"convention must be 'paper' or 'exact', got {convention!r}")
    d_kv = hidden if kv_hidden is None else kv_hidden
    early = text_tokens + n
    late = text_tokens + n_late
    total = k * _exact_layer(early, early, hidden, d_kv, intermediate)
    total += (layers - k) * _exact_layer(late, late, hidden, d_kv, intermediate)
    return total + 2.0 * hidden * vocab


def vision_flops(frames: int, shape: ModelShape) -> float:
    """2·MACs of the vision tower (kept layers), patch embedding and projector for ``frames`` frames.

    For the Qwen VL presets (a frame = one temporal patch group) this is an estimate: every layer is counted
    as full attention (Qwen2.5-VL's window layers cost less) and the 2x2 merger as the projector.
    """
    _check_count("frames", frames)
    p, d, m = shape.vision_patches, shape.vision_hidden, shape.vision_intermediate
    per_layer = p * d * 4 * d + 2 * p * p * d + 2 * p * d * m  # MACs: qkvo, scores+values, MLP
    patch_embed = p * 3 * 14 * 14 * d
    projector = p * (d * shape.hidden + shape.hidden * shape.hidden)
    return 2.0 * frames * (shape.vision_layers * per_layer + patch_embed + projector)


def paper_visual_tokens(config: HoliTomConfig, frames: int, tokens_per_frame: int) -> int:
    """Visual tokens the cost model counts for a setting: the method's budget (`Method.budget`).

    HoliTom: the paper's ``F · ceil(retain · N)``; VisionZip: its per-frame token count; dense and FastV: all
    ``F · N``; every other method its own count (its module in `lmms_holitom.methods`).
    """
    return config.visual_budget(frames, tokens_per_frame)


def setting_flops(
    config: HoliTomConfig,
    shape: ModelShape | str,
    frames: int | None = None,
    *,
    visual_tokens: int | None = None,
    convention: Convention = "paper",
    text_tokens: int = 0,
) -> float:
    """LLM FLOPs of one method setting on a model (``visual_tokens`` defaults to the paper's count)."""
    shape = get_preset(shape) if isinstance(shape, str) else shape
    frames = shape.default_frames if frames is None else frames
    n = paper_visual_tokens(config, frames, shape.tokens_per_frame) if visual_tokens is None else visual_tokens
    mode = config.inner_mode
    return llm_flops(
        n,
        layers=shape.layers,
        hidden=shape.hidden,
        intermediate=shape.intermediate,
        merge_layer=config.merge_layer if mode else None,
        merge_ratio=config.merge_ratio if mode else 0.0,
        convention=convention,
        text_tokens=text_tokens,
        kv_hidden=shape.kv_hidden,
        vocab=shape.vocab,
    )


def shape_from_hf_config(config: Any, name: str = "model") -> ModelShape:
    """A `ModelShape` from a transformers LLaVA-OneVision config (or its ``text_config``)."""
    text = getattr(config, "text_config", config)
    vision = getattr(config, "vision_config", None)
    shape = ModelShape(
        name=name,
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        heads=text.num_attention_heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or text.num_attention_heads,
        vocab=text.vocab_size,
    )
    if vision is not None:
        patches = (vision.image_size // vision.patch_size) ** 2
        side = math.isqrt(patches)
        pooled = math.ceil(side / 2) ** 2
        shape = replace(
            shape,
            vision_layers=vision.num_hidden_layers,
            vision_hidden=vision.hidden_size,
            vision_intermediate=vision.intermediate_size,
            vision_patches=patches,
            tokens_per_frame=pooled,
        )
    return shape
