"""The seed's own checkpoint format through the public HoliTom class: LLaVA-NeXT-format folders (both layouts),
their processor, and HoliTom on them (tiny checkpoints built offline by `llava_next_helpers`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from llava_next_helpers import OV_LAYOUT, VIDEO_LAYOUT, build_llava_next_checkpoint
from model_helpers import traced
from transformers import LlavaOnevisionForConditionalGeneration

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration, VideoLayout, load_processor

OURS = HoliTomLlavaOnevisionForConditionalGeneration


@pytest.fixture(scope="module", params=["ov", "video"])
def checkpoint(request, tmp_path_factory):
    layout = OV_LAYOUT if request.param == "ov" else VIDEO_LAYOUT
    return request.param, build_llava_next_checkpoint(tmp_path_factory.mktemp(request.param), layout=layout)


def prompt_inputs(processor, frames: int = 4) -> dict:
    rng = np.random.RandomState(0)
    a, b = (rng.randint(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2))
    video = np.stack([a] * (frames // 2) + [b] * (frames - frames // 2))
    prompt = "<|im_start|>user\n<video>\nwhat happens?<|im_end|>\n<|im_start|>assistant\n"
    return dict(processor(text=prompt, videos=[video], return_tensors="pt"))


def test_loads_with_its_layout_and_runs_every_method(checkpoint):
    which, ckpt = checkpoint
    model, info = OURS.from_pretrained(ckpt.path, output_loading_info=True)
    assert not info["missing_keys"]
    want = VideoLayout() if which == "ov" else VideoLayout(pool_mode="average", newline="grid")
    assert model.video_layout == want
    processor = load_processor(ckpt.path)
    inputs = prompt_inputs(processor)
    count = int((inputs["input_ids"] == model.config.video_token_id).sum())
    assert count == model.video_placeholder_count(4)
    gen = {"max_new_tokens": 3, "do_sample": False}
    with torch.no_grad():
        dense = model(**inputs, holitom=HoliTomConfig(method="dense")).logits
        assert model.holitom_stats["dense_tokens"] == count
        nothing = model(**inputs, holitom=HoliTomConfig(method="holitom_wo_m", retain_ratio=1.0, tau=1.5)).logits
        torch.testing.assert_close(nothing, dense, atol=1e-5, rtol=0)
        for cfg in (HoliTomConfig(method="holitom", retain_ratio=0.2, tau=0.8, merge_layer=1),
                    HoliTomConfig(method="fastv", merge_layer=1)):
            with traced(model):
                cached = model.generate(**inputs, **gen, holitom=cfg)
            assert model.holitom_stats["inner_tokens"] < count
            assert torch.equal(cached, model.generate(**inputs, **gen, holitom=cfg, use_cache=False))


@pytest.mark.parametrize("checkpoint", ["ov"], indirect=True)
def test_dense_equals_the_stock_class_on_the_same_weights(checkpoint):
    """OneVision layout: our class on the LLaVA-NeXT folder == the stock class on its HF-format twin (the stock
    class has no LLaVA-Video layout: test_model_layouts checks that one against a loop implementation)."""
    _, ckpt = checkpoint
    ours = OURS.from_pretrained(ckpt.path, holitom=HoliTomConfig(method="dense")).eval()
    stock = LlavaOnevisionForConditionalGeneration.from_pretrained(ckpt.hf).eval()
    inputs = prompt_inputs(load_processor(ckpt.path))
    with torch.no_grad():
        got = ours.generate(**inputs, max_new_tokens=3, do_sample=False, return_dict_in_generate=True,
                            output_logits=True)
        want = stock.generate(**inputs, max_new_tokens=3, do_sample=False, return_dict_in_generate=True,
                              output_logits=True)
    assert torch.equal(got.sequences, want.sequences)
    for a, b in zip(got.logits, want.logits):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("checkpoint", ["ov"], indirect=True)
def test_layout_override_and_its_processor(checkpoint):
    """A OneVision checkpoint run in the LLaVA-Video layout by keyword (what the authors' script does)."""
    _, ckpt = checkpoint
    model = OURS.from_pretrained(ckpt.path, mm_spatial_pool_mode="average", mm_newline_position="grid")
    assert model.video_layout.grid and model.video_placeholder_count(4) == 4 * 13 * 14
    processor = load_processor(ckpt.path, layout=model.video_layout)
    inputs = prompt_inputs(processor)
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == 4 * 13 * 14
    with torch.no_grad():
        model(**inputs, holitom=HoliTomConfig(method="holitom_wo_m", retain_ratio=0.3))
    assert model.holitom_stats["dense_tokens"] == 4 * 182
    with pytest.raises(ValueError, match="mm_spatial_pool_mode must be one of"):
        OURS.from_pretrained(ckpt.path, mm_spatial_pool_mode="max")
