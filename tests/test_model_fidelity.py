"""``fidelity: reference`` (layer K-1 non-causal during prefill, sequential-halving merge) vs ``clean``."""

from __future__ import annotations

import pytest
import torch
from model_helpers import llm_input_embeds, traced

from lmms_holitom.config import HoliTomConfig

BASE = HoliTomConfig(method="holitom", retain_ratio=0.3, tau=0.8, merge_layer=2, merge_ratio=0.5)


def last_logits(model, inputs, cfg):
    with torch.no_grad(), traced(model):
        logits = model(**inputs, holitom=cfg, use_cache=False).logits[0, -1]
    return logits, model.holitom_stats, model.holitom_last_trace


@pytest.fixture(scope="module")
def llm_input(holitom_model, tiny_video_inputs):
    """The (outer-merged) sequence entering the LLM for BASE's outer settings."""
    return llm_input_embeds(holitom_model, tiny_video_inputs, holitom=BASE.replace(method="holitom_wo_m"),
                            use_cache=False)


def manual_logits(model, embeds, noncausal_layer: int | None) -> torch.Tensor:
    """Independent reference: the stock decoder layers run one by one, layer ``noncausal_layer`` with full
    (bidirectional) attention and every other layer causal; last position's logits."""
    lm = model.model.language_model
    length = embeds.shape[1]
    positions = torch.arange(length).unsqueeze(0)
    pe = lm.rotary_emb(embeds, positions)
    causal = torch.ones(length, length, dtype=torch.bool).tril().view(1, 1, length, length)
    full = torch.ones_like(causal)
    hidden = embeds
    with torch.no_grad():
        for i, layer in enumerate(lm.layers):
            mask = full if i == noncausal_layer else causal
            hidden = layer(hidden, attention_mask=mask, position_embeddings=pe, position_ids=positions)
        return model.lm_head(lm.norm(hidden))[0, -1]


def test_reference_and_clean_rank_with_the_same_row_but_differ(holitom_model, tiny_video_inputs):
    ref, ref_stats, ref_debug = last_logits(holitom_model, tiny_video_inputs, BASE)
    clean, clean_stats, clean_debug = last_logits(holitom_model, tiny_video_inputs, BASE.replace(fidelity="clean"))
    # the last token's row is unaffected by the quirk (it sees every token either way)
    torch.testing.assert_close(ref_debug.inner_attention, clean_debug.inner_attention, atol=1e-6, rtol=0)
    assert torch.equal(ref_debug.inner_keep, clean_debug.inner_keep)
    assert ref_stats["inner_tokens"] == clean_stats["inner_tokens"] < ref_stats["outer_tokens"]
    # ... but the outputs differ (non-causal layer K-1 and the halving merge rule)
    assert (ref - clean).abs().max() > 1e-3


def test_clean_without_merging_is_causal_holitom_wo_m(holitom_model, tiny_video_inputs, llm_input):
    wo_m, _, _ = last_logits(holitom_model, tiny_video_inputs, BASE.replace(method="holitom_wo_m"))
    clean0, _, _ = last_logits(holitom_model, tiny_video_inputs, BASE.replace(merge_ratio=0.0, fidelity="clean"))
    torch.testing.assert_close(clean0, wo_m, atol=1e-6, rtol=0)
    torch.testing.assert_close(wo_m, manual_logits(holitom_model, llm_input, None), atol=1e-5, rtol=0)


def test_reference_runs_layer_k_minus_1_without_causal_mask(holitom_model, tiny_video_inputs, llm_input):
    """Merge ratio 0 isolates the quirk: equal to the stock layers with layer K-1 bidirectional, and not to
    the all-causal model."""
    ref0, _, _ = last_logits(holitom_model, tiny_video_inputs, BASE.replace(merge_ratio=0.0))
    k = BASE.merge_layer
    torch.testing.assert_close(ref0, manual_logits(holitom_model, llm_input, k - 1), atol=1e-5, rtol=0)
    assert (ref0 - manual_logits(holitom_model, llm_input, None)).abs().max() > 1e-3
    assert (ref0 - manual_logits(holitom_model, llm_input, k)).abs().max() > 1e-3


@pytest.mark.parametrize(
    "cfg", [BASE, HoliTomConfig(method="fastv", merge_layer=1, merge_ratio=0.5)], ids=["holitom", "fastv"]
)
def test_eager_attention_agrees_with_sdpa(tiny_model_path, holitom_model, tiny_video_inputs, cfg):
    """The inner merge under eager attention (explicit masks, each sized to its layer group's cache — a mask
    sized to layer 0 would not even broadcast while decoding) gives what sdpa gives."""
    from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration

    gen = {"max_new_tokens": 4, "do_sample": False, "return_dict_in_generate": True, "output_logits": True}
    eager = HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(
        tiny_model_path, holitom=cfg, attn_implementation="eager"
    ).eval()
    assert eager.config.text_config._attn_implementation == "eager"
    with torch.no_grad():
        got = eager.generate(**tiny_video_inputs, **gen)
        want = holitom_model.generate(**tiny_video_inputs, **gen, holitom=cfg)
    assert torch.equal(got.sequences, want.sequences)
    for a, b in zip(got.logits, want.logits):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
