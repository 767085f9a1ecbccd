"""HoliTom on Qwen2.5-VL and Qwen3-VL: the engine's adapters against the stock transformers classes (tiny models).

M-RoPE plumbing is checked exactly: with nothing static (tau > 1) a compressed prefill equals the stock decoder fed
with the trace's sequence and positions (and Qwen3-VL's compressed deepstack streams), and those positions are
the stock model's own dense positions at the survivors' origins.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import traced

from lmms_holitom.config import HoliTomConfig

FAMILIES = ["tiny-qwen2.5-vl", "tiny-qwen3-vl"]
GEN = {"max_new_tokens": 4, "do_sample": False}


def family_classes(name: str):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    from lmms_holitom.hf.models import HoliTomQwen2_5_VLForConditionalGeneration, HoliTomQwen3VLForConditionalGeneration

    if name == "tiny-qwen2.5-vl":
        return HoliTomQwen2_5_VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration
    return HoliTomQwen3VLForConditionalGeneration, Qwen3VLForConditionalGeneration


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    """(name, HoliTom model, stock model, processor, video inputs: 8 frames a×4 b×4 at 112 px -> 4 groups of 16)."""
    from transformers import AutoProcessor

    from lmms_holitom.testing import resolve_pretrained

    path = resolve_pretrained(request.param)
    ours, theirs = family_classes(request.param)
    processor = AutoProcessor.from_pretrained(path)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in range(2))
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what happens?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    extra = {"do_sample_frames": False} if "qwen3" in request.param else {}
    inputs = dict(processor(text=prompt, videos=[np.stack([a] * 4 + [b] * 4)], return_tensors="pt", **extra))
    return request.param, ours.from_pretrained(path).eval(), theirs.from_pretrained(path).eval(), inputs


def test_dense_is_the_stock_model(family):
    _, model, stock, inputs = family
    with torch.no_grad():
        ours = model.generate(**inputs, **GEN, holitom=HoliTomConfig(method="dense"), return_dict_in_generate=True,
                              output_logits=True)
        theirs = stock.generate(**inputs, **GEN, return_dict_in_generate=True, output_logits=True)
    assert torch.equal(ours.sequences, theirs.sequences)
    for a, b in zip(ours.logits, theirs.logits):
        assert torch.equal(a, b)
    stats = model.holitom_stats
    assert stats["frames"] == 4 and stats["tokens_per_frame"] == 16 and stats["dense_tokens"] == 64


def test_nothing_merged_is_the_stock_model(family):
    _, model, stock, inputs = family
    nothing = HoliTomConfig(method="holitom_wo_m", retain_ratio=1.0, tau=1.5)
    with torch.no_grad():
        got = model(**inputs, holitom=nothing).logits
        want = stock(**inputs).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert model.holitom_stats["outer_tokens"] == 64


@pytest.mark.parametrize("method", ["holitom_wo_m", "visionzip"])
def test_compressed_prefill_is_the_stock_decoder_on_the_trace(family, method):
    name, model, stock, inputs = family
    cfg = HoliTomConfig(method=method, retain_ratio=0.3, tau=1.5)
    with torch.no_grad(), traced(model):
        got = model(**inputs, holitom=cfg).logits
        dense_positions, _ = stock.model.get_rope_index(
            inputs["input_ids"], inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"],
            **({"second_per_grid_ts": inputs["second_per_grid_ts"]} if "second_per_grid_ts" in inputs else {}),
        )
    trace = model.holitom_last_trace
    length = trace.inputs_embeds.shape[1]
    assert trace.position_ids.shape == (3, 1, length)
    assert model.holitom_stats["outer_tokens"] == int(trace.visual_mask.sum()) < 64
    # the positions are the stock dense positions at the origins; text rows keep theirs
    video_rows = (inputs["input_ids"][0] == model.config.video_token_id).nonzero().flatten()
    frame, spatial = trace.origins.unbind(1)
    dense_rows = video_rows[frame * 16 + spatial]
    assert torch.equal(trace.position_ids[:, 0, trace.visual_mask], dense_positions[:, 0, dense_rows])
    text = ~trace.visual_mask
    text_dense = (inputs["input_ids"][0] != model.config.video_token_id).nonzero().flatten()
    assert torch.equal(trace.position_ids[:, 0, text], dense_positions[:, 0, text_dense])
    # the stock decoder on the trace
    extra = {}
    if trace.deepstack is not None:
        assert len(trace.deepstack) == len(model.config.vision_config.deepstack_visual_indexes)
        extra = {"visual_pos_masks": trace.visual_mask.unsqueeze(0), "deepstack_visual_embeds": list(trace.deepstack)}
    else:
        assert "qwen2.5" in name
    with torch.no_grad():
        hidden = stock.model.language_model(
            inputs_embeds=trace.inputs_embeds, position_ids=trace.position_ids, **extra
        ).last_hidden_state
        want = stock.lm_head(hidden)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["holitom", "holitom_wo_m", "visionzip", "fastv"])
def test_cached_decoding_equals_uncached_recompute(family, method):
    _, model, _, inputs = family
    cfg = HoliTomConfig(method=method, retain_ratio=0.3, tau=0.8, merge_layer=2, merge_ratio=0.5)
    with torch.no_grad():
        cached = model.generate(**inputs, **GEN, holitom=cfg)
        stats = model.holitom_stats
        uncached = model.generate(**inputs, **GEN, holitom=cfg, use_cache=False)
    assert torch.equal(cached, uncached)
    v = stats["outer_tokens"]
    assert stats["inner_tokens"] == (round(v * 0.5) if cfg.inner_mode else v)
    if method == "fastv":
        assert v == 64


def test_inner_merge_cache_lengths(family):
    _, model, _, inputs = family
    from lmms_holitom.hf import HoliTomCache

    cfg = HoliTomConfig(method="holitom", retain_ratio=0.4, tau=0.8, merge_layer=2, merge_ratio=0.5)
    cache = HoliTomCache(config=model.config.get_text_config())
    with torch.no_grad():
        model(**inputs, holitom=cfg, cache=cache, use_cache=True)
    stats = model.holitom_stats
    dropped = stats["outer_tokens"] - stats["inner_tokens"]
    layers = model.config.get_text_config().num_hidden_layers
    want = [stats["prompt_tokens"]] * 2 + [stats["prompt_tokens"] - dropped] * (layers - 2)
    assert [cache.get_seq_length(i) for i in range(layers)] == want
    assert cache.prefill_state.rope_dims == 3


@pytest.mark.parametrize("family", ["tiny-qwen3-vl"], indirect=True)
def test_qwen3_groups_keep_their_runs(family):
    """Qwen3-VL: each temporal group's run is shortened on its own; the timestamps and markers stay."""
    _, model, _, inputs = family
    ids = inputs["input_ids"][0]
    cfg = HoliTomConfig(method="holitom_wo_m", retain_ratio=0.2, tau=0.8)
    with torch.no_grad(), traced(model):
        model(**inputs, holitom=cfg)
    trace = model.holitom_last_trace
    text_rows = (ids != model.config.video_token_id).sum()
    assert int((~trace.visual_mask).sum()) == int(text_rows)  # every timestamp and marker is still there
    frames = trace.origins[:, 0]
    assert bool((frames.diff() >= 0).all())  # groups in order, each in its own run
    # groups 0 and 1 are the same frames: one all-static segment, whose tokens sit in group 0's run; group 1's run
    # is empty, and its timestamp and markers stay (checked above)
    assert trace.segments[0] == (0, 1)
    assert int((frames == 0).sum()) >= 1 and int((frames == 1).sum()) == 0


def test_errors(family, tiny_model_path):
    name, model, _, inputs = family
    ours, _ = family_classes(name)
    with pytest.raises(ValueError, match="is not a qwen"):
        ours.from_pretrained(tiny_model_path)
    batch = {k: torch.cat([v, v]) if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v
             for k, v in inputs.items()}
    with pytest.raises(ValueError, match="one video per call"), torch.no_grad():
        model(**batch, holitom=HoliTomConfig(method="holitom", merge_layer=2))
    if "qwen3" in name:
        with pytest.raises(ValueError, match="merge_layer must be >= 2 for this Qwen3-VL model"):
            model.set_holitom(HoliTomConfig(method="holitom", merge_layer=1))


def test_output_loading_info_and_legacy_keys(family, tmp_path):
    """Qwen2.5-VL checkpoints store the legacy ``model.layers.*`` / ``visual.*`` keys: they load into our class, not
    randomly initialised (Qwen3-VL checkpoints were published in the current layout)."""
    name, model, _, _ = family
    from safetensors.torch import save_file

    ours, _ = family_classes(name)
    model.save_pretrained(tmp_path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    legacy = {}
    for key, value in state.items():
        if "qwen2.5" in name:
            key = key.replace("model.language_model.", "model.").replace("model.visual.", "visual.")
        legacy[key] = value
    for f in tmp_path.glob("*.safetensors"):
        f.unlink()
    (tmp_path / "model.safetensors.index.json").unlink(missing_ok=True)
    save_file(legacy, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    loaded, info = ours.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"]
    again = loaded.state_dict()
    assert all(torch.equal(again[k], v) for k, v in state.items() if k in again)


def test_image_and_video_in_one_prompt(family):
    """Images are not compressed, but Qwen3-VL's image deepstack streams must still reach their (shifted) rows:
    with nothing merged the compressed path equals the stock model, image before or after the video."""
    from transformers import AutoProcessor

    from lmms_holitom.testing import resolve_pretrained

    name, model, stock, _ = family
    processor = AutoProcessor.from_pretrained(resolve_pretrained(name))
    rng = np.random.default_rng(1)
    a, b, image = (rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in range(3))
    extra = {"do_sample_frames": False} if "qwen3" in name else {}
    nothing = HoliTomConfig(method="holitom_wo_m", retain_ratio=1.0, tau=1.5)
    for order in (["image", "video"], ["video", "image"]):
        content = [{"type": kind} for kind in order] + [{"type": "text", "text": "what?"}]
        prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        inputs = dict(processor(text=prompt, images=[image], videos=[np.stack([a] * 4 + [b] * 4)],
                                return_tensors="pt", **extra))
        with torch.no_grad():
            got = model(**inputs, holitom=nothing).logits
            want = stock(**inputs).logits
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_default_merge_layer_respects_deepstack():
    """The default merge layer never precedes Qwen3-VL's last deepstack injection; a decoder too shallow for one
    defaults to HoliTom w/o M instead of failing to build."""
    from lmms_holitom.hf.models import HoliTomQwen3VLForConditionalGeneration
    from lmms_holitom.shapes import build_model

    shallow = build_model("qwen3-vl-8b-layers=2", device="meta", model_cls=HoliTomQwen3VLForConditionalGeneration)
    assert (shallow.holitom.method, shallow.holitom.merge_layer) == ("holitom_wo_m", None)
    five = build_model("qwen3-vl-8b-layers=5", device="meta", model_cls=HoliTomQwen3VLForConditionalGeneration)
    assert (five.holitom.method, five.holitom.merge_layer) == ("holitom", 3)
