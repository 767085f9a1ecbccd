"""Qwen3.5 (hybrid Gated DeltaNet + attention), Qwen3.5-MoE and Qwen3-VL-MoE: the exactness ladder against the stock
transformers classes (tiny models), the hybrid decoder's layer-kind rule, and the engine's mirror of the hybrid text
model (conv and recurrent states included).

Cached decoding of a linear-attention layer runs the recurrent form of the gated delta rule, an uncached recompute
its chunked form: equal in exact arithmetic, so the generated ids are compared exactly and the logits to 5e-3.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from model_helpers import traced
from transformers import AutoConfig, AutoProcessor
from transformers.cache_utils import DynamicCache, LinearAttentionLayer

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.state import PrefillState, SequenceState
from lmms_holitom.hf.decoder import decode_decoder, layer_types, merge_layers, prefill_decoder
from lmms_holitom.hf.model import default_merge_layer_of
from lmms_holitom.testing import resolve_pretrained

FAMILIES = ["tiny-qwen3-vl-moe", "tiny-qwen3.5", "tiny-qwen3.5-moe"]
HYBRID = ["tiny-qwen3.5", "tiny-qwen3.5-moe"]
GEN = {"max_new_tokens": 4, "do_sample": False}


def family_classes(name: str) -> tuple[type, type]:
    from transformers import (
        Qwen3_5ForConditionalGeneration,
        Qwen3_5MoeForConditionalGeneration,
        Qwen3VLMoeForConditionalGeneration,
    )

    from lmms_holitom.hf.models import (
        HoliTomQwen3_5ForConditionalGeneration,
        HoliTomQwen3_5MoeForConditionalGeneration,
        HoliTomQwen3VLMoeForConditionalGeneration,
    )

    return {
        "tiny-qwen3-vl-moe": (HoliTomQwen3VLMoeForConditionalGeneration, Qwen3VLMoeForConditionalGeneration),
        "tiny-qwen3.5": (HoliTomQwen3_5ForConditionalGeneration, Qwen3_5ForConditionalGeneration),
        "tiny-qwen3.5-moe": (HoliTomQwen3_5MoeForConditionalGeneration, Qwen3_5MoeForConditionalGeneration),
    }[name]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    """(name, HoliTom model, stock model, video inputs: 8 frames a×4 b×4 at 112 px -> 4 groups of 16 tokens)."""
    path = resolve_pretrained(request.param)
    ours, theirs = family_classes(request.param)
    processor = AutoProcessor.from_pretrained(path)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) for _ in range(2))
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what happens?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = dict(processor(text=prompt, videos=[np.stack([a] * 4 + [b] * 4)], return_tensors="pt",
                            do_sample_frames=False))
    return request.param, ours.from_pretrained(path).eval(), theirs.from_pretrained(path).eval(), inputs


def test_model_class_for_picks_the_family_by_model_type(family):
    from lmms_holitom.hf.models import model_class_for

    name, model, _, _ = family
    assert model_class_for(name) is type(model)


def test_dense_is_the_stock_model(family):
    _, model, stock, inputs = family
    with torch.no_grad():
        ours = model.generate(**inputs, **GEN, holitom=HoliTomConfig(method="dense"), return_dict_in_generate=True,
                              output_logits=True)
        theirs = stock.generate(**inputs, **GEN, return_dict_in_generate=True, output_logits=True)
    assert torch.equal(ours.sequences, theirs.sequences)
    assert len(ours.logits) == len(theirs.logits) == GEN["max_new_tokens"]
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
    """tau > 1 (nothing static): the compressed prefill equals the stock text model fed the trace's sequence and
    positions (Qwen3-VL-MoE: and its compressed deepstack streams); positions are the stock dense ones."""
    name, model, stock, inputs = family
    cfg = HoliTomConfig(method=method, retain_ratio=0.3, tau=1.5)
    with torch.no_grad(), traced(model):
        got = model(**inputs, holitom=cfg).logits
        dense_positions, _ = stock.model.get_rope_index(
            inputs["input_ids"], inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"]
        )
    trace = model.holitom_last_trace
    assert model.holitom_stats["outer_tokens"] == int(trace.visual_mask.sum()) < 64
    video_rows = (inputs["input_ids"][0] == model.config.video_token_id).nonzero().flatten()
    frame, spatial = trace.origins.unbind(1)
    dense_rows = video_rows[frame * 16 + spatial]
    assert torch.equal(trace.position_ids[:, 0, trace.visual_mask], dense_positions[:, 0, dense_rows])
    extra = {}
    if name == "tiny-qwen3-vl-moe":
        assert len(trace.deepstack) == 2
        extra = {"visual_pos_masks": trace.visual_mask.unsqueeze(0), "deepstack_visual_embeds": list(trace.deepstack)}
    else:
        assert trace.deepstack is None  # Qwen3.5: no deepstack
    with torch.no_grad():
        hidden = stock.model.language_model(
            inputs_embeds=trace.inputs_embeds, position_ids=trace.position_ids, **extra
        ).last_hidden_state
        want = stock.lm_head(hidden)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["holitom", "holitom_wo_m", "visionzip", "fastv"])
def test_cached_decoding_equals_uncached_recompute(family, method):
    """Every method, full HoliTom at the model's default merge layer K included: 5 tokens decoded through every layer
    (the hybrid's linear-attention layers >= K continue from the shortened sequence's states)."""
    _, model, _, inputs = family
    k = model.default_merge_layer()
    cfg = HoliTomConfig(method=method, retain_ratio=0.3, tau=0.8, merge_layer=k, merge_ratio=0.5)
    gen = {"max_new_tokens": 5, "do_sample": False, "return_dict_in_generate": True, "output_logits": True,
           "holitom": cfg}
    with torch.no_grad():
        cached = model.generate(**inputs, **gen)
        stats = model.holitom_stats
        uncached = model.generate(**inputs, **gen, use_cache=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    assert len(cached.logits) == 5
    for a, b in zip(cached.logits, uncached.logits):
        torch.testing.assert_close(a, b, atol=5e-3, rtol=0)
    v = stats["outer_tokens"]
    assert stats["inner_tokens"] == (round(v * 0.5) if cfg.inner_mode else v)
    assert stats["merge_layer"] == (k if cfg.inner_mode else None)
    if method == "fastv":
        assert v == 64


def _tokens_held(cache, layer: int) -> int | None:
    """Tokens layer ``layer`` of the cache holds; None where the release does not count them (transformers 5.24's
    linear-attention layers raise; 5.25 counts the tokens their conv/recurrent state has seen)."""
    try:
        return int(cache.get_seq_length(layer))
    except ValueError:
        return None


def test_inner_merge_cache_state(family):
    """After the inner merge at K every layer >= K — full attention (keys/values) and linear attention (token
    count of its conv/recurrent state) alike — holds the shortened prompt, every layer < K the full one."""
    from lmms_holitom.hf import HoliTomCache

    name, model, _, inputs = family
    k = model.default_merge_layer()
    cfg = HoliTomConfig(method="holitom", retain_ratio=0.4, tau=0.8, merge_layer=k, merge_ratio=0.5)
    cache = HoliTomCache(config=model.config.get_text_config())
    with torch.no_grad():
        model(**inputs, holitom=cfg, cache=cache, use_cache=True)
    stats = model.holitom_stats
    dropped = stats["outer_tokens"] - stats["inner_tokens"]
    types = model.decoder_layer_types
    want = [stats["prompt_tokens"]] * k + [stats["prompt_tokens"] - dropped] * (len(types) - k)
    got = [_tokens_held(cache, i) for i in range(len(types))]
    assert all(g is not None for g, t in zip(got, types) if t == "full_attention")
    assert [g for g in got if g is not None] == [w for g, w in zip(got, want) if g is not None]
    linear = [i for i, t in enumerate(types) if t == "linear_attention"]
    assert all(isinstance(cache.layers[i], LinearAttentionLayer) for i in linear)
    assert bool(linear) == (name in HYBRID) and (not linear or (min(linear) < k < max(linear)))


def test_probe_saliency_equals_eager_attention(family):
    """The inner merge's attention row (the last prompt token at layer K-1, over the visual rows) equals the stock
    layer's eager attention weights on the same input (head mean)."""
    _, model, _, inputs = family
    k = model.default_merge_layer()
    layer = model.model.language_model.layers[k - 1]
    captured = {}

    def capture(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        captured.setdefault("hidden", args[0] if args else kwargs["hidden_states"])

    hook = layer.register_forward_pre_hook(capture, with_kwargs=True)
    cfg = HoliTomConfig(method="holitom", retain_ratio=0.4, tau=0.8, merge_layer=k, merge_ratio=0.5)
    try:
        with torch.no_grad(), traced(model):
            model(**inputs, holitom=cfg)
    finally:
        hook.remove()
    trace, hidden = model.holitom_last_trace, captured["hidden"]
    length = hidden.shape[1]
    pe = model.model.language_model.rotary_emb(hidden, trace.position_ids)
    causal = torch.full((length, length), float("-inf")).triu(1).view(1, 1, length, length)
    attn_config = layer.self_attn.config
    before = attn_config._attn_implementation
    attn_config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            _, weights = layer.self_attn(hidden_states=layer.input_layernorm(hidden), position_embeddings=pe,
                                         attention_mask=causal)
    finally:
        attn_config._attn_implementation = before
    want = weights[0, :, -1].float().mean(0)[trace.visual_mask]
    assert trace.inner_attention.shape == want.shape
    torch.testing.assert_close(trace.inner_attention, want, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------- the hybrid rule
def test_merge_layer_rule_and_default(caplog: pytest.LogCaptureFixture) -> None:
    """K-1 must be full attention: the paper's K moves to the nearest such layer, logged; a K after a
    linear-attention layer is one clear error, through the model class and the engine alike."""
    from lmms_holitom.hf.models import HoliTomQwen3_5ForConditionalGeneration

    path = resolve_pretrained("tiny-qwen3.5")
    with caplog.at_level(logging.INFO, logger="lmms_holitom.hf.model"):
        model = HoliTomQwen3_5ForConditionalGeneration.from_pretrained(path).eval()
    assert model.holitom.merge_layer == 4 == model.default_merge_layer()
    assert "default merge_layer 18 -> 4 for this 8-layer decoder (hybrid: K-1 must be full attention, K in [4])" \
        in caplog.text
    # K nobody chose (a mapping, FastV's own 2) moves to a layer this decoder takes; a chosen K is never moved
    assert model.validate_holitom({"method": "holitom"}).merge_layer == 4
    assert model.validate_holitom({"method": "fastv"}).merge_layer == 4
    with pytest.raises(ValueError) as err:
        model.set_holitom(HoliTomConfig(method="fastv", merge_layer=5))
    assert str(err.value) == ("merge_layer must follow a full-attention layer (layer K-1 supplies the attention row); "
                              "this decoder's layer 4 is linear_attention: choose one of 4, got 5")
    # the published depths: 24 layers (Qwen3.5-2B-like) and 32 (9B), one full-attention layer in four
    hybrid = tuple(("linear_attention",) * 3 + ("full_attention",))
    assert merge_layers(hybrid * 2) == (4,)
    assert default_merge_layer_of(hybrid * 6) == 16  # round(18/28 · 24) = 15 -> 16
    assert default_merge_layer_of(hybrid * 8) == 20  # 18 -> 16 or 20: the tie goes to 18/28 · 32 = 20.6
    assert default_merge_layer_of(("full_attention",) * 28) == 18
    assert default_merge_layer_of(("linear_attention",) * 3 + ("full_attention",)) is None


def _hybrid_text_model():
    from transformers import Qwen3_5TextModel

    config = AutoConfig.from_pretrained(resolve_pretrained("tiny-qwen3.5")).get_text_config()
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen3_5TextModel(config).eval()
        with torch.no_grad():  # zero-centred norms start at 0: give them values so a skipped norm shows
            for name, param in model.named_parameters():
                if "norm" in name:
                    param.uniform_(-0.5, 0.5)
    return model


def _states(cache: DynamicCache) -> list[torch.Tensor]:
    out = []
    for layer in cache.layers:
        if isinstance(layer, LinearAttentionLayer):
            out += [layer.conv_states[0], layer.recurrent_states[0]]
        else:
            out += [layer.keys, layer.values]
    return out


def test_hybrid_prefill_and_decode_equal_the_stock_text_model() -> None:
    """`prefill_decoder` / `decode_decoder` on the hybrid text model equal its stock forward bit for bit — hidden
    states, keys/values of the full-attention layers, conv and recurrent states of the linear-attention layers."""
    model = _hybrid_text_model()
    assert layer_types(model.config).count("full_attention") == 2
    length = 40
    gen = torch.Generator().manual_seed(1)
    embeds = torch.randn(1, length, model.config.hidden_size, generator=gen)
    steps = torch.randn(1, 3, model.config.hidden_size, generator=gen)
    base = torch.arange(length)
    positions = torch.stack([base, base // 3 + 7, base % 5]).unsqueeze(1)
    with torch.no_grad():
        stock_cache = DynamicCache(config=model.config)
        stock = model(inputs_embeds=embeds, position_ids=positions, cache=stock_cache, use_cache=True)
        ours_cache = DynamicCache(config=model.config)
        ours = prefill_decoder(model, embeds, attention_mask=None, position_ids=positions, prompt_length=length,
                               cache=ours_cache, use_cache=True)
        assert torch.equal(ours.last_hidden_state, stock.last_hidden_state)
        assert all(torch.equal(a, b) for a, b in zip(_states(ours_cache), _states(stock_cache)))
        state = PrefillState(method="holitom_wo_m", merge_layer=None, rope_dims=3, sequences=(
            SequenceState(prompt_length=length, prompt_length_high=length, next_position=length),))
        for i in range(steps.shape[1]):  # one token at a time: the recurrent form
            step = steps[:, i : i + 1]
            nxt = torch.tensor([length + i]).view(1, 1, 1).expand(3, 1, 1)
            want = model(inputs_embeds=step, position_ids=nxt, cache=stock_cache, use_cache=True).last_hidden_state
            assert torch.equal(decode_decoder(model, step, state=state, cache=ours_cache), want)
    assert all(torch.equal(a, b) for a, b in zip(_states(ours_cache), _states(stock_cache)))


def test_a_layer_kind_the_engine_does_not_run_is_one_clear_error() -> None:
    """Full- and linear-attention layers run; a sliding-window layer is rejected, naming the kinds found."""
    from transformers import Qwen2Config, Qwen2Model

    from lmms_holitom.hf.decoder import check_language_model

    config = Qwen2Config(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, use_sliding_window=True, sliding_window=4,
                         layer_types=["full_attention", "sliding_attention"])
    with pytest.raises(NotImplementedError) as err:
        check_language_model(Qwen2Model(config), None)
    assert str(err.value) == ("HoliTom's decoder forward supports full_attention and linear_attention layers; this "
                              "model has layer types ['full_attention', 'sliding_attention']")
    check_language_model(_hybrid_text_model(), DynamicCache())  # the hybrid decoder passes
