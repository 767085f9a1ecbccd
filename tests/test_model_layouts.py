"""The LLaVA-Video layout (average pooling 27×27 -> 13×13, a newline after each row), the trace, and loading.

Dense in the LLaVA-Video layout is checked against a straightforward loop implementation of LLaVA-NeXT's pooling
and grid newlines written here; HoliTom's grid assembly against its definition (docs/algorithm.md §5b).
"""

from __future__ import annotations

import pytest
import torch
from model_helpers import traced

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration, VideoLayout

GRID = {"mm_spatial_pool_mode": "average", "mm_newline_position": "grid"}
SIDE, POOLED = 27, 13


@pytest.fixture(scope="module")
def video_model(tiny_model_path):
    return HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(
        tiny_model_path, holitom=HoliTomConfig(method="dense"), **GRID
    ).eval()


def relayout(inputs: dict, video_token_id: int, count: int) -> dict:
    """``inputs`` with its run of video placeholders resized to ``count`` (what a grid-layout processor emits)."""
    ids = inputs["input_ids"][0]
    where = (ids == video_token_id).nonzero().flatten()
    start, stop = int(where[0]), int(where[-1]) + 1
    new = torch.cat([ids[:start], torch.full((count,), video_token_id), ids[stop:]]).unsqueeze(0)
    return {**inputs, "input_ids": new, "attention_mask": torch.ones_like(new)}


@pytest.fixture(scope="module")
def grid_inputs(video_model, tiny_video_inputs):
    count = video_model.video_placeholder_count(6)
    return relayout(tiny_video_inputs, video_model.config.video_token_id, count)


def loop_grid_features(model, pixels: torch.Tensor) -> torch.Tensor:
    """LLaVA-NeXT's LLaVA-Video layout, one frame, one pooled cell, one row at a time: (F·13·14, E)."""
    base = model.model
    out = []
    with torch.no_grad():
        for frame in pixels[0]:
            hidden = base.vision_tower(frame.unsqueeze(0), output_hidden_states=True).hidden_states[-1]
            grid = base.multi_modal_projector(hidden)[0].view(SIDE, SIDE, -1)
            for i in range(POOLED):
                for j in range(POOLED):
                    cell = grid[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
                    out.append(cell.reshape(4, -1).mean(dim=0))
                out.append(base.image_newline)
    return torch.stack(out)


def test_layout_counts():
    ov, video = VideoLayout(), VideoLayout(**{"pool_mode": "average", "newline": "grid"})
    assert ov.tokens_per_frame(SIDE) == 196 and ov.placeholder_count(32, SIDE) == 32 * 196 + 1
    assert video.tokens_per_frame(SIDE) == 169 and video.placeholder_count(64, SIDE) == 64 * 182
    assert VideoLayout.from_config_dict({"mm_spatial_pool_mode": "bilinear"}, mm_newline_position="grid").grid
    for bad, match in [({"mm_spatial_pool_mode": "max"}, "mm_spatial_pool_mode must be one of bilinear, average"),
                       ({"mm_newline_position": "frame"}, "mm_newline_position must be one of one_token, grid"),
                       ({"mm_spatial_pool_stride": 3}, "mm_spatial_pool_stride must be 2")]:
        with pytest.raises(ValueError, match=match):
            VideoLayout.from_config_dict({}, **bad)


def test_video_placeholder_count(video_model, holitom_model):
    assert video_model.video_placeholder_count(6) == 6 * 182
    assert holitom_model.video_placeholder_count(6) == 6 * 196 + 1
    with pytest.raises(ValueError, match="frames must be an integer >= 1"):
        holitom_model.video_placeholder_count(0)


def test_dense_grid_equals_the_loop_implementation(video_model, stock_model, grid_inputs):
    want_visual = loop_grid_features(video_model, grid_inputs["pixel_values_videos"])
    with torch.no_grad():
        video = video_model.model.get_video_features(grid_inputs["pixel_values_videos"])
        torch.testing.assert_close(video.pooler_output[0], want_visual, atol=1e-5, rtol=0)
        got = video_model(**grid_inputs).logits
        # the stock decoder fed with the loop's sequence
        ids = grid_inputs["input_ids"]
        embeds = stock_model.get_input_embeddings()(ids)
        mask = (ids == stock_model.config.video_token_id)[0]
        embeds[0, mask] = want_visual
        want = stock_model(inputs_embeds=embeds).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    stats = video_model.holitom_stats
    assert stats["dense_tokens"] == 6 * 182 and stats["tokens_per_frame"] == 169 and stats["frames"] == 6


def check_grid(trace, stats, frames: int) -> None:
    """The §5b invariants of a traced grid-layout prefill."""
    origins = trace.origins
    newline = origins[:, 0] < 0
    tokens = origins[~newline]
    assert int(trace.visual_mask.sum()) == origins.shape[0] == stats["outer_tokens"]
    key = tokens[:, 0] * POOLED * POOLED + tokens[:, 1]
    assert bool((key.diff() > 0).all())  # (frame, spatial index) strictly increasing: sorted, no duplicates
    # a newline after each non-empty row, nowhere else: each newline closes the row of the token before it
    row_of = origins[:, 0] * POOLED + torch.where(newline, -1, origins[:, 1] // POOLED)
    groups = torch.unique_consecutive(tokens[:, 0] * POOLED + tokens[:, 1] // POOLED)
    assert int(newline.sum()) == groups.numel()
    assert bool(newline[-1]) and not bool(newline[0])
    before = torch.nonzero(newline).flatten() - 1
    assert not bool(newline[before].any())  # never two newlines in a row (an empty row gets none)
    assert bool((row_of[before] >= 0).all())
    assert int(tokens[:, 0].max()) < frames


@pytest.mark.parametrize("cfg", [
    HoliTomConfig(method="holitom_wo_m", retain_ratio=0.25, tau=0.8),
    HoliTomConfig(method="holitom", retain_ratio=0.1, tau=0.65, merge_layer=2, merge_ratio=0.5),
    HoliTomConfig(method="visionzip", retain_ratio=0.2),
    HoliTomConfig(method="fastv", merge_layer=2, merge_ratio=0.5),
], ids=["wo_m", "holitom", "visionzip", "fastv"])
def test_holitom_grid_assembly(video_model, grid_inputs, cfg):
    with torch.no_grad(), traced(video_model):
        video_model(**grid_inputs, holitom=cfg)
    trace, stats = video_model.holitom_last_trace, video_model.holitom_stats
    check_grid(trace, stats, 6)
    if cfg.method == "fastv":
        assert stats["outer_tokens"] == 6 * 182
    else:
        assert stats["outer_tokens"] < 0.5 * 6 * 182
    if trace.segments is not None:  # static tokens sit in their segment's first frame
        starts = {s for s, _ in trace.segments}
        frames_seen = set(trace.origins[trace.origins[:, 0] >= 0, 0].tolist())
        assert frames_seen <= set(range(6))
        assert min(frames_seen) in starts


def test_nothing_merged_in_the_grid_layout_is_dense(video_model, grid_inputs):
    """tau > 1 and retain 1: the compressed path rebuilds exactly the dense grid sequence."""
    with torch.no_grad(), traced(video_model):
        dense = video_model(**grid_inputs).logits
        none = video_model(**grid_inputs, holitom=HoliTomConfig(method="holitom_wo_m", retain_ratio=1.0, tau=1.5))
    torch.testing.assert_close(none.logits, dense, atol=1e-5, rtol=0)
    assert video_model.holitom_stats["outer_tokens"] == 6 * 182


def test_grid_cached_decoding_equals_uncached(video_model, grid_inputs):
    cfg = HoliTomConfig(method="holitom", retain_ratio=0.2, tau=0.8, merge_layer=2)
    gen = {"max_new_tokens": 4, "do_sample": False}
    with torch.no_grad():
        cached = video_model.generate(**grid_inputs, **gen, holitom=cfg)
        uncached = video_model.generate(**grid_inputs, **gen, holitom=cfg, use_cache=False)
    assert torch.equal(cached, uncached)


# ---------------------------------------------------------------------------------------------- trace
def test_trace_is_off_by_default_and_replays_through_the_stock_decoder(holitom_model, stock_model,
                                                                        tiny_video_inputs):
    cfg = HoliTomConfig(method="holitom_wo_m", retain_ratio=0.3, tau=0.8)
    holitom_model.holitom_last_trace = None
    with torch.no_grad():
        holitom_model(**tiny_video_inputs, holitom=cfg)
    assert holitom_model.holitom_last_trace is None
    with torch.no_grad(), traced(holitom_model):
        got = holitom_model(**tiny_video_inputs, holitom=cfg).logits
    trace = holitom_model.holitom_last_trace
    assert trace.inner_keep is None and trace.deepstack is None
    assert trace.position_ids.shape == (1, trace.inputs_embeds.shape[1])
    assert torch.equal(trace.position_ids[0], torch.arange(trace.inputs_embeds.shape[1]))  # renumbered (§10)
    assert tuple(trace.origins[-1].tolist()) == (-1, -1)  # the one newline, after the video
    assert bool((trace.origins[:-1] >= 0).all())
    with torch.no_grad():
        want = stock_model(inputs_embeds=trace.inputs_embeds, position_ids=trace.position_ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_trace_of_the_inner_merge(holitom_model, tiny_video_inputs):
    cfg = HoliTomConfig(method="holitom", retain_ratio=0.3, tau=0.8, merge_layer=2, merge_ratio=0.5)
    with torch.no_grad(), traced(holitom_model):
        holitom_model(**tiny_video_inputs, holitom=cfg)
    trace, stats = holitom_model.holitom_last_trace, holitom_model.holitom_stats
    v = stats["outer_tokens"]
    assert trace.inner_keep.numel() == stats["prompt_tokens"] - (v - stats["inner_tokens"])
    assert trace.inner_attention.shape == (v,)


# ---------------------------------------------------------------------------------------------- loading
def test_output_loading_info(tiny_model_path):
    model, info = HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(
        tiny_model_path, output_loading_info=True
    )
    assert isinstance(model, HoliTomLlavaOnevisionForConditionalGeneration)
    assert info["missing_keys"] == set() or list(info["missing_keys"]) == []


def test_layout_is_saved_with_the_model(video_model, tmp_path):
    video_model.save_pretrained(tmp_path)
    again = HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(tmp_path)
    assert again.video_layout == VideoLayout(pool_mode="average", newline="grid")
    with pytest.raises(ValueError, match="mm_newline_position must be one of"):
        HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(tmp_path, mm_newline_position="frame")
