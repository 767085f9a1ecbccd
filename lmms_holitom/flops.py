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

Hybrid decoders and mixtures of experts (Qwen3.5, Qwen3.5-MoE, Qwen3-VL-MoE): a `ModelShape` may name each layer's
kind (``layer_types``: ``full_attention`` / ``linear_attention``) and carry `LinearAttention` (Gated DeltaNet) and
`MoE` sizes. A full-attention layer costs what it always did; a linear-attention layer replaces the attention
term by its recurrence, whose cost per token does not grow with the sequence (`linear_attention_macs`); an MoE MLP
counts the experts a token is routed to, the router and the shared expert (`mlp_macs`). `decoder_flops` sums the
layers one by one. Derivations: `linear_attention_macs`, `mlp_macs` and docs/algorithm.md §8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.layer_kinds import FULL_ATTENTION, LINEAR_ATTENTION

__all__ = [
    "FULL_ATTENTION",
    "LINEAR_ATTENTION",
    "PRESETS",
    "LinearAttention",
    "ModelShape",
    "MoE",
    "decoder_fields",
    "decoder_flops",
    "linear_attention_macs",
    "llm_flops",
    "mlp_macs",
    "paper_visual_tokens",
    "setting_flops",
    "shape_from_hf_config",
    "vision_flops",
]

Convention = Literal["paper", "exact"]


def _check_count(name: str, value: int | float, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"{name} must be a number >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class LinearAttention:
    """Sizes of a Gated DeltaNet layer (transformers' ``linear_*`` config fields of Qwen3.5).

    Attributes:
        key_heads, value_heads: ``linear_num_key_heads`` (q and k heads), ``linear_num_value_heads`` (each value head
            keeps its own state; a q/k head serves ``value_heads / key_heads`` of them).
        key_head_dim, value_head_dim: ``linear_key_head_dim`` d_k, ``linear_value_head_dim`` d_v.
        conv_kernel: ``linear_conv_kernel_dim``, the causal depthwise convolution's width over q, k and v.
    """

    key_heads: int
    value_heads: int
    key_head_dim: int
    value_head_dim: int
    conv_kernel: int = 4

    def __post_init__(self) -> None:
        for name in ("key_heads", "value_heads", "key_head_dim", "value_head_dim", "conv_kernel"):
            _check_count(name, getattr(self, name), 1)

    @property
    def key_dim(self) -> int:
        return self.key_heads * self.key_head_dim

    @property
    def value_dim(self) -> int:
        return self.value_heads * self.value_head_dim


@dataclass(frozen=True)
class MoE:
    """A mixture-of-experts MLP (transformers' ``num_experts``, ``num_experts_per_tok``, ``moe_intermediate_size``,
    ``shared_expert_intermediate_size``; 0 = no shared expert, as Qwen3-VL-MoE). Every decoder layer is sparse."""

    experts: int
    experts_per_token: int
    expert_intermediate: int
    shared_intermediate: int = 0

    def __post_init__(self) -> None:
        for name in ("experts", "experts_per_token", "expert_intermediate"):
            _check_count(name, getattr(self, name), 1)
        _check_count("shared_intermediate", self.shared_intermediate)
        if self.experts_per_token > self.experts:
            raise ValueError(f"experts_per_token must be in [1, {self.experts}] (experts={self.experts}), "
                             f"got {self.experts_per_token}")

    @property
    def active_intermediate(self) -> int:
        """The MLP width one token passes through: ``experts_per_token · expert_intermediate + shared``."""
        return self.experts_per_token * self.expert_intermediate + self.shared_intermediate


@dataclass(frozen=True)
class ModelShape:
    """The sizes the cost model needs (LLM decoder + vision tower + video geometry).

    Attributes beyond the dense decoder's (defaults: a dense, full-attention decoder with ``head_dim = hidden /
    heads``, as LLaVA-OneVision and Qwen2.5-VL):
        head_dim: per-head width of the full-attention layers when it is not ``hidden / heads`` (Qwen3.5-35B-A3B:
            256 with d 2048 and 16 heads); a value equal to ``hidden / heads`` is stored as None.
        attn_output_gate: the query projection also emits a per-head output gate (Qwen3.5: ``q_proj`` is twice as
            wide).
        layer_types: each decoder layer's kind (``full_attention`` / ``linear_attention``); None: all full.
        linear: Gated DeltaNet sizes, required when some layer is ``linear_attention``.
        moe: mixture-of-experts sizes; None: the dense SwiGLU MLP of width ``intermediate``.
    """

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
    head_dim: int | None = None
    attn_output_gate: bool = False
    layer_types: tuple[str, ...] | None = None
    linear: LinearAttention | None = None
    moe: MoE | None = None

    def __post_init__(self) -> None:
        if self.head_dim is not None and self.head_dim == self.hidden // self.heads:
            object.__setattr__(self, "head_dim", None)  # one representation of the default width
        if self.layer_types is None:
            return
        if len(self.layer_types) != self.layers:
            raise ValueError(f"layer_types must name {self.layers} layers (layers={self.layers}), "
                             f"got {len(self.layer_types)}")
        unknown = sorted(set(self.layer_types) - {FULL_ATTENTION, LINEAR_ATTENTION})
        if unknown:
            raise ValueError(f"layer_types must be {FULL_ATTENTION} or {LINEAR_ATTENTION}, got {unknown[0]!r}")
        if LINEAR_ATTENTION in self.layer_types and self.linear is None:
            raise ValueError(f"shape {self.name!r}: linear_attention layers need the LinearAttention sizes (linear)")

    @property
    def attention_head_dim(self) -> int:
        return self.hidden // self.heads if self.head_dim is None else self.head_dim

    @property
    def kv_hidden(self) -> int:
        return self.attention_head_dim * self.kv_heads

    @property
    def kinds(self) -> tuple[str, ...]:
        """Each decoder layer's kind (all ``full_attention`` without ``layer_types``)."""
        return self.layer_types or (FULL_ATTENTION,) * self.layers

    @property
    def active_intermediate(self) -> int:
        """The MLP width a token passes through (the paper convention's m): dense ``intermediate`` or the MoE's."""
        return self.intermediate if self.moe is None else self.moe.active_intermediate

    def with_layers(self, layers: int, name: str | None = None) -> ModelShape:
        """The same widths with the first ``layers`` decoder layers (a hybrid keeps its first layers' kinds)."""
        _check_count("layers", layers, 1)
        types = self.layer_types
        if types is not None:
            if layers > len(types):
                raise ValueError(f"shape {self.name!r} has {len(types)} layers; layers must be <= {len(types)}, "
                                 f"got {layers}")
            types = types[:layers]
        return replace(self, name=name or self.name, layers=layers, layer_types=types)


def _hybrid(layers: int, interval: int = 4) -> tuple[str, ...]:
    """Qwen3.5's layer pattern (``full_attention_interval``): layer i is full attention when (i + 1) % interval == 0."""
    return tuple(FULL_ATTENTION if (i + 1) % interval == 0 else LINEAR_ATTENTION for i in range(layers))


#: Qwen3.5's Gated DeltaNet (every published size so far: 16 q/k heads, 32 value heads, 128 wide, kernel 4)
_QWEN35_GDN = LinearAttention(key_heads=16, value_heads=32, key_head_dim=128, value_head_dim=128, conv_kernel=4)
#: Qwen VL geometry shared by Qwen3-VL and Qwen3.5: patch 16 at 448x448 px -> 784 patches, 196 tokens per group
_QWEN3_VISION = dict(vision_layers=27, vision_hidden=1152, vision_intermediate=4304, vision_patches=784,
                     tokens_per_frame=196, default_frames=16)

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
    "qwen3-vl-8b": ModelShape("qwen3-vl-8b", 36, 4096, 12288, 32, 8, 151936, **_QWEN3_VISION),
    # Qwen/Qwen3-VL-30B-A3B-Instruct: the text config.json of the Qwen3-30B-A3B decoder (48 layers, 2048 wide, 32
    # heads of 128, 4 kv heads, 128 experts of 768, 8 per token, no shared expert); the vision tower is Qwen3-VL-8B's.
    "qwen3-vl-30b-a3b": ModelShape(
        "qwen3-vl-30b-a3b", 48, 2048, 6144, 32, 4, 151936, head_dim=128,
        moe=MoE(experts=128, experts_per_token=8, expert_intermediate=768), **_QWEN3_VISION,
    ),
    # Qwen/Qwen3.5-9B: transformers 5.25's Qwen3_5TextConfig defaults ("Qwen3.5-9B style"; the same numbers as
    # the 9B checkpoints' config.json): 32 layers, 3 Gated DeltaNet then 1 gated full attention (16 heads of 256,
    # 4 kv heads), d 4096, MLP 12288, vocabulary 248320; vision: Qwen3_5VisionConfig (27 x 1152, patch 16).
    "qwen3.5-9b": ModelShape(
        "qwen3.5-9b", 32, 4096, 12288, 16, 4, 248320, head_dim=256, attn_output_gate=True,
        layer_types=_hybrid(32), linear=_QWEN35_GDN, **_QWEN3_VISION,
    ),
    # Qwen/Qwen3.5-35B-A3B: transformers 5.25's Qwen3_5MoeTextConfig defaults (its docstring's checkpoint; the same
    # as the checkpoint's config.json): 40 layers, d 2048, 16 heads of 256, 2 kv heads, 256 experts of 512, 8 per
    # token, a shared expert of 512; the 9B's Gated DeltaNet and vision tower.
    "qwen3.5-35b-a3b": ModelShape(
        "qwen3.5-35b-a3b", 40, 2048, 512, 16, 2, 248320, head_dim=256, attn_output_gate=True,
        layer_types=_hybrid(40), linear=_QWEN35_GDN,
        moe=MoE(experts=256, experts_per_token=8, expert_intermediate=512, shared_intermediate=512), **_QWEN3_VISION,
    ),
}
_ALIASES = {"0.5b": "llava-onevision-0.5b", "7b": "llava-onevision-7b", "72b": "llava-onevision-72b",
            "ov-0.5b": "llava-onevision-0.5b", "ov-7b": "llava-onevision-7b", "ov-72b": "llava-onevision-72b",
            "video-7b": "llava-video-7b", "qwen2.5-vl": "qwen2.5-vl-7b", "qwen3-vl": "qwen3-vl-8b",
            "qwen3-vl-moe": "qwen3-vl-30b-a3b", "qwen3.5": "qwen3.5-9b", "qwen3.5-moe": "qwen3.5-35b-a3b"}


def get_preset(name: str) -> ModelShape:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return PRESETS[key]


@dataclass(frozen=True)
class _Widths:
    """The decoder widths a layer's cost reads: d, attention width ``heads · head_dim``, query projection output
    (twice the attention width with an output gate), k/v width, MLP width, and the MoE / Gated DeltaNet sizes."""

    d: int
    attn: int
    q_out: int
    kv: int
    m: int
    moe: MoE | None = None
    linear: LinearAttention | None = None

    @classmethod
    def of(cls, shape: ModelShape) -> _Widths:
        attn = shape.heads * shape.attention_head_dim
        return cls(d=shape.hidden, attn=attn, q_out=attn * (2 if shape.attn_output_gate else 1), kv=shape.kv_hidden,
                   m=shape.intermediate, moe=shape.moe, linear=shape.linear)

    @property
    def active_m(self) -> int:
        return self.m if self.moe is None else self.moe.active_intermediate


def mlp_macs(n: int, hidden: int, intermediate: int, moe: MoE | None = None) -> int:
    """Multiply-adds of the MLP for ``n`` tokens.

    Dense SwiGLU: gate, up (d × m each) and down (m × d): ``3·n·d·m``. Mixture of experts (``moe``): each token
    passes the router (d × E logits), its k routed experts (SwiGLU of width m_e each) and, when there is one, the
    shared expert (SwiGLU of width m_s) and its scalar gate (d × 1):
    ``n·d·E + 3·n·d·k·m_e + [3·n·d·m_s + n·d]``; the experts a token is not routed to cost nothing. One expert, top-1,
    no shared expert is therefore the dense MLP plus the router's ``n·d``.
    """
    if moe is None:
        return 3 * n * hidden * intermediate
    macs = n * hidden * moe.experts + 3 * n * hidden * moe.experts_per_token * moe.expert_intermediate
    if moe.shared_intermediate:
        macs += 3 * n * hidden * moe.shared_intermediate + n * hidden
    return macs


def linear_attention_macs(n: int, hidden: int, linear: LinearAttention) -> int:
    """Multiply-adds of a Gated DeltaNet block (no MLP) for ``n`` new tokens, whatever the context before them.

    Derivation (recurrent form, Qwen3.5's ``Qwen3_5GatedDeltaNet``; kd = H_k·d_k, vd = H_v·d_v):

    * projections per token: ``in_proj_qkv`` d → 2·kd + vd, ``in_proj_z`` d → vd, ``in_proj_b`` and ``in_proj_a``
      d → H_v each, ``out_proj`` vd → d: ``d·(2·kd + 3·vd + 2·H_v)``;
    * causal depthwise convolution of width K over the 2·kd + vd channels: ``(2·kd + vd)·K``;
    * recurrence: each value head h keeps a state S_h (d_k × d_v); per token t with decay α_t and rate β_t
      (per head scalars), ``S ← α_t·S`` (elementwise), ``u = Sᵀ k_t`` (d_k·d_v), ``δ = β_t (v_t − u)``,
      ``S ← S + k_t δᵀ`` (d_k·d_v), ``o_t = Sᵀ q_t`` (d_k·d_v): ``3·H_v·d_k·d_v``.

    Every term is per token: the state has a fixed size, so token t costs the same at any position and the block
    costs ``n ×`` one token's, linear in n (a full-attention layer's scores grow with the context). Elementwise work
    (decay, gates, norms, activations) is not counted, as elsewhere in this model. The chunked kernel transformers
    and vLLM run in prefill computes the same outputs with extra intra-chunk work (O(n·C) per head for chunk C);
    this counts the recurrence, the algorithm's cost.
    """
    kd, vd, hv = linear.key_dim, linear.value_dim, linear.value_heads
    projections = hidden * (2 * kd + 3 * vd + 2 * hv)
    conv = (2 * kd + vd) * linear.conv_kernel
    recurrence = 3 * hv * linear.key_head_dim * linear.value_head_dim
    return n * (projections + conv + recurrence)


def _full_attention_macs(n: int, context: int, w: _Widths) -> int:
    """Multiply-adds of a full-attention block (no MLP): ``n`` new tokens attending causally over ``context``.

    ``context >= n``; the new tokens are the last ``n`` of the context, so query i sees ``context - n + i + 1``
    keys. q (with its gate) / k / v / o projections, then scores q·k and values p·v over the attention width.
    """
    projections = n * w.d * (w.q_out + 2 * w.kv) + n * w.attn * w.d
    pairs = n * (context - n) + n * (n + 1) // 2
    return projections + 2 * pairs * w.attn


def _paper_layer(kind: str, n: int, w: _Widths) -> float:
    """The paper's per-layer count (multiply-adds of the visual tokens): ``4·n·d² + 2·n²·d + 2·n·d·m`` for a
    full-attention layer; a linear-attention layer's attention term ``2·n²·d`` becomes its recurrence
    ``3·n·H_v·d_k·d_v`` (`linear_attention_macs`); m is the MLP width a token passes (an MoE's active width)."""
    if kind == LINEAR_ATTENTION:
        lin = w.linear
        assert lin is not None  # ModelShape checks it
        attention = 3 * n * lin.value_heads * lin.key_head_dim * lin.value_head_dim
    else:
        attention = 2 * n * n * w.d
    return 4 * n * w.d * w.d + attention + 2 * n * w.d * w.active_m


def _exact_layer(kind: str, n: int, w: _Widths) -> float:
    """2·MACs of one prefill layer over ``n`` tokens (its own whole sequence)."""
    if kind == LINEAR_ATTENTION:
        assert w.linear is not None  # ModelShape checks it
        mixer = linear_attention_macs(n, w.d, w.linear)
    else:
        mixer = _full_attention_macs(n, n, w)
    return 2.0 * (mixer + mlp_macs(n, w.d, w.m, w.moe))


def _decoder(kinds: tuple[str, ...], w: _Widths, visual_tokens: int, merge_layer: int | None, merge_ratio: float,
             convention: Convention, text_tokens: int, vocab: int, late_tokens: int | None = None) -> float:
    """The sum over the decoder's layers, one by one: layers < K see n visual tokens, layers >= K
    ``round(n·(1 − r))`` (or ``late_tokens``, a measured count); ``exact`` adds the text tokens to each layer's
    sequence and the last position's LM head."""
    _check_count("visual_tokens", visual_tokens)
    _check_count("text_tokens", text_tokens)
    layers = len(kinds)
    if not 0.0 <= merge_ratio < 1.0:
        raise ValueError(f"merge_ratio must be in [0, 1), got {merge_ratio!r}")
    if merge_layer is not None and not 0 <= merge_layer <= layers:
        raise ValueError(f"merge_layer must be in [0, {layers}] (layers={layers}), got {merge_layer!r}")
    if convention not in ("paper", "exact"):
        raise ValueError(f"convention must be 'paper' or 'exact', got {convention!r}")
    n = int(visual_tokens)
    k = layers if merge_layer is None else int(merge_layer)
    n_late = n if merge_layer is None else round(n * (1 - merge_ratio))
    if late_tokens is not None:
        _check_count("late_tokens", late_tokens)
        n_late = int(late_tokens)
    total = 0.0
    for i, kind in enumerate(kinds):
        tokens = n if i < k else n_late
        if convention == "paper":
            total += _paper_layer(kind, tokens, w)
        else:
            total += _exact_layer(kind, text_tokens + tokens, w)
    return total if convention == "paper" else total + 2.0 * w.d * vocab


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
    """FLOPs of a dense, full-attention LLM's prefill for ``visual_tokens`` visual tokens (spec §8); a `ModelShape`
    (hybrid layers, MoE, head widths) goes through `decoder_flops`.

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
    _check_count("layers", layers, 1)
    _check_count("hidden", hidden, 1)
    _check_count("intermediate", intermediate, 1)
    w = _Widths(d=hidden, attn=hidden, q_out=hidden, kv=hidden if kv_hidden is None else kv_hidden, m=intermediate)
    return _decoder((FULL_ATTENTION,) * layers, w, visual_tokens, merge_layer, merge_ratio, convention,
                    text_tokens, vocab)


def decoder_flops(
    shape: ModelShape,
    visual_tokens: int,
    *,
    merge_layer: int | None = None,
    merge_ratio: float = 0.0,
    convention: Convention = "paper",
    text_tokens: int = 0,
    late_tokens: int | None = None,
) -> float:
    """FLOPs of ``shape``'s LLM prefill for ``visual_tokens`` visual tokens, summed layer by layer over its kinds
    (full attention, Gated DeltaNet) with its MLP (dense or MoE); arguments as `llm_flops`, and ``late_tokens``:
    the visual tokens layers >= K see when they were counted rather than derived from ``merge_ratio``.

    A shape without layer kinds, MoE or its own head width gives `llm_flops`'s numbers exactly.
    """
    return _decoder(shape.kinds, _Widths.of(shape), visual_tokens, merge_layer, merge_ratio, convention,
                    text_tokens, shape.vocab, late_tokens)


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
    return decoder_flops(
        shape,
        n,
        merge_layer=config.merge_layer if mode else None,
        merge_ratio=config.merge_ratio if mode else 0.0,
        convention=convention,
        text_tokens=text_tokens,
    )


def decoder_fields(text: Any) -> dict[str, Any]:
    """`ModelShape`'s decoder fields read from a transformers text config: sizes, the full-attention head width and
    gate, ``layer_types`` with the Gated DeltaNet sizes, and the mixture of experts.

    Qwen3.5's attention always gates its output (its ``q_proj`` is twice the attention width); its configs have no
    field for it, so the text model types ``qwen3_5_text`` / ``qwen3_5_moe_text`` (or ``attn_output_gate``) say so.
    Raises ValueError for an MoE with dense layers (``mlp_only_layers``, ``decoder_sparse_step`` > 1): the cost
    model counts every layer sparse.
    """
    heads = int(text.num_attention_heads)
    head_dim = getattr(text, "head_dim", None)
    fields: dict[str, Any] = {
        "layers": int(text.num_hidden_layers), "hidden": int(text.hidden_size), "heads": heads,
        "kv_heads": int(getattr(text, "num_key_value_heads", None) or heads), "vocab": int(text.vocab_size),
        "head_dim": None if head_dim is None or int(head_dim) == text.hidden_size // heads else int(head_dim),
        "attn_output_gate": bool(getattr(text, "attn_output_gate", False))
        or getattr(text, "model_type", None) in ("qwen3_5_text", "qwen3_5_moe_text"),
    }
    types = getattr(text, "layer_types", None)
    if types is not None and set(types) != {FULL_ATTENTION}:
        fields["layer_types"] = tuple(types)[: fields["layers"]]
        fields["linear"] = LinearAttention(
            key_heads=int(text.linear_num_key_heads), value_heads=int(text.linear_num_value_heads),
            key_head_dim=int(text.linear_key_head_dim), value_head_dim=int(text.linear_value_head_dim),
            conv_kernel=int(text.linear_conv_kernel_dim))
    experts = getattr(text, "num_experts", None)
    if experts:
        if getattr(text, "mlp_only_layers", None) or int(getattr(text, "decoder_sparse_step", 1) or 1) != 1:
            raise ValueError("the cost model counts every MoE layer sparse: mlp_only_layers must be empty and "
                             "decoder_sparse_step 1")
        fields["moe"] = MoE(experts=int(experts), experts_per_token=int(text.num_experts_per_tok),
                            expert_intermediate=int(text.moe_intermediate_size),
                            shared_intermediate=int(getattr(text, "shared_expert_intermediate_size", 0) or 0))
    fields["intermediate"] = int(getattr(text, "intermediate_size", None) or text.moe_intermediate_size)
    return fields


def shape_from_hf_config(config: Any, name: str = "model") -> ModelShape:
    """A `ModelShape` from a transformers LLaVA-OneVision config (or its ``text_config``)."""
    text = getattr(config, "text_config", config)
    vision = getattr(config, "vision_config", None)
    shape = ModelShape(name=name, **decoder_fields(text))
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
