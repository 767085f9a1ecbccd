"""The HoliTom model reproduces the stock LLaVA-OneVision exactly where it should (tiny model, CPU, fp32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmms_holitom.config import HoliTomConfig

GEN = {"max_new_tokens": 6, "do_sample": False, "return_dict_in_generate": True, "output_logits": True}
CONTRACT_KEYS = {
    "method", "frames", "tokens_per_frame", "dense_tokens", "outer_tokens", "inner_tokens", "merge_layer",
    "segments", "static_tokens", "prompt_tokens_dense", "prompt_tokens", "timings_ms",
}
TIMING_KEYS = {"vision", "outer_merge", "inner_merge", "prefill"}


def generate(model, inputs, **kwargs):
    with torch.no_grad():
        return model.generate(**inputs, **GEN, **kwargs)


def max_logit_diff(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.logits, b.logits))


@pytest.fixture(scope="module")
def stock_run(stock_model, tiny_video_inputs):
    return generate(stock_model, tiny_video_inputs)


def test_the_reference_depends_on_the_video(stock_model, stock_run, make_video_inputs):
    """Guard: equality with the stock model below is not vacuous (the tiny model's output follows the video)."""
    other = generate(stock_model, make_video_inputs("aaabbc", seed=1))
    assert max_logit_diff(other, stock_run) > 1e-2


def test_dense_is_the_stock_model(holitom_model, stock_model, stock_run, tiny_video_inputs):
    out = generate(holitom_model, tiny_video_inputs, holitom=HoliTomConfig(method="dense"))
    assert torch.equal(out.sequences, stock_run.sequences)
    for got, want in zip(out.logits, stock_run.logits):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    with torch.no_grad():  # a plain forward too (no generate pre-encoding)
        want = stock_model(**tiny_video_inputs).logits
        got = holitom_model(**tiny_video_inputs, holitom=HoliTomConfig(method="dense")).logits
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)

    stats = holitom_model.holitom_stats
    assert set(stats) >= CONTRACT_KEYS and set(stats["timings_ms"]) >= TIMING_KEYS
    assert stats["method"] == "dense"
    assert stats["frames"] == 6 and stats["tokens_per_frame"] == 196
    assert stats["dense_tokens"] == stats["outer_tokens"] == stats["inner_tokens"] == 6 * 196 + 1
    assert stats["prompt_tokens"] == stats["prompt_tokens_dense"] == tiny_video_inputs["input_ids"].shape[1]
    assert stats["merge_layer"] is None


@pytest.mark.parametrize(
    "cfg",
    [
        # nothing static (tau > 1), full budget, no inner merge -> the dense features, in order
        HoliTomConfig(method="holitom", tau=1.5, retain_ratio=1.0, merge_layer=None),
        HoliTomConfig(method="holitom_wo_m", tau=1.5, retain_ratio=1.0),
        # every token of every frame dominant, in spatial order
        HoliTomConfig(method="visionzip", spatial_tokens=196, dominant_ratio=1.0),
        # FastV with nothing dropped and a causal layer K-1: the stock computation
        HoliTomConfig(method="fastv", merge_layer=2, merge_ratio=0.0, fidelity="clean"),
    ],
    ids=["holitom", "holitom_wo_m", "visionzip", "fastv-clean-r0"],
)
def test_identity_settings_reproduce_the_stock_model(holitom_model, stock_run, tiny_video_inputs, cfg):
    out = generate(holitom_model, tiny_video_inputs, holitom=cfg)
    assert torch.equal(out.sequences, stock_run.sequences)
    assert max_logit_diff(out, stock_run) < 1e-5
    stats = holitom_model.holitom_stats
    assert stats["method"] == cfg.method
    assert stats["outer_tokens"] == stats["dense_tokens"] == 6 * 196 + 1
    assert stats["static_tokens"] == 0
    assert stats["prompt_tokens"] == stats["prompt_tokens_dense"]


def test_compressed_run_differs_from_stock(holitom_model, stock_run, tiny_video_inputs):
    """Guard for the test above: a real compression changes the output."""
    out = generate(holitom_model, tiny_video_inputs, holitom=HoliTomConfig(method="holitom_wo_m", retain_ratio=0.2))
    assert max_logit_diff(out, stock_run) > 1e-3
    assert holitom_model.holitom_stats["outer_tokens"] < 6 * 196 + 1


@pytest.fixture(scope="module")
def image_inputs(tiny_processor):
    image = np.random.RandomState(3).randint(0, 256, (64, 64, 3), dtype=np.uint8)
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this?"}]}]
    prompt = tiny_processor.apply_chat_template(conversation, add_generation_prompt=True)
    return dict(tiny_processor(text=prompt, images=[image], return_tensors="pt"))


@pytest.fixture(scope="module")
def text_inputs(tiny_processor):
    conversation = [{"role": "user", "content": [{"type": "text", "text": "what is the answer?"}]}]
    prompt = tiny_processor.apply_chat_template(conversation, add_generation_prompt=True)
    return dict(tiny_processor(text=prompt, return_tensors="pt"))


@pytest.mark.parametrize("kind", ["image", "text"])
@pytest.mark.parametrize(
    "cfg",
    [
        HoliTomConfig(method="holitom", retain_ratio=0.1, merge_layer=2),
        HoliTomConfig(method="visionzip", retain_ratio=0.1),
        HoliTomConfig(method="fastv", merge_layer=1),
    ],
    ids=["holitom", "visionzip", "fastv"],
)
def test_images_and_text_pass_through(holitom_model, stock_model, image_inputs, text_inputs, kind, cfg):
    inputs = image_inputs if kind == "image" else text_inputs
    want = generate(stock_model, inputs)
    got = generate(holitom_model, inputs, holitom=cfg)
    assert torch.equal(got.sequences, want.sequences)
    for a, b in zip(got.logits, want.logits):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    stats = holitom_model.holitom_stats
    assert stats["frames"] == 0 and stats["outer_tokens"] == 0
    assert stats["prompt_tokens"] == inputs["input_ids"].shape[1]


def test_generate_returns_the_callers_prompt(holitom_model, tiny_video_inputs):
    cfg = HoliTomConfig(method="holitom", retain_ratio=0.2, merge_layer=2)
    out = generate(holitom_model, tiny_video_inputs, holitom=cfg)
    ids = tiny_video_inputs["input_ids"]
    assert out.sequences.shape[1] == ids.shape[1] + GEN["max_new_tokens"]
    assert torch.equal(out.sequences[:, : ids.shape[1]], ids)
    assert holitom_model.holitom.method == "dense"  # the per-call override did not stick


def test_set_holitom_switches_between_calls(holitom_model, stock_run, tiny_video_inputs):
    try:
        holitom_model.set_holitom(HoliTomConfig(method="holitom_wo_m", retain_ratio=0.2))
        compressed = generate(holitom_model, tiny_video_inputs)
        assert holitom_model.holitom_stats["method"] == "holitom_wo_m"
        holitom_model.holitom = {"method": "dense"}  # assignment validates and switches too
        dense = generate(holitom_model, tiny_video_inputs)
    finally:
        holitom_model.set_holitom(HoliTomConfig(method="dense"))
    assert max_logit_diff(compressed, stock_run) > 1e-3
    assert torch.equal(dense.sequences, stock_run.sequences)
    assert holitom_model.holitom_stats["method"] == "dense"


def test_timings_are_recorded(holitom_model, tiny_video_inputs):
    generate(holitom_model, tiny_video_inputs, holitom=HoliTomConfig(method="holitom", retain_ratio=0.2, merge_layer=2))
    t = holitom_model.holitom_stats["timings_ms"]
    assert all(v >= 0 for v in t.values())
    assert t["vision"] > 0 and t["outer_merge"] > 0 and t["inner_merge"] > 0
    assert t["prefill"] >= t["vision"] + t["outer_merge"]


def test_image_and_video_in_one_prompt(holitom_model, stock_model, tiny_processor, make_video_inputs):
    """Images are scattered in as in the stock model, also next to a compressed video."""
    rng = np.random.RandomState(4)
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "?"}]}]
    prompt = tiny_processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = dict(tiny_processor(
        text=prompt, images=[rng.randint(0, 256, (64, 64, 3), dtype=np.uint8)],
        videos=[rng.randint(0, 256, (3, 64, 64, 3), dtype=np.uint8)], return_tensors="pt",
    ))
    want = generate(stock_model, inputs)
    got = generate(holitom_model, inputs, holitom=HoliTomConfig(method="holitom", tau=1.5, retain_ratio=1.0,
                                                                  merge_layer=None))
    assert torch.equal(got.sequences, want.sequences)
    assert max_logit_diff(got, want) < 1e-5
    compressed = generate(holitom_model, inputs, holitom=HoliTomConfig(method="holitom", retain_ratio=0.2,
                                                                         merge_layer=2))
    stats = holitom_model.holitom_stats
    assert stats["frames"] == 3 and stats["outer_tokens"] < stats["dense_tokens"] == 3 * 196 + 1
    assert stats["prompt_tokens_dense"] - stats["prompt_tokens"] == stats["dense_tokens"] - stats["outer_tokens"]
    assert max_logit_diff(compressed, want) > 1e-3
