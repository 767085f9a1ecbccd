"""EVS (`lmms_holitom.methods.evs`, `ops.prune.evs_keep`): vLLM's selection and count, what always holds, op counts
independent of the frame count, and the method through every model family and entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from method_checks import FAMILIES, assert_entry_points, assert_outer_count_on_family
from op_counter import OpCounter
from prune_cases import CASES, embeddings, retain_ratio

from lmms_holitom.ops.prune import evs_count, evs_keep, selection_merge

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "vllm_prune.json").read_text())


@pytest.mark.parametrize("index", range(len(CASES)))
def test_selects_what_vllm_selects(index: int) -> None:
    """The kept (frame, position) set equals vLLM 0.32's on the same embeddings, retain_ratio = 1 − q."""
    entry = RECORDED["cases"][index]
    seed, frames, rows, cols, channels, q = entry["case"]
    keep = evs_keep(embeddings(seed, frames, rows, cols, channels), retain_ratio(q))
    assert keep.reshape(-1).nonzero().squeeze(-1).tolist() == entry["evs"]


@pytest.mark.parametrize(("frames", "tokens", "ratio", "count"), [
    (8, 196, 0.25, 392),
    (20, 49, 0.1, 98),
    (20, 49, 1 - 0.9, 97),  # 980 · 0.09999999999999998: floored, as vLLM does
    (10, 196, 1 - 0.9, 196),  # the first frame whole, at least (1960 · (1 − 0.9) floors to 195)
    (1, 49, 0.1, 49),
    (4, 16, 1.0, 64),
])
def test_count_rule(frames: int, tokens: int, ratio: float, count: int) -> None:
    assert evs_count(frames, tokens, ratio) == count


@settings(max_examples=60, deadline=None)
@given(frames=st.integers(1, 6), tokens=st.integers(1, 12), channels=st.integers(2, 6),
       ratio=st.floats(0.01, 1.0), seed=st.integers(0, 1000))
def test_what_always_holds(frames: int, tokens: int, channels: int, ratio: float, seed: int) -> None:
    """Exactly `evs_count` tokens; the first frame whole; after it, the tokens that changed most: every kept token
    of frames 1.. scores at least as high (1 − cos to the previous frame) as every dropped one."""
    x = torch.randn(frames, tokens, channels, generator=torch.Generator().manual_seed(seed))
    keep = evs_keep(x, ratio)
    assert int(keep.sum()) == evs_count(frames, tokens, ratio) and bool(keep[0].all())
    if frames > 1:
        score = 1 - torch.nn.functional.cosine_similarity(x[1:], x[:-1], dim=-1)
        kept, dropped = score[keep[1:]], score[~keep[1:]]
        if kept.numel() and dropped.numel():
            assert float(kept.min()) >= float(dropped.max())


def test_op_count_does_not_grow_with_frames() -> None:
    """Selection and its merge plan: the same aten ops for 4 and 32 frames (no per-frame loop)."""
    counts = []
    for frames in (4, 32):
        x = embeddings(0, frames, 4, 4, 16)
        with OpCounter() as ops:
            selection_merge(x, evs_keep(x, 0.25))
        counts.append(dict(ops.ops))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("family", FAMILIES)
def test_through_every_family(family: str) -> None:
    assert_outer_count_on_family(family, "evs", evs_count)


def test_every_entry_point() -> None:
    assert_entry_points("evs", evs_count)
