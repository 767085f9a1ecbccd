"""frame_similarity, segment_video, renormalised_ratio (algorithm §2)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_loops import loop_frame_similarity, loop_segment_video, synthetic_video

from lmms_holitom.ops import frame_similarity, renormalised_ratio, segment_video
from lmms_holitom.ops.segment import static_counts, static_runs


def _sim(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ----------------------------------------------------------------------------------- frame_similarity
def test_frame_similarity_hand_values():
    features = torch.tensor(
        [
            [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]],
            [[0.0, 1.0], [2.0, 2.0], [1.0, 0.0]],
            [[0.0, -3.0], [-1.0, 1.0], [1.0, 0.0]],
        ]
    )
    sim = frame_similarity(features)
    expected = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])  # a zero vector has cosine 0
    assert sim.dtype == torch.float32 and sim.shape == (2, 3)
    torch.testing.assert_close(sim, expected, atol=1e-6, rtol=0)


def test_frame_similarity_matches_cosine_similarity():
    x = torch.randn(6, 10, 33, generator=torch.Generator().manual_seed(1))
    expected = torch.nn.functional.cosine_similarity(x[:-1], x[1:], dim=-1)
    torch.testing.assert_close(frame_similarity(x), expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(frame_similarity(x), loop_frame_similarity(x), atol=1e-6, rtol=1e-6)


def test_frame_similarity_chunking_matches_single_pass(monkeypatch):
    import lmms_holitom.ops.segment as seg

    x = torch.randn(9, 7, 16, generator=torch.Generator().manual_seed(2))
    whole = frame_similarity(x)
    monkeypatch.setattr(seg, "_CHUNK_BYTES_CPU", 1)  # one frame pair per chunk
    torch.testing.assert_close(frame_similarity(x), whole, atol=1e-6, rtol=0)


def test_frame_similarity_single_frame_is_empty():
    assert frame_similarity(torch.randn(1, 5, 4)).shape == (0, 5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_frame_similarity_dtypes_give_fp32(dtype):
    x = torch.randn(4, 6, 32, generator=torch.Generator().manual_seed(3))
    sim = frame_similarity(x.to(dtype))
    assert sim.dtype == torch.float32
    torch.testing.assert_close(sim, frame_similarity(x), atol=2e-2, rtol=0)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.randn(4, 5), "features must be a 3-D"),
        (torch.randn(0, 5, 3), r"features must be a non-empty.*\(0, 5, 3\)"),
        (torch.randn(2, 0, 3), r"features must be a non-empty.*\(2, 0, 3\)"),
        (torch.ones(2, 3, 4, dtype=torch.long), "features must have a floating dtype"),
        ("nope", "features must be a torch.Tensor"),
    ],
)
def test_frame_similarity_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        frame_similarity(bad)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_frame_similarity_non_finite(value):
    x = torch.randn(3, 4, 5)
    x[1, 2, 3] = value
    with pytest.raises(ValueError, match="features must be finite"):
        frame_similarity(x)


# ----------------------------------------------------------------------------------- static runs
def test_static_runs_and_counts_by_hand():
    sim = _sim([[0.9, 0.9], [0.9, 0.1], [0.9, 0.9]])  # F = 4, N = 2
    runs = static_runs(sim, 0.5)
    assert runs.tolist() == [[3, 1], [2, 0], [1, 1], [0, 0]]
    counts = static_counts(runs)
    assert counts[0].tolist() == [2, 2, 1, 1]  # S(0,1) = 2, S(0,2) = 1, S(0,3) = 1
    assert counts[1].tolist() == [2, 1, 1, 0]  # S(1,2) = 1 (position 0), S(1,3) = 1
    assert counts[2].tolist() == [2, 2, 0, 0]  # S(2,3) = 2


def test_static_is_strict_greater_than_tau():
    sim = _sim([[0.5, 0.5000001]])
    assert static_runs(sim, 0.5).tolist() == [[0, 1], [0, 0]]


# ----------------------------------------------------------------------------------- segment_video
def test_segment_hand_case():
    # gains: [0,1]=2, [1,2]=1, [2,3]=2, [0,2]=2, [1,3]=2, [0,3]=3 -> best [0,1] + [2,3] = 4
    sim = _sim([[0.9, 0.9], [0.9, 0.1], [0.9, 0.9]])
    assert segment_video(sim, 0.5, 1024) == ([(0, 1), (2, 3)], 4)


def test_segment_single_frame_wins_ties():
    # dp[2]: single frame keeps 1 (from [0,1]); window [1,2] gives 0 + 0, window [0,2] gives 0
    sim = _sim([[0.9], [0.1]])
    assert segment_video(sim, 0.5, 1024) == ([(0, 1), (2, 2)], 1)
    # every option ties at 0: all single frames
    assert segment_video(_sim([[0.1], [0.1]]), 0.5, 1024) == ([(0, 0), (1, 1), (2, 2)], 0)


def test_segment_shorter_window_wins_ties():
    # gain[1,2] = 2 (both positions), gain[0,2] = 1 * 2 = 2 -> [0,0] + [1,2] (shorter window) over [0,2]
    sim = _sim([[0.1, 0.9], [0.9, 0.9]])
    assert segment_video(sim, 0.5, 1024) == ([(0, 0), (1, 2)], 2)


def test_segment_max_window_size():
    sim = _sim([[0.9, 0.9]] * 5)  # F = 6, everything static
    assert segment_video(sim, 0.5, 1024) == ([(0, 5)], 10)
    assert segment_video(sim, 0.5, 6) == ([(0, 5)], 10)
    assert segment_video(sim, 0.5, 100) == ([(0, 5)], 10)  # larger than F
    assert segment_video(sim, 0.5, 1) == ([(f, f) for f in range(6)], 0)
    assert segment_video(sim, 0.5, 2) == ([(0, 1), (2, 3), (4, 5)], 6)
    # windows of 4 + 2 and 2 + 4 and 3 + 3 all give 2*(3+1) = 8; DP keeps the shortest last window
    assert segment_video(sim, 0.5, 4) == ([(0, 3), (4, 5)], 8)


def test_segment_one_frame():
    assert segment_video(torch.zeros(0, 7), 0.8, 1024) == ([(0, 0)], 0)


def test_segment_tau_above_one_is_all_single_frames():
    sim = _sim([[1.0, 1.0]] * 3)
    assert segment_video(sim, 1.01, 1024) == ([(0, 0), (1, 1), (2, 2), (3, 3)], 0)


@settings(max_examples=150, deadline=None)
@given(
    frames=st.integers(1, 10),
    tokens=st.integers(1, 5),
    mws=st.integers(1, 12),
    data=st.data(),
)
def test_segment_matches_loop_dp(frames, tokens, mws, data):
    bits = data.draw(st.lists(st.booleans(), min_size=(frames - 1) * tokens, max_size=(frames - 1) * tokens))
    sim = torch.tensor([0.9 if b else 0.2 for b in bits], dtype=torch.float32).view(frames - 1, tokens)
    segments, reduced = segment_video(sim, 0.5, mws)
    assert (segments, reduced) == loop_segment_video(sim, 0.5, mws)
    # a partition of 0..F-1 into windows of at most mws frames, and reduced = its total gain
    assert segments[0][0] == 0 and segments[-1][1] == frames - 1
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(segments))
    assert all(0 <= e - s < mws for s, e in segments)
    total = 0
    for s, e in segments:
        if e > s:
            total += int((sim[s:e] > 0.5).all(dim=0).sum()) * (e - s)
    assert total == reduced


def test_segment_on_synthetic_video_matches_loop():
    features, _ = synthetic_video(12, 20, 16, scenes=3, seed=5)
    sim = frame_similarity(features)
    assert segment_video(sim, 0.8, 1024) == loop_segment_video(sim, 0.8, 1024)
    assert segment_video(sim, 0.8, 1024)[0] == [(0, 3), (4, 7), (8, 11)]  # the three scenes


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.zeros(3), 0.5, 4), "similarity must be a 2-D"),
        ((torch.tensor([[float("nan")]]), 0.5, 4), "similarity must be finite"),
        ((torch.zeros(2, 2), float("nan"), 4), "tau must be a finite"),
        ((torch.zeros(2, 2), 0.5, 0), "max_window_size must be >= 1"),
        ((torch.zeros(2, 2), 0.5, 2.5), "max_window_size must be an integer"),
    ],
)
def test_segment_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        segment_video(*args)


# ----------------------------------------------------------------------------------- renormalisation
def test_renormalised_ratio_as_written():
    # r = min(retain / ((F*N - reduced) / (F*N)), 1), in that order of float operations
    assert renormalised_ratio(0.1, 32, 196, 0) == 0.1
    assert renormalised_ratio(0.1, 32, 196, 3136) == 0.1 / ((6272 - 3136) / 6272)
    assert renormalised_ratio(0.5, 2, 4, 7) == 1.0
    r = renormalised_ratio(0.15, 3, 7, 5)
    assert r == min(0.15 / ((21 - 5) / 21), 1)
    assert math.ceil(7 * r) == math.ceil(7 * (0.15 / ((21 - 5) / 21)))
