"""Saliency probe for the Qwen2.5-VL / Qwen3-VL vision encoders, against a loop formulation written here."""

from __future__ import annotations

import pytest
import torch
from model_helpers import LargestTensor
from transformers import Qwen2_5_VLVisionConfig, Qwen3VLVisionConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

from lmms_holitom.hf.models.qwen_vision import (
    QwenVisionSaliencyProbe,
    VideoTokenGrid,
    probed_block_index,
    video_token_grid,
)
from lmms_holitom.ops.saliency import ROW_TILE, score_elements

# Two videos of different sizes: unequal attention spans, and 4x6 / 2x3 merged grids that 2x2 windows reorder.
GRID = torch.tensor([[3, 8, 12], [2, 4, 6]])


def _encoder(family: str) -> torch.nn.Module:
    common = dict(hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=48, depth=3)
    if family == "qwen2.5":
        # window_size 56 px = 2x2 merged tokens per window; block 1 is the last full-attention block
        config = Qwen2_5_VLVisionConfig(**common, patch_size=14, window_size=56, fullatt_block_indexes=[0, 1])
        cls = Qwen2_5_VisionTransformerPretrainedModel
    else:
        config = Qwen3VLVisionConfig(**common, patch_size=16, num_position_embeddings=64,
                                     deepstack_visual_indexes=[0, 1])
        cls = Qwen3VLVisionModel
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = cls._from_config(config).eval()
        with torch.no_grad():  # larger weights than the HF init so attention is far from uniform
            for p in model.parameters():
                p.normal_(0.0, 0.3)
    return model


def _pixels(model: torch.nn.Module, grid: torch.Tensor) -> torch.Tensor:
    cfg = model.config
    dim = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2
    gen = torch.Generator().manual_seed(1)
    return torch.randn(int(grid.prod(-1).sum()), dim, generator=gen)


def _reference(model: torch.nn.Module, pixels: torch.Tensor, grid: torch.Tensor) -> list[torch.Tensor]:
    """Saliency by loops: per span, per head, softmax(q kᵀ) of the probed block; natural patch order recovered by
    matching the first block's input rows to the patch embeddings (independent of the encoder's window code)."""
    block = model.blocks[probed_block_index(model)]
    seen: dict[str, object] = {}
    hooks = [
        model.patch_embed.register_forward_hook(lambda m, a, out: seen.__setitem__("embed", out)),
        model.blocks[0].register_forward_pre_hook(
            lambda m, a, kw: seen.__setitem__("first", kw.get("hidden_states", a[0] if a else None)),
            with_kwargs=True),
        block.attn.register_forward_pre_hook(lambda m, a, kw: seen.__setitem__("attn", (a, kw)), with_kwargs=True),
    ]
    try:
        with torch.no_grad():
            model(pixels, grid_thw=grid)
    finally:
        for h in hooks:
            h.remove()
    (args, kwargs) = seen["attn"]
    hidden, cu, (cos, sin) = args[0], kwargs["cu_seqlens"], kwargs["position_embeddings"]
    attn = block.attn
    heads, hd = attn.num_heads, attn.head_dim
    qkv = attn.qkv(hidden).reshape(hidden.shape[0], 3, heads, hd)

    def rope(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        rotated = torch.cat([-x[..., hd // 2:], x[..., : hd // 2]], dim=-1)
        return x * c[:, None] + rotated * s[:, None]

    q, k = rope(qkv[:, 0], cos, sin), rope(qkv[:, 1], cos, sin)
    internal = torch.zeros(hidden.shape[0], dtype=torch.float64)
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        for h in range(heads):
            scores = q[a:b, h].double() @ k[a:b, h].double().T * attn.scaling
            internal[a:b] += torch.softmax(scores, dim=-1).mean(dim=0) / heads
    if "embed" in seen and hasattr(model, "fullatt_block_indexes"):
        embed, first = seen["embed"], seen["first"]
        perm = torch.tensor([int((embed == row).all(dim=1).nonzero()[0]) for row in first])
        natural = torch.empty_like(internal)
        natural[perm] = internal
    else:
        natural = internal
    tokens = natural.view(-1, 4).mean(dim=1)
    out, start = [], 0
    for t, h, w in grid.tolist():
        n = h * w // 4
        out.append(tokens[start:start + t * n].view(t, n).float())
        start += t * n
    return out


@pytest.mark.parametrize("family", ["qwen2.5", "qwen3"])
def test_probe_matches_loop_reference_and_keeps_features(family):
    model = _encoder(family)
    pixels = _pixels(model, GRID)
    with torch.no_grad():
        dense = model(pixels, grid_thw=GRID).pooler_output
    with QwenVisionSaliencyProbe(model, frames_per_chunk=2, want_keys=True) as probe, torch.no_grad():
        probed = model(pixels, grid_thw=GRID).pooler_output
    assert torch.equal(probed, dense)
    saliency = probe.saliency()
    assert [tuple(s.shape) for s in saliency] == [(3, 24), (2, 6)]
    assert all(s.dtype == torch.float32 for s in saliency)
    reference = _reference(model, pixels, GRID)
    for got, want in zip(saliency, reference):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # received attention sums to 1 over a span's patches, so tokens (means of 4 patches) sum to 1/4
    for s, t in zip(saliency, GRID[:, 0].tolist()):
        torch.testing.assert_close(s.sum(dim=1), torch.full((t,), 0.25), rtol=0, atol=1e-6)
    keys = probe.keys()
    assert [tuple(k.shape) for k in keys] == [(3, 24, 16), (2, 6, 16)]
    assert probe.grids() == [VideoTokenGrid(3, 4, 6), VideoTokenGrid(2, 2, 3)]


def test_window_order_is_undone():
    """Qwen2.5-VL's windows reorder the rows: the probe restores the features' order, a naive pooling does not."""
    model = _encoder("qwen2.5")
    pixels = _pixels(model, GRID)
    captured = {}
    attn = model.blocks[probed_block_index(model)].attn
    with QwenVisionSaliencyProbe(model) as probe, torch.no_grad():
        original = probe.compute

        def spy(*a, **kw):
            captured["internal"] = original(*a, **kw)[0]
            return original(*a, **kw)

        probe.compute = spy
        model(pixels, grid_thw=GRID)
    assert probe.module is attn
    naive = captured["internal"].view(-1, 4).mean(dim=1)[: 3 * 24].view(3, 24)
    reference = _reference(model, pixels, GRID)[0]
    torch.testing.assert_close(probe.saliency()[0], reference, rtol=0, atol=1e-6)
    assert (naive - reference).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["qwen2.5", "qwen3"])
@pytest.mark.parametrize("grid_thw", [[4, 8, 12], [2, 24, 24]], ids=["span96", "span576"])
def test_chunk_sizes_agree_and_bound_memory(family, grid_thw):
    """The scores go one temporal group and at most `ROW_TILE` queries at a time: the largest score buffer is
    `score_elements(heads, span)` whatever the chunk, below ``heads · span²`` once the span exceeds a tile."""
    model = _encoder(family)
    grid = torch.tensor([grid_thw])
    pixels = _pixels(model, grid)
    results = {}
    baseline = LargestTensor()  # the encoder alone: no op of it makes a (heads, span, span) tensor
    with baseline, torch.no_grad():
        model(pixels, grid_thw=grid)
    for chunk in (1, 3, 8):
        mode = LargestTensor()
        with mode, QwenVisionSaliencyProbe(model, frames_per_chunk=chunk) as probe, torch.no_grad():
            model(pixels, grid_thw=grid)
        results[chunk] = (probe.saliency()[0], probe.peak_elements, mode.largest)
    heads, span = model.config.num_heads, grid_thw[1] * grid_thw[2]
    for saliency, peak, largest in results.values():
        assert peak == score_elements(heads, span)
        assert largest == max(baseline.largest, peak)  # the probe's largest tensor is its score buffer
        torch.testing.assert_close(saliency, results[1][0], rtol=0, atol=1e-7)
    if span > ROW_TILE:
        assert score_elements(heads, span) < heads * span * span


def test_hooks_removed_on_exit_and_on_error():
    model = _encoder("qwen3")
    attn = model.blocks[-1].attn
    with QwenVisionSaliencyProbe(model):
        assert len(attn._forward_pre_hooks) == 1 and len(model._forward_pre_hooks) == 1
    assert not attn._forward_pre_hooks and not model._forward_pre_hooks
    with pytest.raises(RuntimeError, match="boom"), QwenVisionSaliencyProbe(model):
        raise RuntimeError("boom")
    assert not attn._forward_pre_hooks and not model._forward_pre_hooks


def test_block_choice_and_bad_input():
    assert probed_block_index(_encoder("qwen2.5")) == 1  # last of fullatt_block_indexes, not the last block
    assert probed_block_index(_encoder("qwen3")) == 2  # the block feeding the merger
    with pytest.raises(ValueError, match="probe_chunk must be an integer >= 1, got 0"):
        QwenVisionSaliencyProbe(_encoder("qwen3"), frames_per_chunk=0)
    with pytest.raises(RuntimeError, match="no vision-encoder call"):
        QwenVisionSaliencyProbe(_encoder("qwen3")).saliency()
    with pytest.raises(TypeError, match="no Qwen vision encoder"):
        QwenVisionSaliencyProbe(torch.nn.Linear(2, 2))


def test_video_token_grid():
    grids = video_token_grid(torch.tensor([[4, 16, 16], [1, 28, 8]]))
    assert [(g.t, g.n, g.tokens) for g in grids] == [(4, 64, 256), (1, 56, 56)]
    with pytest.raises(ValueError, match="not divisible by spatial_merge_size=2"):
        video_token_grid(torch.tensor([[2, 5, 4]]))
    with pytest.raises(ValueError, match=r"shape \(videos, 3\)"):
        video_token_grid(torch.tensor([2, 4, 4]))
