"""Qwen2.5-VL-7B / Qwen3-VL-8B presets: the cost model's sizes and the bench shapes built from them."""

from __future__ import annotations

import pytest
import torch

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.flops import get_preset, paper_visual_tokens, setting_flops
from lmms_holitom.shapes import build_config, build_model, parse_shape


@pytest.mark.parametrize(
    ("name", "layers", "hidden", "intermediate", "heads", "kv_heads", "vocab", "per_frame"),
    [("qwen2.5-vl-7b", 28, 3584, 18944, 28, 4, 152064, 256), ("qwen3-vl-8b", 36, 4096, 12288, 32, 8, 151936, 196)],
)
def test_preset_sizes(name, layers, hidden, intermediate, heads, kv_heads, vocab, per_frame):
    shape = get_preset(name)
    got = (shape.layers, shape.hidden, shape.intermediate, shape.heads, shape.kv_heads, shape.vocab)
    assert got == (layers, hidden, intermediate, heads, kv_heads, vocab)
    assert shape.tokens_per_frame == per_frame and shape.default_frames == 16  # 32 input frames, 448x448 px
    assert get_preset(name.rsplit("-", 1)[0]) is shape  # alias qwen2.5-vl / qwen3-vl


def test_paper_flops_of_qwen25_vl_7b():
    """Dense: 16 groups x 256 = 4096 visual tokens; HoliTom 10 %: 16 x ceil(25.6) = 416 tokens, K=18, r=0.5."""
    shape = get_preset("qwen2.5-vl-7b")
    d, m = 3584, 18944

    def layer(n: int) -> float:
        return 4 * n * d * d + 2 * n * n * d + 2 * n * d * m

    dense = setting_flops(HoliTomConfig(method="dense"), shape)
    assert dense == pytest.approx(28 * layer(4096), rel=1e-12)
    assert dense / 1e12 == pytest.approx(24.8335, abs=1e-4)
    holitom = HoliTomConfig(method="holitom", retain_ratio=0.10, tau=0.65, merge_layer=18, merge_ratio=0.5)
    assert paper_visual_tokens(holitom, 16, shape.tokens_per_frame) == 416
    assert setting_flops(holitom, shape) == pytest.approx(18 * layer(416) + 10 * layer(208), rel=1e-12)


@pytest.mark.parametrize(("name", "params"), [("qwen2.5-vl-7b", 8_292_166_656), ("qwen3-vl-8b", 8_767_123_696)])
def test_shapes_build_the_published_architectures(name, params):
    """Parameter counts equal the published checkpoints' (8.29 B and 8.77 B), built on the meta device."""
    model = build_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.config._attn_implementation == "sdpa"
    vision = model.config.vision_config
    if name == "qwen2.5-vl-7b":
        assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
        assert list(vision.fullatt_block_indexes) == [7, 15, 23, 31] and vision.window_size == 112
        assert model.config.text_config.rope_parameters["mrope_section"] == [16, 24, 24]
    else:
        assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
        assert list(vision.deepstack_visual_indexes) == [8, 16, 24] and vision.patch_size == 16
        assert model.config.text_config.rope_parameters["mrope_interleaved"] is True
    assert model.config.video_token_id == 151656 and model.config.vision_start_token_id == 151652


def test_layers_variant_and_random_init():
    shape = parse_shape("qwen3-vl-8b-layers=2")
    assert shape.family == "qwen3_vl" and shape.llm.layers == 2 and shape.llm.hidden == 4096
    config = build_config(shape)
    assert config.text_config.num_hidden_layers == 2 and config.vision_config.depth == 27
    small = parse_shape("qwen2.5-vl-7b")
    assert small.family == "qwen2_5_vl" and small.vision["hidden_size"] == 1280
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLPatchMerger

    from lmms_holitom.shapes import init_random_weights

    merger = Qwen2_5_VLPatchMerger(dim=8, context_dim=4)
    init_random_weights(merger, seed=0)
    assert torch.equal(merger.ln_q.weight, torch.ones(4))  # the merger's RMS norm starts at 1, not N(0, std)
    assert merger.mlp[0].weight.std() > 0
