"""Attention probes: the vision saliency equals the eager attention of the feature layer, bounded memory,
chunk-invariant; the last-token attention row equals eager attention of the decoder layer."""

from __future__ import annotations

import pytest
import torch
from model_helpers import LargestTensor, llm_input_embeds, traced

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.hf.attention import last_token_attention
from lmms_holitom.hf.models.probes import VisionSaliencyProbe, feature_attention_module

PATCHES = 729
HOLITOM = HoliTomConfig(method="holitom", retain_ratio=0.3, tau=0.8, merge_layer=2, merge_ratio=0.5)


@pytest.fixture(scope="module")
def eager_model(tiny_model_path):
    """The stock model with eager attention everywhere (it can return attention weights)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    return LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_path, attn_implementation="eager").eval()


def test_feature_layer_resolution(holitom_model):
    tower = holitom_model.model.vision_tower
    layers = tower.encoder.layers
    assert feature_attention_module(tower, -1) is layers[-1].self_attn  # hidden_states[-1] = last layer's output
    assert feature_attention_module(tower, -2) is layers[-2].self_attn
    assert feature_attention_module(tower, 1) is layers[0].self_attn
    assert feature_attention_module(tower, [-2, -1]) is layers[-1].self_attn  # the deepest layer kept
    with pytest.raises(ValueError, match="embeddings"):
        feature_attention_module(tower, 0)
    with pytest.raises(ValueError, match="out of range"):
        feature_attention_module(tower, 5)


def test_vision_saliency_equals_eager_attention(holitom_model, eager_model, tiny_video_inputs):
    tower = holitom_model.model.vision_tower
    target = feature_attention_module(tower, holitom_model.config.vision_feature_layer)
    assert tower.config._attn_implementation == "sdpa"
    with torch.no_grad(), traced(holitom_model), holitom_model.holitom_override(HOLITOM):
        holitom_model(**tiny_video_inputs)
        video = holitom_model.model.get_video_features(tiny_video_inputs["pixel_values_videos"])
    saliency = video.holitom.saliency
    # what ranked the tokens in the forward is this saliency
    assert torch.equal(holitom_model.holitom_last_trace.saliency, saliency.attention)
    # the tower stayed on SDPA and the probe's hook is gone
    assert tower.config._attn_implementation == "sdpa"
    assert holitom_model.config.vision_config._attn_implementation == "sdpa"
    assert len(target._forward_pre_hooks) == 0

    pixels = tiny_video_inputs["pixel_values_videos"].flatten(0, 1)
    with torch.no_grad():
        out = eager_model.model.vision_tower(pixels, output_attentions=True, output_hidden_states=True)
    weights = out.attentions[-1]  # (F, heads, 729, 729) of the feature layer (-1 -> last)
    want = weights.mean(dim=1).mean(dim=1)  # heads, then queries -> received attention (F, 729)
    torch.testing.assert_close(saliency.raw_attention, want, atol=1e-5, rtol=0)
    pool = eager_model.model.apply_pooling
    torch.testing.assert_close(saliency.attention, pool(want.unsqueeze(-1)).squeeze(-1), atol=1e-5, rtol=0)
    assert saliency.attention.shape == (6, 196)
    # VisionZip keys: that layer's k_proj of its (layer-normed) input, averaged over heads, pooled
    layer = eager_model.model.vision_tower.encoder.layers[-1]
    with torch.no_grad():
        k = layer.self_attn.k_proj(layer.layer_norm1(out.hidden_states[-2]))
    heads = layer.self_attn.num_heads
    k = k.view(6, PATCHES, heads, -1).mean(dim=2)
    torch.testing.assert_close(saliency.keys, pool(k), atol=1e-5, rtol=0)
    # sanity: the saliency is not uniform (else the comparison would be weak)
    assert float(saliency.raw_attention.std()) > 1e-4


def test_other_feature_layer_is_probed(holitom_model, eager_model, tiny_video_inputs):
    """vision_feature_layer=-2 -> the probe sits on layer 0, whose output the features then come from."""
    pixels = tiny_video_inputs["pixel_values_videos"]
    holitom_model.model.holitom_runtime.config = HOLITOM
    try:
        with torch.no_grad():
            video = holitom_model.model.get_video_features(pixels, vision_feature_layer=-2)
            out = eager_model.model.vision_tower(pixels.flatten(0, 1), output_attentions=True)
    finally:
        holitom_model.model.holitom_runtime.config = holitom_model.holitom
    want = out.attentions[0].mean(dim=1).mean(dim=1)
    torch.testing.assert_close(video.holitom.saliency.raw_attention, want, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def video32(make_video_inputs):
    return make_video_inputs("abcdefgh" * 4)["pixel_values_videos"]  # 32 frames


def test_probe_memory_is_bounded_and_chunking_is_exact(holitom_model, video32):
    """At 32 frames the largest tensor of the whole vision pass is the probe's chunk of scores
    (chunk · heads · 729²), never one layer's attention for all frames; results do not depend on the chunk."""
    heads = holitom_model.config.vision_config.num_attention_heads
    full_layer = 32 * heads * PATCHES**2  # one layer's attention weights for all 32 frames
    baseline = LargestTensor()  # the stock vision pass alone (no probe): pixels, activations, SDPA
    with torch.no_grad(), baseline:
        holitom_model.model.get_video_features(video32)
    assert baseline.largest < full_layer  # SDPA materialises no attention matrix
    results = {}
    holitom_model.model.holitom_runtime.config = HOLITOM
    try:
        for chunk in (1, 3, 32):
            holitom_model.holitom_probe_chunk = chunk
            mode = LargestTensor()
            with torch.no_grad(), mode:
                video = holitom_model.model.get_video_features(video32)
            saliency = video.holitom.saliency
            assert saliency.peak_elements == chunk * heads * PATCHES**2
            assert mode.largest == max(baseline.largest, chunk * heads * PATCHES**2)
            results[chunk] = saliency
    finally:
        holitom_model.holitom_probe_chunk = 8
        holitom_model.model.holitom_runtime.config = holitom_model.holitom
    assert results[3].peak_elements < full_layer
    assert results[32].peak_elements == full_layer  # the instrument sees a whole-video score tensor
    for chunk in (1, 3):
        torch.testing.assert_close(results[chunk].raw_attention, results[32].raw_attention, atol=1e-7, rtol=0)
        torch.testing.assert_close(results[chunk].keys, results[32].keys, atol=1e-7, rtol=0)
    assert results[3].attention.shape == (32, 196)


def test_probe_is_only_active_for_methods_that_need_it(holitom_model, tiny_video_inputs):
    pixels = tiny_video_inputs["pixel_values_videos"]
    for method, needed in (("dense", False), ("fastv", False), ("holitom", True), ("visionzip", True)):
        holitom_model.model.holitom_runtime.config = HoliTomConfig(method=method, merge_layer=2)
        try:
            with torch.no_grad():
                video = holitom_model.model.get_video_features(pixels)
        finally:
            holitom_model.model.holitom_runtime.config = holitom_model.holitom
        assert (video.holitom.saliency is not None) == needed


def test_probe_removes_its_hook_on_error(holitom_model):
    module = holitom_model.model.vision_tower.encoder.layers[-1].self_attn
    with pytest.raises(RuntimeError, match="boom"), VisionSaliencyProbe(module, 2):
        assert len(module._forward_pre_hooks) == 1
        raise RuntimeError("boom")
    assert len(module._forward_pre_hooks) == 0


@pytest.mark.parametrize("query_index", [47, 20])
def test_last_token_attention_equals_eager(eager_model, query_index):
    lm = eager_model.model.language_model
    layer = lm.layers[1]
    torch.manual_seed(0)
    length = 48
    hidden = torch.randn(1, length, lm.config.hidden_size)
    positions = torch.arange(length).unsqueeze(0) * 3 + 5  # any positions (gaps are fine)
    pe = lm.rotary_emb(hidden, positions)
    causal = torch.full((length, length), float("-inf")).triu(1).view(1, 1, length, length)
    with torch.no_grad():
        _, weights = layer.self_attn(
            hidden_states=layer.input_layernorm(hidden), position_embeddings=pe, attention_mask=causal
        )
        row = last_token_attention(layer, hidden, pe, query_index)
    want = weights[0, :, query_index, : query_index + 1].mean(dim=0)
    assert row.shape == (query_index + 1,)
    torch.testing.assert_close(row, want, atol=1e-6, rtol=0)
    # padding keys are excluded and the rest renormalised
    mask = torch.ones(length, dtype=torch.bool)
    mask[:4] = False
    with torch.no_grad():
        masked = last_token_attention(layer, hidden, pe, query_index, key_mask=mask)
    assert float(masked[:4].abs().max()) == 0.0
    per_head = weights[0, :, query_index, 4 : query_index + 1]
    torch.testing.assert_close(masked[4:], (per_head / per_head.sum(-1, keepdim=True)).mean(0), atol=1e-6, rtol=0)


def test_inner_attention_row_is_the_last_prompt_tokens_eager_row(holitom_model, eager_model, tiny_video_inputs):
    """In the model: the row ranking the visual tokens is layer K-1's eager attention of the last prompt token
    over the visual run, on the sequence that entered the LLM."""
    with traced(holitom_model):
        embeds = llm_input_embeds(holitom_model, tiny_video_inputs, holitom=HOLITOM.replace(fidelity="clean"))
    debug = holitom_model.holitom_last_trace
    a, v = debug.visual_start, debug.visual_length
    with torch.no_grad():
        out = eager_model.model.language_model(inputs_embeds=embeds, output_attentions=True)
    want = out.attentions[HOLITOM.merge_layer - 1][0, :, -1, a : a + v].mean(dim=0)
    torch.testing.assert_close(debug.inner_attention, want, atol=1e-5, rtol=0)
