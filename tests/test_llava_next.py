"""LLaVA-NeXT-format checkpoints loaded into the stock transformers LLaVA-OneVision class (tiny, built offline)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from llava_next_helpers import (
    OV_LAYOUT,
    SIDE,
    TOWER_LAYERS,
    VIDEO_LAYOUT,
    build_llava_next_checkpoint,
    edit_config,
    next_key,
    put_in_hf_cache,
)
from safetensors import safe_open
from transformers import LlavaOnevisionForConditionalGeneration

from lmms_holitom.hf.models.layout import VideoLayout
from lmms_holitom.hf.models.llava_next import (
    SIGLIP_SO400M_384,
    LlavaNextCheckpointError,
    convert_key,
    is_llava_next_checkpoint,
    llava_next_config,
    load_llava_next,
)
from lmms_holitom.hf.models.processing import LayoutLlavaOnevisionProcessor, load_processor

STOCK = LlavaOnevisionForConditionalGeneration


@pytest.fixture(scope="module")
def ov(tmp_path_factory):
    return build_llava_next_checkpoint(tmp_path_factory.mktemp("ov"), layout=OV_LAYOUT)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return build_llava_next_checkpoint(tmp_path_factory.mktemp("video"), layout=VIDEO_LAYOUT, tie=True, seed=1)


def _copy(ckpt, tmp_path):
    """A private copy of a checkpoint folder (to edit its config)."""
    path = tmp_path / "next"
    shutil.copytree(ckpt.path, path)
    return path


def _source_tensors(path):
    tensors = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118 (safe_open is not iterable)
    return tensors


def _frames(n=2):
    return np.random.RandomState(0).randint(0, 256, (n, 48, 64, 3), dtype=np.uint8)


def test_key_conversion_matches_the_transformers_names():
    assert convert_key("model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight") == (
        "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"
    )
    assert convert_key("model.mm_projector.0.bias") == "model.multi_modal_projector.linear_1.bias"
    assert convert_key("model.mm_projector.2.weight") == "model.multi_modal_projector.linear_2.weight"
    assert convert_key("model.layers.3.mlp.up_proj.weight") == "model.language_model.layers.3.mlp.up_proj.weight"
    assert convert_key("model.embed_tokens.weight") == "model.language_model.embed_tokens.weight"
    assert convert_key("model.norm.weight") == "model.language_model.norm.weight"
    assert convert_key("model.image_newline") == "model.image_newline"
    assert convert_key("lm_head.weight") == "lm_head.weight"


@pytest.mark.parametrize("which", ["ov", "video"])
def test_converted_state_dict_equals_the_source_tensors(which, request):
    ckpt = request.getfixturevalue(which)
    model, _, info = load_llava_next(STOCK, ckpt.path)
    assert type(model) is STOCK
    source = _source_tensors(ckpt.path)
    state = model.state_dict()
    assert len(source) > 40
    for key, tensor in source.items():
        assert torch.equal(state[convert_key(key)], tensor), key
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    assert {convert_key(k) for k in source} | tied == set(state)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.vision_config.num_hidden_layers == TOWER_LAYERS - 1  # LLaVA-NeXT drops the last layer
    assert model.config.vision_config.vision_use_head is False
    assert (model.config.vision_feature_layer, model.config.vision_feature_select_strategy) == (-1, "full")


def test_layout_comes_from_the_config_and_overrides_win(ov, video):
    _, layout, _ = load_llava_next(STOCK, video.path)
    assert layout == VideoLayout(pool_mode="average", newline="grid")
    model, layout, _ = load_llava_next(STOCK, ov.path)
    assert layout == VideoLayout()
    assert VideoLayout.from_config_dict(model.config.to_dict()) == layout  # written onto the config
    _, layout, _ = load_llava_next(
        STOCK, ov.path, layout_overrides={"mm_spatial_pool_mode": "average", "mm_newline_position": None}
    )
    assert layout == VideoLayout(pool_mode="average", newline="one_token")


def test_dense_logits_equal_the_same_weights_in_hf_format(ov):
    model, _, _ = load_llava_next(STOCK, ov.path, dtype=torch.float32, attn_implementation="eager")
    reference = STOCK.from_pretrained(ov.hf, dtype=torch.float32, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    processor = load_processor(ov.path)
    inputs = processor(text="<|im_start|>user\n<video>\nwhat is in the video?<|im_end|>", videos=[_frames()],
                       return_tensors="pt")
    with torch.no_grad():
        got, want = model(**inputs).logits, reference(**inputs).logits
    assert want.abs().max() > 1.0
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("which,frames", [("ov", 1), ("ov", 3), ("video", 1), ("video", 3)])
def test_processor_expands_video_to_the_layout_placeholder_count(which, frames, request):
    ckpt = request.getfixturevalue(which)
    processor = load_processor(ckpt.path)
    assert isinstance(processor, LayoutLlavaOnevisionProcessor)
    layout = VideoLayout.from_config_dict(json.loads((ckpt.path / "config.json").read_text()))
    inputs = processor(text="<video>\nhi", videos=[_frames(frames)], return_tensors="pt")
    count = int((inputs["input_ids"] == processor.video_token_id).sum())
    assert count == layout.placeholder_count(frames, SIDE)
    assert count == (frames * 196 + 1 if which == "ov" else frames * 182)
    assert processor._get_num_multimodal_tokens(video_sizes=[(frames, 384, 384)])["num_video_tokens"] == [count]
    assert list(processor.video_processor.image_mean) == list(processor.image_processor.image_std) == [0.5] * 3
    grid = load_processor(ckpt.path, layout=VideoLayout(pool_mode="average", newline="grid"))
    assert int((grid(text="<video>", videos=[_frames(frames)], return_tensors="pt")["input_ids"]
                == grid.video_token_id).sum()) == frames * 182


def test_tokenizer_gains_image_and_video_tokens(ov):
    processor = load_processor(ov.path)
    model, _, _ = load_llava_next(STOCK, ov.path)
    tok = processor.tokenizer
    assert tok.convert_tokens_to_ids(["<image>", "<video>"]) == [model.config.image_token_id,
                                                                  model.config.video_token_id]
    assert tok("<video>")["input_ids"] == [model.config.video_token_id]
    assert model.config.image_token_id < model.get_input_embeddings().weight.shape[0]  # fits: no resize


def test_embeddings_grow_when_the_vocab_has_no_room(tmp_path):
    ckpt = build_llava_next_checkpoint(tmp_path, vocab_room=0)
    model, _, _ = load_llava_next(STOCK, ckpt.path)
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows == model.config.video_token_id + 1
    source = _source_tensors(ckpt.path)["model.embed_tokens.weight"]
    torch.testing.assert_close(model.get_input_embeddings().weight[: source.shape[0]], source, rtol=0, atol=0)


def test_detection_local_folder_hf_folder_and_hub_cache(ov, tmp_path, monkeypatch):
    assert is_llava_next_checkpoint(ov.path)
    assert is_llava_next_checkpoint(str(ov.path), dtype=torch.float32)  # any from_pretrained kwargs
    assert not is_llava_next_checkpoint(ov.hf)
    assert not is_llava_next_checkpoint(tmp_path / "absent")
    cache = tmp_path / "hub"
    put_in_hf_cache(cache, "test-org/tiny-next", ov.path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert is_llava_next_checkpoint("test-org/tiny-next", cache_dir=str(cache))
    assert not is_llava_next_checkpoint("test-org/not-there", cache_dir=str(cache))
    _, layout, info = load_llava_next(STOCK, "test-org/tiny-next", cache_dir=str(cache), local_files_only=True)
    assert layout == VideoLayout() and not info["missing_keys"]


def test_vision_config_from_the_hf_cache_and_the_built_in_numbers(ov, tmp_path, monkeypatch):
    raw = json.loads((ov.path / "config.json").read_text())
    cache = tmp_path / "hub"
    put_in_hf_cache(cache, "test-org/siglip-tiny", ov.tower)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = llava_next_config({**raw, "mm_vision_tower": "test-org/siglip-tiny"}, cache_dir=str(cache))
    assert cached.vision_config.to_dict() == llava_next_config(raw).vision_config.to_dict()
    built_in = llava_next_config({**raw, "mm_vision_tower": "google/siglip-so400m-patch14-384",
                                  "mm_hidden_size": 1152}, cache_dir=str(cache))
    vision = built_in.vision_config
    published = {k: v for k, v in SIGLIP_SO400M_384.items() if k not in ("model_type", "num_hidden_layers")}
    assert {k: getattr(vision, k) for k in published} == published
    assert (vision.num_hidden_layers, vision.vision_use_head) == (26, False)
    assert (vision.hidden_size, vision.intermediate_size, vision.num_attention_heads) == (1152, 4304, 16)
    absent_path = llava_next_config({**raw, "mm_vision_tower": "/mnt/ckpt/siglip-so400m-patch14-384",
                                     "mm_hidden_size": 1152}, cache_dir=str(cache))
    assert absent_path.vision_config.to_dict() == vision.to_dict()
    with pytest.raises(LlavaNextCheckpointError, match=r"mm_vision_tower='test-org/siglip-absent'.*built in"):
        llava_next_config({**raw, "mm_vision_tower": "test-org/siglip-absent"}, cache_dir=str(cache))


def test_grid_pinpoints_and_token_ids(ov):
    raw = json.loads((ov.path / "config.json").read_text())
    config = llava_next_config({**raw, "image_grid_pinpoints": "(1x1),...,(2x3)"}, image_token_id=7,
                               video_token_id=8)
    assert config.image_grid_pinpoints == [[384, 384], [768, 384], [1152, 384], [384, 768], [768, 768],
                                           [1152, 768]]  # (height, width)
    assert (config.image_token_id, config.video_token_id) == (7, 8)
    assert config.vision_aspect_ratio == "anyres_max_9"
    assert config.text_config.rope_parameters["rope_theta"] == 1_000_000.0


@pytest.mark.parametrize(
    "change,message",
    [
        ({"mm_projector_type": "linear"}, r"mm_projector_type='linear' is not supported.*'mlp2x_gelu'"),
        ({"architectures": ["LlavaLlamaForCausalLM"]}, r"architectures=\['LlavaLlamaForCausalLM'\].*Qwen2"),
        ({"mm_patch_merge_type": "flat"}, r"mm_patch_merge_type='flat'"),
        ({"image_aspect_ratio": "pad"}, r"image_aspect_ratio='pad'.*anyres_max"),
        ({"mm_resampler_type": "spatial_pool"}, r"mm_resampler_type='spatial_pool'"),
        ({"mm_hidden_size": 64}, r"mm_hidden_size=64 does not match.*hidden_size=32"),
    ],
)
def test_unsupported_settings_are_errors_naming_them(ov, tmp_path, change, message):
    path = _copy(ov, tmp_path)
    edit_config(path, **change)
    with pytest.raises(LlavaNextCheckpointError, match=message):
        load_llava_next(STOCK, path)


def test_unsupported_layout_and_tower_family(ov, tmp_path):
    path = _copy(ov, tmp_path)
    edit_config(path, mm_spatial_pool_mode="max")
    with pytest.raises(ValueError, match="mm_spatial_pool_mode must be one of bilinear, average"):
        load_llava_next(STOCK, path)
    _, layout, _ = load_llava_next(STOCK, path, layout_overrides={"mm_spatial_pool_mode": "average"})
    assert layout.pool_mode == "average"
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "config.json").write_text(json.dumps({"model_type": "clip_vision_model", "hidden_size": 32}))
    edit_config(path, mm_vision_tower=str(clip))
    with pytest.raises(LlavaNextCheckpointError, match=r"mm_vision_tower=.*clip_vision_model.*SigLIP"):
        load_llava_next(STOCK, path, layout_overrides={"mm_spatial_pool_mode": "average"})


def test_missing_or_unexpected_weights_are_errors_listing_them(ov, tmp_path):
    from safetensors.torch import save_file

    path = _copy(ov, tmp_path)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    shard = path / index["weight_map"]["model.mm_projector.0.weight"]
    tensors = {k: v for k, v in _source_tensors(path).items() if index["weight_map"][k] == shard.name}
    dropped = {k: v for k, v in tensors.items() if k != "model.mm_projector.0.weight"}
    dropped["model.vision_resampler.weight"] = torch.zeros(2)
    save_file(dropped, str(shard), metadata={"format": "pt"})
    index["weight_map"].pop("model.mm_projector.0.weight")
    index["weight_map"]["model.vision_resampler.weight"] = shard.name
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(LlavaNextCheckpointError) as err:
        load_llava_next(STOCK, path)
    text = str(err.value)
    assert "1 missing keys: model.multi_modal_projector.linear_1.weight" in text
    assert "1 unexpected keys: model.vision_resampler.weight" in text


def test_config_and_key_mapping_cannot_be_passed(ov):
    with pytest.raises(TypeError, match="config= cannot be given"):
        load_llava_next(STOCK, ov.path, config=object())
    with pytest.raises(LlavaNextCheckpointError, match="not a LLaVA-NeXT checkpoint"):
        load_llava_next(STOCK, ov.hf)


def test_hf_format_and_tiny_processors_delegate_to_auto_processor(ov):
    from transformers import LlavaOnevisionProcessor

    tiny = load_processor("tiny")
    assert type(tiny) is LlavaOnevisionProcessor
    assert next_key("model.language_model.norm.weight") == "model.norm.weight"
    hf_grid = load_processor("tiny", layout=VideoLayout(pool_mode="average", newline="grid"))
    ids = hf_grid(text="<video>", videos=[_frames(2)], return_tensors="pt")["input_ids"]
    assert int((ids == hf_grid.video_token_id).sum()) == 2 * 182


def test_a_subclass_from_pretrained_can_delegate_without_recursion(ov):
    class Sub(STOCK):
        @classmethod
        def from_pretrained(cls, name, *args, **kwargs):
            model, layout, _ = load_llava_next(cls, name, **kwargs)
            model.video_layout = layout
            return model

    model = Sub.from_pretrained(ov.path, dtype=torch.float32)
    assert type(model) is Sub and model.video_layout == VideoLayout()
    bound, _, info = load_llava_next(Sub, ov.path, hf_from_pretrained=STOCK.from_pretrained.__func__.__get__(Sub))
    assert type(bound) is Sub and not info["missing_keys"]
