"""VidCom2 (`lmms_holitom.methods.vidcom2`, `ops.prune.vidcom2_keep`): vLLM's selection and count, what always
holds, op counts independent of the frame count, and the method through every model family and entry point."""

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

from lmms_holitom.ops.prune import selection_merge, vidcom2_count, vidcom2_keep, vidcom2_scores

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "vllm_prune.json").read_text())


@pytest.mark.parametrize("index", range(len(CASES)))
def test_selects_what_vllm_selects(index: int) -> None:
    """The kept (frame, position) set equals vLLM 0.32's on the same embeddings, retain_ratio = 1 − q."""
    entry = RECORDED["cases"][index]
    seed, frames, rows, cols, channels, q = entry["case"]
    keep = vidcom2_keep(embeddings(seed, frames, rows, cols, channels), retain_ratio(q))
    assert keep.reshape(-1).nonzero().squeeze(-1).tolist() == entry["vidcom2"]


@pytest.mark.parametrize(("frames", "tokens", "ratio", "count"), [
    (8, 196, 0.25, 392),
    (10, 196, 0.1, 196),
    (10, 196, 1 - 0.9, 195),  # 1960 · 0.09999999999999998: floored, as vLLM does
    (1, 49, 0.1, 4),  # one frame is pruned too (EVS would keep it whole)
    (8, 16, 0.01, 8),  # one token per frame, at least
    (4, 16, 1.0, 64),
])
def test_count_rule(frames: int, tokens: int, ratio: float, count: int) -> None:
    assert vidcom2_count(frames, tokens, ratio) == count


@settings(max_examples=60, deadline=None)
@given(frames=st.integers(1, 6), tokens=st.integers(1, 12), channels=st.integers(2, 6),
       ratio=st.floats(0.01, 1.0), seed=st.integers(0, 1000))
def test_what_always_holds(frames: int, tokens: int, channels: int, ratio: float, seed: int) -> None:
    """Exactly `vidcom2_count` tokens; every frame's budget in [1, N]; every frame keeps a token unless the
    budgets overshoot the count (then the reconcile may take a frame's last one, as vLLM's does)."""
    x = torch.randn(frames, tokens, channels, generator=torch.Generator().manual_seed(seed))
    keep = vidcom2_keep(x, ratio)
    count = vidcom2_count(frames, tokens, ratio)
    _, budgets = vidcom2_scores(x, ratio)
    assert int(keep.sum()) == count
    assert int(budgets.min()) >= 1 and int(budgets.max()) <= tokens
    if int(budgets.sum()) <= count:
        assert bool(keep.any(dim=1).all())


def test_a_frame_can_lose_its_last_token_as_in_vllm() -> None:
    """The recorded case where vLLM's reconcile empties a frame: ours keeps [2, 0] tokens as well."""
    (entry,) = [e for e in RECORDED["cases"] if e["case"] == [1, 2, 2, 7, 32, 0.9]]
    keep = vidcom2_keep(embeddings(1, 2, 2, 7, 32), retain_ratio(0.9))
    assert keep.sum(dim=1).tolist() == [2, 0]
    assert keep.reshape(-1).nonzero().squeeze(-1).tolist() == entry["vidcom2"]


def test_op_count_does_not_grow_with_frames() -> None:
    """Scores, budgets and the per-frame selection: the same aten ops for 4 and 32 frames (no per-frame loop); the
    whole selection and its plan add a fixed reconcile step (a drop or an add)."""
    scores, totals = [], []
    for frames in (4, 32):
        x = embeddings(0, frames, 4, 4, 16)
        with OpCounter() as ops:
            vidcom2_scores(x, 0.25)
        scores.append(dict(ops.ops))
        with OpCounter() as ops:
            selection_merge(x, vidcom2_keep(x, 0.25))
        totals.append(ops.total)
    assert scores[0] == scores[1]
    assert abs(totals[0] - totals[1]) <= 8


@pytest.mark.parametrize("family", FAMILIES)
def test_through_every_family(family: str) -> None:
    assert_outer_count_on_family(family, "vidcom2", vidcom2_count)


def test_every_entry_point() -> None:
    assert_entry_points("vidcom2", vidcom2_count)
