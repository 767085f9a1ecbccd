"""LLaVA-OneVision models "by shape": the published architectures with random weights, for benchmarks.

``holitom bench --shape 7b`` needs the *architecture* of a checkpoint, not its weights: speed and memory
depend only on the sizes. This module builds a transformers ``LlavaOnevisionConfig`` with

* the vision tower of the published checkpoints: SigLIP-so400m at 384 px / patch 14 (hidden 1152, MLP 4304,
  16 heads, 26 layers — the HF checkpoints keep 26 of SigLIP's 27 layers), no pooling head;
* the Qwen2 decoder of `lmms_holitom.flops.PRESETS` (layers, width, MLP width, heads, key/value heads,
  vocabulary), RoPE theta 1e6, RMS-norm eps 1e-6, tied embeddings for 0.5B only (as Qwen2-0.5B);
* the checkpoints' special ids (``<image>`` 151646, ``<video>`` 151647, eos ``<|im_end|>`` 151645);

and instantiates it directly on the target device in the target dtype with initialisation switched off,
then fills the weights with a fast seeded random init on the device. A 7B model in bf16 is therefore built
on the GPU in seconds without ever holding the weights in CPU memory (and without the meta-device
round-trip, which would leave computed buffers such as RoPE's ``inv_freq`` empty).

Shape names (`parse_shape`): ``tiny``, ``0.5b``, ``7b``, ``72b`` (any `flops.PRESETS` name or alias), and
``<preset>-layers=N`` for the preset's width with only N decoder layers (``72b-layers=8`` fits on one GPU).

``qwen2.5-vl-7b`` and ``qwen3-vl-8b`` are the architectures of Qwen/Qwen2.5-VL-7B-Instruct and
Qwen/Qwen3-VL-8B-Instruct (`QWEN_SHAPES`, sizes from the checkpoints' ``config.json``; Qwen3-VL-8B's MLP width
12288 is the one consistent with its published 8.77 B parameters), built as ``Qwen2_5_VLConfig`` /
``Qwen3VLConfig`` (``BenchShape.family``) and, by default, the stock transformers classes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from lmms_holitom.flops import ModelShape, get_preset

__all__ = [
    "SIGLIP_SO400M",
    "TINY_SHAPE",
    "BenchShape",
    "build_config",
    "build_model",
    "init_random_weights",
    "parse_shape",
    "scale_layer",
]

#: The vision tower of every LLaVA-OneVision checkpoint (SigLIP-so400m-patch14-384, 26 kept layers).
SIGLIP_SO400M: dict[str, Any] = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 26,
    "num_attention_heads": 16,
    "image_size": 384,
    "patch_size": 14,
    "layer_norm_eps": 1e-6,
    "vision_use_head": False,
}

#: Special ids of the published Qwen2 checkpoints.
_QWEN_IDS = {"image": 151646, "video": 151647, "eos": 151645, "pad": 151643}


@dataclass(frozen=True)
class BenchShape:
    """A model architecture to build with random weights.

    Attributes:
        name: the shape string it was parsed from (``7b``, ``72b-layers=8``, ``tiny``).
        llm: decoder sizes (a `flops.ModelShape`; its vision fields describe the tower too).
        vision: keyword arguments of ``SiglipVisionConfig``.
        tie_word_embeddings: whether the LM head shares the embedding matrix.
        image_token_index, video_token_index, eos_token_id, pad_token_id: special ids.
        rope_theta: RoPE base.
    """

    name: str
    llm: ModelShape
    vision: dict[str, Any]
    tie_word_embeddings: bool = False
    image_token_index: int = _QWEN_IDS["image"]
    video_token_index: int = _QWEN_IDS["video"]
    eos_token_id: int = _QWEN_IDS["eos"]
    pad_token_id: int = _QWEN_IDS["pad"]
    rope_theta: float = 1_000_000.0
    family: str = "llava_onevision"


#: A tiny shape like `lmms_holitom.testing.TinySpec` (real 384/14 geometry, 729 patches -> 196 tokens per frame).
TINY_SHAPE = BenchShape(
    name="tiny",
    llm=ModelShape("tiny", layers=4, hidden=64, intermediate=128, heads=4, kv_heads=2, vocab=512,
                   vision_layers=2, vision_hidden=32, vision_intermediate=64),
    vision={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "image_size": 384, "patch_size": 14, "layer_norm_eps": 1e-6, "vision_use_head": False},
    tie_word_embeddings=False,
    image_token_index=510,
    video_token_index=511,
    eos_token_id=509,
    pad_token_id=508,
)

_QWEN3_VISION = {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                 "hidden_act": "gelu_pytorch_tanh", "patch_size": 16, "temporal_patch_size": 2, "spatial_merge_size": 2,
                 "num_position_embeddings": 2304}
_QWEN3_VL_TEXT = {"max_position_embeddings": 262144,
                  "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                                      "mrope_interleaved": True}}
_QWEN35_TEXT = {"max_position_embeddings": 262144,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10_000_000.0, "mrope_section": [11, 11, 10],
                                    "mrope_interleaved": True, "partial_rotary_factor": 0.25}}
#: Qwen VL checkpoints: vision config kwargs and the text config's rope / head fields (config.json values); the
#: decoder's sizes, layer kinds, Gated DeltaNet and MoE sizes are the `flops.PRESETS` entry's.
QWEN_SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-vl-7b": {
        "family": "qwen2_5_vl",
        "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                   "out_hidden_size": 3584, "hidden_act": "silu", "patch_size": 14, "temporal_patch_size": 2,
                   "spatial_merge_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                   "tokens_per_second": 2},
        "text": {"max_position_embeddings": 128000,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}},
    },
    "qwen3-vl-8b": {
        "family": "qwen3_vl",
        "vision": {**_QWEN3_VISION, "out_hidden_size": 4096, "deepstack_visual_indexes": [8, 16, 24]},
        "text": _QWEN3_VL_TEXT,
    },
    # Qwen/Qwen3-VL-30B-A3B-Instruct: Qwen3-VL-8B's vision tower projecting to the MoE decoder's 2048
    "qwen3-vl-30b-a3b": {
        "family": "qwen3_vl_moe",
        "vision": {**_QWEN3_VISION, "out_hidden_size": 2048, "deepstack_visual_indexes": [8, 16, 24]},
        "text": _QWEN3_VL_TEXT,
    },
    # Qwen/Qwen3.5-9B and Qwen/Qwen3.5-35B-A3B: transformers 5.25's Qwen3_5VisionConfig (no deepstack) projecting to
    # the decoder's width; text rope: interleaved M-RoPE [11, 11, 10] on a quarter of each 256-wide head, theta 1e7
    "qwen3.5-9b": {"family": "qwen3_5", "vision": {**_QWEN3_VISION, "out_hidden_size": 4096}, "text": _QWEN35_TEXT},
    "qwen3.5-35b-a3b": {"family": "qwen3_5_moe", "vision": {**_QWEN3_VISION, "out_hidden_size": 2048},
                        "text": _QWEN35_TEXT},
}
#: Special ids of the Qwen VL checkpoints: Qwen2.5-VL and Qwen3-VL(-MoE); Qwen3.5's vocabulary puts them elsewhere
_QWEN_VL_IDS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
                "vision_end_token_id": 151653}
_QWEN35_IDS = {"image_token_id": 248056, "video_token_id": 248057, "vision_start_token_id": 248053,
               "vision_end_token_id": 248054}


def _special_ids(family: str) -> dict[str, int]:
    return _QWEN35_IDS if family.startswith("qwen3_5") else _QWEN_VL_IDS


_LAYERS_RE = re.compile(r"^(?P<base>.+?)-layers=(?P<n>\d+)$")


def parse_shape(name: str) -> BenchShape:
    """``tiny`` | a `flops` preset or alias (``0.5b``, ``7b``, ``72b``) | ``<preset>-layers=N``."""
    text = name.strip().lower()
    if text == "tiny":
        return TINY_SHAPE
    layers: int | None = None
    match = _LAYERS_RE.match(text)
    if match:
        text, layers = match.group("base"), int(match.group("n"))
        if layers < 1:
            raise ValueError(f"shape {name!r}: layers must be >= 1")
    try:
        llm = get_preset(text)
    except ValueError as err:
        raise ValueError(f"unknown shape {name!r}: use tiny, 0.5b, 7b, 72b or '<preset>-layers=N' ({err})") from None
    if llm.name in QWEN_SHAPES:
        if layers is not None:
            llm = llm.with_layers(layers, name=f"{llm.name}-layers={layers}")
        info = QWEN_SHAPES[get_preset(text).name]
        ids = _special_ids(info["family"])
        return BenchShape(name=name.strip(), llm=llm, vision=dict(info["vision"]), family=info["family"],
                          image_token_index=ids["image_token_id"], video_token_index=ids["video_token_id"])
    if llm.tokens_per_frame != 196:
        raise ValueError(f"shape {name!r}: only the LLaVA-OneVision geometry (196 tokens per frame) is built")
    if layers is not None:
        llm = llm.with_layers(layers, name=f"{llm.name}-layers={layers}")
    tie = llm.hidden <= 1024  # Qwen2-0.5B ties its embeddings; 7B and 72B do not
    return BenchShape(name=name.strip(), llm=llm, vision=dict(SIGLIP_SO400M), tie_word_embeddings=tie)


def scale_layer(layer: int, layers: int, reference_layers: int = 28) -> int:
    """A decoder layer index for a model with ``layers`` layers.

    ``layer`` is used as is when it is a valid inner-merge layer (``1 <= layer < layers``); otherwise
    (a shallow model, e.g. the tiny one or ``72b-layers=8``) it is scaled from the 28-layer 7B model:
    ``round(layer / reference_layers * layers)``, clamped to ``[1, layers - 1]``.
    """
    if layers < 2:
        raise ValueError(f"an inner-LLM layer needs a model with >= 2 decoder layers, got {layers}")
    if 1 <= layer < layers:
        return layer
    return min(layers - 1, max(1, round(layer / reference_layers * layers)))


def _qwen_text_fields(llm: ModelShape, family: str) -> dict[str, Any]:
    """The text config's head width (Qwen3 families), layer kinds, Gated DeltaNet and MoE fields of a decoder shape."""
    fields: dict[str, Any] = {}
    if family != "qwen2_5_vl":
        fields["head_dim"] = llm.attention_head_dim
    if llm.layer_types is not None:
        fields["layer_types"] = list(llm.layer_types)
    if llm.linear is not None:
        lin = llm.linear
        fields.update(linear_num_key_heads=lin.key_heads, linear_num_value_heads=lin.value_heads,
                      linear_key_head_dim=lin.key_head_dim, linear_value_head_dim=lin.value_head_dim,
                      linear_conv_kernel_dim=lin.conv_kernel)
    if llm.moe is not None:
        fields.update(num_experts=llm.moe.experts, num_experts_per_tok=llm.moe.experts_per_token,
                      moe_intermediate_size=llm.moe.expert_intermediate)
        if llm.moe.shared_intermediate:
            fields["shared_expert_intermediate_size"] = llm.moe.shared_intermediate
    return fields


def _build_qwen_config(shape: BenchShape):
    """The transformers config of a Qwen VL shape (``Qwen2_5_VLConfig``, ``Qwen3VLConfig``, ``Qwen3VLMoeConfig``,
    ``Qwen3_5Config``, ``Qwen3_5MoeConfig``)."""
    import transformers

    llm = shape.llm
    info = QWEN_SHAPES[llm.name.split("-layers=")[0]]
    text = dict(vocab_size=llm.vocab, hidden_size=llm.hidden, intermediate_size=llm.intermediate,
                num_hidden_layers=llm.layers, num_attention_heads=llm.heads, num_key_value_heads=llm.kv_heads,
                rms_norm_eps=1e-6, tie_word_embeddings=False, eos_token_id=shape.eos_token_id,
                pad_token_id=shape.pad_token_id, bos_token_id=151643, **info["text"],
                **_qwen_text_fields(llm, shape.family))
    if shape.family == "qwen3_5_moe":
        del text["intermediate_size"]  # Qwen3.5-MoE's decoder has experts only
    names = {"qwen2_5_vl": "Qwen2_5_VLConfig", "qwen3_vl": "Qwen3VLConfig", "qwen3_vl_moe": "Qwen3VLMoeConfig",
             "qwen3_5": "Qwen3_5Config", "qwen3_5_moe": "Qwen3_5MoeConfig"}
    cls = getattr(transformers, names[shape.family])
    return cls(vision_config=dict(shape.vision), text_config=text, tie_word_embeddings=False,
               **_special_ids(shape.family))


def build_config(shape: BenchShape, attn_implementation: str = "sdpa"):
    """The transformers config of a shape (``LlavaOnevisionConfig``, or Qwen VL's for those families)."""
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    if shape.family != "llava_onevision":
        config = _build_qwen_config(shape)
        config._attn_implementation = attn_implementation
        return config
    llm = shape.llm
    vision = SiglipVisionConfig(**shape.vision)
    text = Qwen2Config(
        vocab_size=llm.vocab,
        hidden_size=llm.hidden,
        intermediate_size=llm.intermediate,
        num_hidden_layers=llm.layers,
        num_attention_heads=llm.heads,
        num_key_value_heads=llm.kv_heads,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
        tie_word_embeddings=shape.tie_word_embeddings,
        eos_token_id=shape.eos_token_id,
        pad_token_id=shape.pad_token_id,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=shape.image_token_index,
        video_token_index=shape.video_token_index,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=shape.tie_word_embeddings,
    )
    config._attn_implementation = attn_implementation
    return config


@torch.no_grad()
def init_random_weights(model: torch.nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Seeded random weights, generated on each parameter's own device (fast on a GPU).

    Norm weights (and Qwen2.5-VL's ``ln_q``) are 1, biases 0, every other parameter N(0, std); the video
    ``image_newline`` N(0, 1/sqrt(E)).
    Tied parameters are filled once.
    """
    seen: set[int] = set()
    generators: dict[torch.device, torch.Generator] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        dev = param.device
        if dev not in generators:
            generators[dev] = torch.Generator(device=dev).manual_seed(seed)
        leaf = name.rsplit(".", 1)[-1]
        owner = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
        if ("norm" in name.lower() or owner.startswith("ln_")) and leaf == "weight":
            param.fill_(1.0)
        elif leaf == "bias":
            param.zero_()
        elif name.endswith("image_newline"):
            param.normal_(0.0, 1.0 / math.sqrt(param.numel()), generator=generators[dev])
        else:
            param.normal_(0.0, std, generator=generators[dev])


def build_model(
    shape: BenchShape | str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    model_cls: type | None = None,
    seed: int = 0,
    attn_implementation: str = "sdpa",
):
    """Instantiate ``model_cls`` (default: transformers' stock class of the shape's family) for a shape.

    The model is built inside ``torch.device(device)`` with HF initialisation disabled, so parameters are
    allocated once, directly on the device, in ``dtype``; then `init_random_weights` fills them.
    Returns the model in eval mode.
    """
    import transformers

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        from transformers.modeling_utils import no_init_weights

    shape = parse_shape(shape) if isinstance(shape, str) else shape
    stock = {"llava_onevision": "LlavaOnevisionForConditionalGeneration",
             "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "qwen3_vl": "Qwen3VLForConditionalGeneration",
             "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration", "qwen3_5": "Qwen3_5ForConditionalGeneration",
             "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration"}
    cls = model_cls or getattr(transformers, stock[shape.family])
    config = build_config(shape, attn_implementation=attn_implementation)
    with torch.device(device), no_init_weights():
        model = cls._from_config(config, dtype=dtype)
    model.tie_weights()  # no_init_weights also skips the tying done by init_weights
    if torch.device(device).type != "meta":  # on meta (sizes only) there is nothing to fill
        init_random_weights(model, seed=seed)
    model.eval()
    gen = model.generation_config
    gen.eos_token_id = shape.eos_token_id
    gen.pad_token_id = shape.pad_token_id
    return model
