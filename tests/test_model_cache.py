"""Token counts, per-layer KV-cache lengths and cache-consistent decoding of every method (tiny model, CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from model_helpers import traced

from lmms_holitom.config import HoliTomConfig

STEPS = 5
GEN = {"max_new_tokens": STEPS, "do_sample": False, "return_dict_in_generate": True, "output_logits": True}
CONFIGS = {
    "holitom": HoliTomConfig(method="holitom", retain_ratio=0.3, tau=0.8, merge_layer=2, merge_ratio=0.5),
    "holitom-clean": HoliTomConfig(
        method="holitom", retain_ratio=0.3, tau=0.8, merge_layer=2, merge_ratio=0.5, fidelity="clean"
    ),
    "holitom-k1": HoliTomConfig(method="holitom", retain_ratio=0.25, tau=0.8, merge_layer=1, merge_ratio=0.3),
    "holitom_wo_m": HoliTomConfig(method="holitom_wo_m", retain_ratio=0.3, tau=0.8),
    "visionzip": HoliTomConfig(method="visionzip", retain_ratio=0.2),
    "fastv": HoliTomConfig(method="fastv", merge_layer=1, merge_ratio=0.5),
    "fastv-k3": HoliTomConfig(method="fastv", merge_layer=3, merge_ratio=0.7, fidelity="clean"),
    "dense": HoliTomConfig(method="dense"),
}


def generate(model, inputs, **kwargs):
    with torch.no_grad():
        return model.generate(**inputs, **GEN, **kwargs)


@pytest.fixture(scope="module")
def cached_runs(holitom_model, tiny_video_inputs):
    """name -> (generate output with the cache, stats of its prefill)."""
    runs = {}
    for name, cfg in CONFIGS.items():
        out = generate(holitom_model, tiny_video_inputs, holitom=cfg)
        runs[name] = (out, dict(holitom_model.holitom_stats))
    return runs


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_decoding_equals_uncached_recompute(holitom_model, tiny_video_inputs, cached_runs, name):
    """Step t of cached greedy decoding == one uncached forward over prompt + the t tokens generated so far,
    with the same compression (``holitom_prompt_length`` marks where the prompt ends)."""
    cfg = CONFIGS[name]
    out, _ = cached_runs[name]
    prompt = tiny_video_inputs["input_ids"]
    p = prompt.shape[1]
    generated = out.sequences[:, p:]
    for t in range(STEPS):
        ids = torch.cat([prompt, generated[:, :t]], dim=1)
        with torch.no_grad():
            logits = holitom_model(
                input_ids=ids, attention_mask=torch.ones_like(ids),
                pixel_values_videos=tiny_video_inputs["pixel_values_videos"],
                holitom=cfg, holitom_prompt_length=p, use_cache=False,
            ).logits[0, -1]
        torch.testing.assert_close(logits, out.logits[t][0], atol=1e-4, rtol=0)
        assert int(logits.argmax()) == int(generated[0, t])
    # generate(use_cache=False) takes the same path
    uncached = generate(holitom_model, tiny_video_inputs, holitom=cfg, use_cache=False)
    assert torch.equal(uncached.sequences, out.sequences)
    for a, b in zip(uncached.logits, out.logits):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["holitom", "fastv"])
def test_recompute_needs_the_prompt_length(holitom_model, tiny_video_inputs, cached_runs, name):
    """Without ``holitom_prompt_length`` the last GENERATED token ranks the visual tokens: a different model —
    the consistency above is not automatic."""
    out, _ = cached_runs[name]
    ids = out.sequences[:, :-1]
    with torch.no_grad():
        logits = holitom_model(
            input_ids=ids, pixel_values_videos=tiny_video_inputs["pixel_values_videos"], holitom=CONFIGS[name],
            use_cache=False,
        ).logits[0, -1]
    assert (logits - out.logits[-1][0]).abs().max() > 1e-3


def independent_visual_count(features: torch.Tensor, segments, cfg: HoliTomConfig) -> int:
    """Algorithm §2–§5 count from the segments alone (contextual_ratio 0): static clusters + per-frame budgets."""
    frames, n, _ = features.shape
    f = features.float()
    sim = torch.nn.functional.cosine_similarity(f[:-1], f[1:], dim=-1)  # (F-1, N)
    static = {}
    for s, e in segments:
        static[(s, e)] = int((sim[s:e] > cfg.tau).all(dim=0).sum()) if e > s else 0
    reduced = sum(static[(s, e)] * (e - s) for s, e in segments)
    r = min(cfg.retain_ratio / ((frames * n - reduced) / (frames * n)), 1)
    return sum(round(static[(s, e)] * r) + (e - s + 1) * math.ceil((n - static[(s, e)]) * r) for s, e in segments)


@pytest.mark.parametrize("retain,tau", [(0.3, 0.8), (0.1, 0.65), (0.5, 0.9), (1.0, 0.8)])
def test_visual_tokens_entering_the_llm_match_the_spec(holitom_model, tiny_video_inputs, retain, tau):
    cfg = HoliTomConfig(method="holitom_wo_m", retain_ratio=retain, tau=tau)
    seen = {}

    def record(module, args):
        seen.setdefault("length", args[0].shape[1])

    hook = holitom_model.model.language_model.layers[0].register_forward_pre_hook(record)
    try:
        with torch.no_grad(), traced(holitom_model):
            holitom_model(**tiny_video_inputs, holitom=cfg, use_cache=False)
            video = holitom_model.model.get_video_features(tiny_video_inputs["pixel_values_videos"])
    finally:
        hook.remove()
    stats = holitom_model.holitom_stats
    segments = list(holitom_model.holitom_last_trace.segments)
    features = video.pooler_output[0, :-1].reshape(6, 196, -1)
    expected = independent_visual_count(features, segments, cfg) + 1  # + image_newline
    assert stats["outer_tokens"] == expected
    assert stats["segments"] == len(segments)
    assert stats["prompt_tokens_dense"] - stats["prompt_tokens"] == 6 * 196 + 1 - expected
    assert seen["length"] == stats["prompt_tokens"]
    if retain < 1:
        assert expected < 0.6 * (6 * 196 + 1)
    else:  # only the exact temporal duplicates (frames a a a, b b) are merged away
        assert segments == [(0, 2), (3, 4), (5, 5)]


@pytest.mark.parametrize("name", ["holitom", "holitom-k1", "fastv", "fastv-k3", "holitom_wo_m", "visionzip"])
def test_cache_lengths_per_layer(cached_runs, name):
    """Layers < K cache the whole (outer-merged) prompt, layers >= K exactly V - round(V(1-r)) fewer tokens;
    every layer then holds the decoded tokens (the last generated token is never fed back)."""
    cfg = CONFIGS[name]
    out, stats = cached_runs[name]
    cache = out.cache
    layers = len(cache.layers)
    v = stats["outer_tokens"]
    prompt = stats["prompt_tokens"]
    fed = STEPS - 1
    if cfg.inner_mode is None:
        assert stats["inner_tokens"] == v and stats["merge_layer"] is None
        assert [cache.get_seq_length(i) for i in range(layers)] == [prompt + fed] * layers
        return
    k = cfg.merge_layer
    kept = round(v * (1 - cfg.merge_ratio))
    assert stats["inner_tokens"] == kept and stats["merge_layer"] == k
    assert kept < v
    want = [prompt + fed] * k + [prompt - (v - kept) + fed] * (layers - k)
    assert [cache.get_seq_length(i) for i in range(layers)] == want
    assert [cache.layers[i].keys.shape[-2] for i in range(layers)] == want


def test_hidden_lengths_per_layer_during_prefill(holitom_model, tiny_video_inputs):
    cfg = CONFIGS["holitom"]
    lengths = {}
    hooks = [
        layer.register_forward_pre_hook(lambda module, args, i=i: lengths.__setitem__(i, args[0].shape[1]))
        for i, layer in enumerate(holitom_model.model.language_model.layers)
    ]
    try:
        with torch.no_grad(), traced(holitom_model):
            holitom_model(**tiny_video_inputs, holitom=cfg)
    finally:
        for hook in hooks:
            hook.remove()
    stats = holitom_model.holitom_stats
    dropped = stats["outer_tokens"] - stats["inner_tokens"]
    assert lengths == {0: stats["prompt_tokens"], 1: stats["prompt_tokens"], 2: stats["prompt_tokens"] - dropped,
                       3: stats["prompt_tokens"] - dropped}
    trace = holitom_model.holitom_last_trace
    keep, a, v = trace.inner_keep, trace.visual_start, trace.visual_length
    # text tokens all kept; visual tokens kept in order, with their original positions (gaps)
    assert torch.equal(keep[:a], torch.arange(a))
    assert torch.equal(keep[a + stats["inner_tokens"]:], torch.arange(a + v, stats["prompt_tokens"]))
    assert bool((keep.diff() > 0).all())


@pytest.mark.parametrize("name", ["holitom", "holitom_wo_m", "fastv"])
def test_left_padding_gives_the_same_answer(holitom_model, tiny_processor, tiny_video_inputs, cached_runs, name):
    """Batch 1 with left padding: positions from the mask, padded keys masked in every layer group."""
    pad = 3
    inputs = dict(tiny_video_inputs)
    inputs["input_ids"] = torch.cat(
        [torch.full((1, pad), tiny_processor.tokenizer.pad_token_id), inputs["input_ids"]], dim=1
    )
    inputs["attention_mask"] = torch.cat([torch.zeros(1, pad, dtype=torch.long), inputs["attention_mask"]], dim=1)
    out = generate(holitom_model, inputs, holitom=CONFIGS[name])
    ref, _ = cached_runs[name]
    assert torch.equal(out.sequences[:, pad:], ref.sequences)
    for a, b in zip(out.logits, ref.logits):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
