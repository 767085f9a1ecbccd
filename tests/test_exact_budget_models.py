"""``budget: exact`` through the transformers models of every family (tiny random models, real classes).

The prompt's visual token count is exactly ``F · ceil(retain_ratio · N)`` (plus LLaVA-OneVision's one newline)
whatever the video — static (HoliTom alone keeps fewer), mixed (it keeps more) — cached decoding equals the uncached
recompute, M-RoPE positions are the dense positions at the survivors' origins, and Qwen3-VL's deepstack streams
are compressed with the same selection. LLaVA-Video's grid layout keeps exactly the budget's tokens; its newlines
follow the rows that kept one (§5b).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from conftest import make_frames
from method_checks import QUESTION, decode_and_recompute, tiny_family
from model_helpers import traced
from test_model_layouts import GRID, check_grid, relayout

from lmms_holitom.config import HoliTomConfig

FAMILIES = ("tiny", "tiny-qwen2.5-vl", "tiny-qwen3-vl")
#: (pattern of 8 frames, retain ratio) -> which way HoliTom's own count misses the budget on every family
VIDEOS = {"static": ("aaaaaaaa", 0.5), "mixed": ("aaaabbcd", 0.25)}


@functools.cache
def family_inputs(name: str, pattern: str) -> dict[str, torch.Tensor]:
    """Processor outputs of one 8-frame video prompt (`make_frames` pattern, 112 px) for the tiny ``name``."""
    from transformers import AutoProcessor

    from lmms_holitom.testing import resolve_pretrained

    processor = AutoProcessor.from_pretrained(resolve_pretrained(name))
    prompt = processor.apply_chat_template(QUESTION, add_generation_prompt=True)
    extra = {}
    if name == "tiny-qwen3-vl":
        extra = {"do_sample_frames": False,
                 "video_metadata": [{"fps": 2.0, "total_num_frames": 8, "frames_indices": list(range(8))}]}
    return dict(processor(text=prompt, videos=[make_frames(pattern, size=112)], return_tensors="pt", **extra))


def _traced_forward(model, inputs: dict, cfg: HoliTomConfig):
    with torch.no_grad(), traced(model):
        model(**inputs, holitom=cfg)
    return model.holitom_last_trace, dict(model.holitom_stats)


@pytest.mark.parametrize("video", list(VIDEOS))
@pytest.mark.parametrize("family", FAMILIES)
def test_the_prompt_holds_exactly_the_budget(family: str, video: str) -> None:
    model, _ = tiny_family(family)
    inputs = family_inputs(family, VIDEOS[video][0])
    ratio = VIDEOS[video][1]
    exact = HoliTomConfig(method="holitom_wo_m", retain_ratio=ratio, tau=0.8, budget="exact")
    stats = decode_and_recompute(model, inputs, exact)  # asserts cached == uncached at every step
    F, N = stats["frames"], stats["tokens_per_frame"]
    newline = 1 if family == "tiny" else 0
    budget = F * math.ceil(ratio * N)
    assert stats["outer_tokens"] == stats["inner_tokens"] == budget + newline == exact.visual_budget(F, N) + newline
    assert stats["prompt_tokens"] == stats["prompt_tokens_dense"] - stats["dense_tokens"] + budget + newline
    # the adaptive merge of the same video misses the budget (so the exact mode did something), in this direction
    _, adaptive = _traced_forward(model, inputs, exact.replace(budget="adaptive"))
    assert (adaptive["outer_tokens"] < stats["outer_tokens"]) == (video == "static")
    assert adaptive["outer_tokens"] != stats["outer_tokens"]


@pytest.mark.parametrize("family", FAMILIES)
def test_full_holitom_exact_budget_then_the_inner_merge(family: str) -> None:
    model, _ = tiny_family(family)
    inputs = family_inputs(family, "aaaabbcd")
    cfg = HoliTomConfig(method="holitom", retain_ratio=0.25, tau=0.8, merge_layer=2, merge_ratio=0.5, budget="exact")
    stats = decode_and_recompute(model, inputs, cfg)
    visual = cfg.visual_budget(stats["frames"], stats["tokens_per_frame"]) + (1 if family == "tiny" else 0)
    assert stats["outer_tokens"] == visual and stats["inner_tokens"] == round(visual * 0.5)


@pytest.mark.parametrize("family", ["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def test_positions_and_deepstack_follow_the_same_selection(family: str) -> None:
    """On a static video every kept row, restored or merged, is its origin's dense row: the M-RoPE positions
    exactly, Qwen3-VL's deepstack streams to rounding (a mean of identical rows)."""
    model, _ = tiny_family(family)
    inputs = family_inputs(family, "aaaaaaaa")
    dense, _ = _traced_forward(model, inputs, HoliTomConfig(method="holitom_wo_m", retain_ratio=1.0, tau=1.5))
    cfg = HoliTomConfig(method="holitom_wo_m", retain_ratio=0.5, tau=0.8, budget="exact")
    trace, stats = _traced_forward(model, inputs, cfg)
    N = stats["tokens_per_frame"]
    assert trace.origins.shape[0] == stats["outer_tokens"] == cfg.visual_budget(stats["frames"], N)
    flat = trace.origins[:, 0] * N + trace.origins[:, 1]
    assert flat.unique().numel() == flat.numel()
    dense_rows = dense.visual_mask.nonzero().flatten()[flat]
    assert torch.equal(trace.position_ids[:, 0, trace.visual_mask], dense.position_ids[:, 0, dense_rows])
    if family == "tiny-qwen3-vl":
        assert trace.deepstack is not None and len(trace.deepstack) == len(dense.deepstack) >= 1
        for got, want in zip(trace.deepstack, dense.deepstack):
            assert got.shape[0] == flat.numel()
            torch.testing.assert_close(got, want[flat], atol=1e-5, rtol=1e-5)


def test_llava_video_grid_keeps_the_budget(tiny_model_path) -> None:
    from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration

    model = HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(
        tiny_model_path, holitom=HoliTomConfig(method="dense"), **GRID).eval()
    base = family_inputs("tiny", "aaaabbcd")
    inputs = relayout(base, model.config.video_token_id, model.video_placeholder_count(8))
    cfg = HoliTomConfig(method="holitom_wo_m", retain_ratio=0.25, tau=0.8, budget="exact")
    trace, stats = _traced_forward(model, inputs, cfg)
    check_grid(trace, stats, 8)
    kept = int((trace.origins[:, 0] >= 0).sum())
    assert kept == cfg.visual_budget(8, 169) == 8 * 43
    _, adaptive = _traced_forward(model, inputs, cfg.replace(budget="adaptive"))
    assert adaptive["outer_tokens"] != stats["outer_tokens"]
    decode_and_recompute(model, inputs, cfg)
