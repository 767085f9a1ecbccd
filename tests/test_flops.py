"""The cost model against the paper's published figures (algorithm §8; the figures are in lmms_holitom.sweep.paper)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.flops import (
    PRESETS,
    get_preset,
    llm_flops,
    paper_visual_tokens,
    setting_flops,
    shape_from_hf_config,
)

OV7B = PRESETS["llava-onevision-7b"]


def _paper(n, shape, **kw):
    return llm_flops(n, layers=shape.layers, hidden=shape.hidden, intermediate=shape.intermediate, **kw) / 1e12


@pytest.mark.parametrize(
    ("preset", "tokens", "expected"),
    [("llava-onevision-7b", 32 * 196, 40.8), ("llava-video-7b", 64 * 169, 80.2),
     ("llava-onevision-72b", 6272, 429.3)],
)
def test_dense_tflops_match_paper(preset, tokens, expected):
    assert _paper(tokens, PRESETS[preset]) == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize(
    ("ratio", "tau", "wo_m", "full", "share"),
    [(0.25, 0.8, 8.7, 7.1, 17.4), (0.20, 0.8, 7.0, 5.8, 14.2), (0.15, 0.8, 5.2, 4.3, 10.5),
     (0.10, 0.65, 3.4, 2.8, 6.9)],
)
def test_holitom_tflops_match_paper(ratio, tau, wo_m, full, share):
    dense = setting_flops(HoliTomConfig(method="dense"), OV7B)
    got_wo_m = setting_flops(HoliTomConfig(method="holitom_wo_m", retain_ratio=ratio, tau=tau), OV7B)
    got_full = setting_flops(HoliTomConfig(method="holitom", retain_ratio=ratio, tau=tau), OV7B)
    assert got_wo_m / 1e12 == pytest.approx(wo_m, abs=0.1)
    assert got_full / 1e12 == pytest.approx(full, abs=0.1)
    assert 100 * got_full / dense == pytest.approx(share, abs=0.25)


def test_other_backbones_and_fastv_match_paper():
    assert setting_flops(HoliTomConfig(method="fastv", merge_layer=2, merge_ratio=0.8), OV7B) / 1e12 == \
        pytest.approx(9.3, abs=0.1)
    video = setting_flops(HoliTomConfig(method="holitom", retain_ratio=0.15), "llava-video-7b")
    assert video / 1e12 == pytest.approx(7.6, abs=0.1)
    big = setting_flops(HoliTomConfig(method="holitom", retain_ratio=0.15, merge_layer=60), "72b")
    assert big / 1e12 == pytest.approx(51.6, abs=0.1)


def test_paper_visual_tokens_uses_per_frame_ceil():
    assert paper_visual_tokens(HoliTomConfig(retain_ratio=0.15), 32, 196) == 32 * 30  # ceil(29.4)
    assert paper_visual_tokens(HoliTomConfig(retain_ratio=0.25), 32, 196) == 32 * 49
    assert paper_visual_tokens(HoliTomConfig(method="dense"), 32, 196) == 6272
    assert paper_visual_tokens(HoliTomConfig(method="visionzip", spatial_tokens=50), 32, 196) == 1600


def test_merge_layer_splits_layers_by_hand():
    # 2 layers, d=1, m=1: per layer 4n + 2n^2 + 2n; n=4 early, round(4*0.5)=2 late
    got = llm_flops(4, layers=2, hidden=1, intermediate=1, merge_layer=1, merge_ratio=0.5)
    assert got == (16 + 32 + 8) + (8 + 8 + 4)


def test_exact_convention_by_hand():
    # one layer, d=2, kv width 2, m=3, n=2 visual, 1 text token: 3 tokens causal
    got = llm_flops(2, layers=1, hidden=2, intermediate=3, convention="exact", text_tokens=1, vocab=5)
    macs = 3 * 2 * (2 * 2 + 2 * 2) + 2 * (3 * 4 // 2) * 2 + 3 * 3 * 2 * 3
    assert got == 2 * macs + 2 * 2 * 5
    # exact counts more than the paper's visual-only formula and grows with text
    assert llm_flops(6272, layers=28, hidden=3584, intermediate=18944, convention="exact", text_tokens=100) > \
        llm_flops(6272, layers=28, hidden=3584, intermediate=18944)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"merge_ratio": 1.0}, "merge_ratio"), ({"merge_layer": 29}, "merge_layer"),
     ({"convention": "nope"}, "convention")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        llm_flops(10, layers=28, hidden=8, intermediate=8, **kwargs)
    with pytest.raises(ValueError, match="visual_tokens"):
        llm_flops(-1, layers=28, hidden=8, intermediate=8)
    with pytest.raises(ValueError, match="unknown model preset"):
        get_preset("13b")


def test_shape_from_hf_config():
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    cfg = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=384, patch_size=14),
        text_config=Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                num_attention_heads=4, num_key_value_heads=2, vocab_size=100),
    )
    shape = shape_from_hf_config(cfg)
    assert (shape.layers, shape.hidden, shape.intermediate, shape.kv_hidden) == (3, 32, 64, 16)
    assert (shape.vision_patches, shape.tokens_per_frame) == (729, 196)


def test_cli_table_json():
    out = subprocess.run([sys.executable, "-m", "lmms_holitom.cli", "flops", "--table", "--json"],
                         capture_output=True, text=True, check=True).stdout
    rows = {r["setting"]: r for r in json.loads(out)}
    assert rows["dense"]["tflops"] == pytest.approx(40.8, abs=0.05)
    assert rows["holitom 10%"]["share_of_dense"] == pytest.approx(0.069, abs=0.001)
