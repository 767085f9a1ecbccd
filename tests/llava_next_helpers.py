"""Tiny LLaVA-NeXT-format checkpoints, built offline from configs (random weights).

`build_llava_next_checkpoint` writes what ``lmms-lab/llava-onevision-qwen2-*`` / ``LLaVA-Video-7B-Qwen2`` hold, in
miniature: a ``config.json`` in LLaVA-NeXT's format (``model_type: llava``, ``LlavaQwenForCausalLM``, ``mm_*``),
safetensors shards with LLaVA-NeXT's key names, a Qwen2 tokenizer without ``<image>``/``<video>``, and a SigLIP tower
folder named by ``mm_vision_tower``. The same weights are also saved in transformers' format (``hf/``) so that tests
can compare against the stock loading path. The LLaVA-NeXT names are written by hand here (not derived from the
package's key mapping), so the tests check the mapping instead of restating it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

SIDE = 27  # SigLIP-384/14 patches per side
OV_LAYOUT = {"mm_spatial_pool_mode": "bilinear", "mm_spatial_pool_stride": 2, "mm_newline_position": "one_token"}
VIDEO_LAYOUT = {"mm_spatial_pool_mode": "average", "mm_spatial_pool_stride": 2, "mm_newline_position": "grid"}
TOWER_LAYERS = 3  # the tower checkpoint's layers; LLaVA-NeXT keeps TOWER_LAYERS - 1

# transformers 5.x prefix -> LLaVA-NeXT prefix (LlavaQwenForCausalLM's module tree)
_TO_NEXT = (
    ("model.vision_tower.", "model.vision_tower.vision_tower."),
    ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
    ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
    ("model.language_model.", "model."),
)


@dataclass(frozen=True)
class NextCheckpoint:
    """Paths of a built checkpoint: ``path`` (LLaVA-NeXT format), ``hf`` (same weights, transformers format)."""

    path: Path
    hf: Path
    tower: Path


def next_key(hf_key: str) -> str:
    for old, new in _TO_NEXT:
        if hf_key.startswith(old):
            return new + hf_key[len(old):]
    return hf_key  # model.image_newline, lm_head.weight


def build_tokenizer():
    """A byte-level Qwen2 tokenizer with the Qwen chat tokens and no <image>/<video> (as Qwen2's own)."""
    from lmms_holitom.offline_tokenizer import byte_level_tokenizer

    return byte_level_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                additional_special_tokens=["<|im_start|>", "<|im_end|>"],
                                eos_token="<|im_end|>", pad_token="<|endoftext|>")


def tower_config(layers: int = TOWER_LAYERS):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
                              image_size=384, patch_size=14, initializer_range=0.2)


def build_tower(path: Path) -> Path:
    """A SigLIP tower checkpoint folder (config only: LLaVA-NeXT checkpoints carry the tower's weights)."""
    tower_config().save_pretrained(path)
    return path


def _hf_model(vocab_size: int, image_id: int, video_id: int, tie: bool, seed: int):
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, Qwen2Config

    text = Qwen2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, rms_norm_eps=1e-6,
                       tie_word_embeddings=tie, initializer_range=0.2)
    config = LlavaOnevisionConfig(vision_config=tower_config(TOWER_LAYERS - 1).to_dict() | {"vision_use_head": False},
                                  text_config=text, image_token_index=image_id, video_token_index=video_id,
                                  vision_feature_layer=-1, vision_feature_select_strategy="full",
                                  tie_word_embeddings=tie)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config).eval()
        with torch.no_grad():
            model.model.image_newline.normal_(0.0, 0.5)
    return model


def next_config(model, tower: str, layout: dict, eos_id: int) -> dict:
    """config.json of the LLaVA-NeXT checkpoint (the fields lmms-lab's configs carry)."""
    text = model.config.text_config
    pinpoints = [[w, h] for h, w in model.config.image_grid_pinpoints]  # LLaVA-NeXT writes (width, height)
    return {
        "architectures": ["LlavaQwenForCausalLM"], "model_type": "llava", "torch_dtype": "float32",
        "vocab_size": text.vocab_size, "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads, "hidden_act": "silu", "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0, "rope_scaling": None,
        "tie_word_embeddings": text.tie_word_embeddings, "use_sliding_window": False, "sliding_window": 32768,
        "max_window_layers": text.num_hidden_layers, "attention_dropout": 0.0, "initializer_range": 0.2,
        "bos_token_id": eos_id - 2, "eos_token_id": eos_id, "use_cache": True,
        "mm_vision_tower": tower, "mm_hidden_size": 32, "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "mm_patch_merge_type": "spatial_unpad",
        "mm_resampler_type": None, "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
        "mm_tunable_parts": "mm_vision_tower,mm_mlp_adapter,mm_language_model", "add_faster_video": False,
        "image_aspect_ratio": "anyres_max_9", "image_grid_pinpoints": pinpoints,
        "tokenizer_model_max_length": 32768, "tokenizer_padding_side": "right", **layout,
    }


def write_next_weights(model, path: Path, shards: int = 2) -> dict[str, torch.Tensor]:
    """The model's weights under LLaVA-NeXT names, in ``shards`` safetensors files with an index."""
    from safetensors.torch import save_file

    state = {next_key(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")  # tied checkpoints do not store it
    keys = sorted(state)
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    weight_map = {k: names[i * shards // len(keys)] for i, k in enumerate(keys)}
    for name in names:
        save_file({k: state[k] for k in keys if weight_map[k] == name}, str(path / name), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    return state


def build_llava_next_checkpoint(root: Path, *, layout: dict | None = None, tower: str | None = None,
                                vocab_room: int = 8, tie: bool = False, seed: int = 0) -> NextCheckpoint:
    """Build a tiny LLaVA-NeXT checkpoint under ``root`` (``root/next``, ``root/hf``, ``root/siglip-tower``).

    ``tower``: ``mm_vision_tower`` (default: the local tower folder). ``vocab_room``: embedding rows beyond the
    tokenizer (Qwen pads its vocabulary; at least 2 leaves room for <image>/<video>, 0 forces a resize).
    """
    root = Path(root)
    path, hf, tower_dir = root / "next", root / "hf", root / "siglip-tower"
    path.mkdir(parents=True, exist_ok=True)
    build_tower(tower_dir)
    tokenizer = build_tokenizer()
    base = len(tokenizer)
    model = _hf_model(base + vocab_room, base, base + 1, tie, seed)
    config = next_config(model, tower or str(tower_dir), layout or OV_LAYOUT, tokenizer.eos_token_id)
    (path / "config.json").write_text(json.dumps(config, indent=1))
    tokenizer.save_pretrained(path)
    write_next_weights(model, path)
    model.save_pretrained(hf)
    return NextCheckpoint(path=path, hf=hf, tower=tower_dir)


def edit_config(path: Path, **changes) -> None:
    """Change fields of a checkpoint's config.json in place (a value None deletes the field)."""
    file = path / "config.json"
    config = json.loads(file.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    file.write_text(json.dumps(config, indent=1))


def put_in_hf_cache(cache_dir: Path, repo_id: str, folder: Path, commit: str = "0" * 40) -> Path:
    """Lay ``folder``'s files out as huggingface_hub's cache does for ``repo_id`` (refs/main -> snapshot)."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
