"""compress_video (algorithm §2–§5, §7): hand cases, the loop oracle, the count invariant, identities."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from reference_loops import loop_compress_video, loop_segment_video, loop_visionzip, synthetic_video

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.outer import compress_video
from lmms_holitom.methods.visionzip import tokens_per_frame
from lmms_holitom.ops import CompressedVideo, frame_similarity

STATS_KEYS = {
    "method",
    "frames",
    "tokens_per_frame",
    "tokens_in",
    "tokens_out",
    "static_tokens",
    "static_positions",
    "segments",
    "reduced",
    "effective_ratio",
    "renormalised_ratio",
    "dominant_tokens",
    "contextual_tokens",
}


def _hand_video() -> tuple[torch.Tensor, torch.Tensor]:
    # F = 2, N = 4, E = 2. Position 0 is static (cosine 1), positions 1..3 turn by 90 degrees.
    features = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]],
            [[3.0, 0.0], [1.0, 0.0], [-1.0, 1.0], [0.0, 2.0]],
        ]
    )
    attention = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.0, 0.7, 0.7, 0.7]])
    return features, attention


# ----------------------------------------------------------------------------------- hand cases
def test_hand_case():
    features, attention = _hand_video()
    out = compress_video(features, attention, HoliTomConfig(retain_ratio=0.5, tau=0.9))
    # one window [0, 1] with S = 1 -> reduced 1; r' = 0.5 / (7 / 8) = 0.5714...
    # static: round(1 * r') = 1 token, mean([1,0], [3,0]) = [2,0] at position 0, frame 0
    # dynamic: L = 3, budget = ceil(3 * r') = 2 per frame; frame 0: positions 2, 3 (attention .5, .3);
    # frame 1: a three-way tie at 0.7 -> the lower indices 1, 2
    assert out.segments == [(0, 1)]
    torch.testing.assert_close(out.tokens, torch.tensor([[2.0, 0.0], [1.0, 1.0], [2.0, 0.0], [1.0, 0.0], [-1.0, 1.0]]))
    assert out.positions.tolist() == [0, 2, 3, 1, 2]
    assert out.frames.tolist() == [0, 0, 0, 1, 1]
    assert out.positions.dtype == torch.long and out.frames.dtype == torch.long
    assert set(out.stats) >= STATS_KEYS
    assert out.stats["reduced"] == 1 and out.stats["renormalised_ratio"] == 0.5 / (7 / 8)
    assert out.stats["static_tokens"] == 1 and out.stats["static_positions"] == 1
    assert out.stats["tokens_in"] == 8 and out.stats["tokens_out"] == 5 == out.num_tokens
    assert out.stats["effective_ratio"] == 5 / 8 and out.stats["segments"] == 1
    assert out.stats["method"] == "holitom" and out.stats["dominant_tokens"] == 4
    assert isinstance(out, CompressedVideo)


def test_hand_case_single_frame_windows():
    features, attention = _hand_video()
    out = compress_video(features, attention, HoliTomConfig(retain_ratio=0.5, tau=0.9, max_window_size=1))
    # no temporal merging: r' = 0.5, budget = ceil(4 * 0.5) = 2 per frame, over all 4 positions
    assert out.segments == [(0, 0), (1, 1)] and out.stats["reduced"] == 0
    assert out.positions.tolist() == [0, 2, 1, 2]
    assert out.frames.tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(out.tokens, features[[0, 0, 1, 1], [0, 2, 1, 2]])


def test_hand_case_contextual():
    features, attention = _hand_video()
    cfg = HoliTomConfig(retain_ratio=0.5, tau=0.9, contextual_ratio=0.5, beta=0.6)
    out = compress_video(features, attention, cfg)
    # budget 2 per frame: dominant round(2 * 0.5) = 1, contextual 1 among the 2 remaining tokens;
    # frame 0: dominant 2; remaining 1, 3 -> a 2-token DPC-kNN (k = 1): densities tie, index 1 is the
    # densest (delta = max dist), 3 has delta = dist(3, 1) < max -> centre 1, member 3:
    # 0.6 * [0,1] + 0.4 * [2,0] = [0.8, 0.6]
    # frame 1: dominant 1 (tie -> lower index); remaining 2, 3 -> centre 2, member 3:
    # 0.6 * [-1,1] + 0.4 * [0,2] = [-0.6, 1.4]
    assert out.positions.tolist() == [0, 2, 1, 1, 2]
    assert out.frames.tolist() == [0, 0, 0, 1, 1]
    expected = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.8, 0.6], [1.0, 0.0], [-0.6, 1.4]])
    torch.testing.assert_close(out.tokens, expected)
    assert out.stats["dominant_tokens"] == 2 and out.stats["contextual_tokens"] == 2


# ----------------------------------------------------------------------------------- oracle
ORACLE_CASES = [
    # (F, N, E, scenes, config kwargs)
    (6, 16, 8, 2, {"retain_ratio": 0.25, "tau": 0.8}),
    (8, 16, 8, 3, {"retain_ratio": 0.1, "tau": 0.65}),
    (8, 12, 8, 2, {"retain_ratio": 0.3, "tau": 0.8, "contextual_ratio": 0.5, "beta": 0.6}),
    (7, 16, 8, 2, {"retain_ratio": 0.4, "tau": 0.8, "contextual_ratio": 1.0, "beta_merge": False}),
    (9, 10, 6, 3, {"retain_ratio": 0.5, "tau": 0.8, "max_window_size": 2, "contextual_ratio": 0.3}),
    (5, 16, 8, 1, {"retain_ratio": 0.2, "tau": 0.8, "knn_k": 3}),
    (1, 16, 8, 1, {"retain_ratio": 0.3, "tau": 0.8, "contextual_ratio": 0.5}),
    (6, 30, 8, 2, {"retain_ratio": 1.0, "tau": 0.8, "contextual_ratio": 0.2}),
    (10, 9, 4, 4, {"retain_ratio": 0.15, "tau": 0.8, "max_window_size": 3, "beta": 0.0}),
]


@pytest.mark.parametrize(("F", "N", "E", "scenes", "kwargs"), ORACLE_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_oracle(F, N, E, scenes, kwargs, seed):
    features, attention = synthetic_video(F, N, E, scenes=scenes, seed=seed, static_fraction=0.6)
    cfg = HoliTomConfig(**kwargs)
    out = compress_video(features, attention, cfg)
    ref = loop_compress_video(features, attention, cfg)
    assert out.segments == ref["segments"]
    assert out.stats["reduced"] == ref["reduced"]
    assert out.stats["renormalised_ratio"] == ref["r"]
    assert out.stats["static_tokens"] == ref["static_tokens"]
    assert out.positions.tolist() == ref["positions"]
    assert out.frames.tolist() == ref["frames"]
    torch.testing.assert_close(out.tokens, ref["tokens"], rtol=1e-6, atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(
    frames=st.integers(1, 6),
    tokens=st.integers(1, 14),
    scenes=st.integers(1, 3),
    static_fraction=st.floats(0.0, 1.0),
    retain=st.floats(0.05, 1.0),
    contextual=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    knn_k=st.integers(1, 8),
    beta_merge=st.booleans(),
    mws=st.integers(1, 7),
    seed=st.integers(0, 10_000),
)
def test_matches_loop_oracle_property(
    frames, tokens, scenes, static_fraction, retain, contextual, knn_k, beta_merge, mws, seed
):
    features, attention = synthetic_video(frames, tokens, 6, scenes=scenes, static_fraction=static_fraction, seed=seed)
    cfg = HoliTomConfig(
        retain_ratio=retain,
        tau=0.8,
        contextual_ratio=contextual,
        knn_k=knn_k,
        beta_merge=beta_merge,
        max_window_size=mws,
    )
    out = compress_video(features, attention, cfg)
    ref = loop_compress_video(features, attention, cfg)
    assert out.segments == ref["segments"]
    assert out.positions.tolist() == ref["positions"] and out.frames.tolist() == ref["frames"]
    torch.testing.assert_close(out.tokens, ref["tokens"], rtol=1e-5, atol=1e-5)


def test_oracle_cases_exercise_every_path():
    seen = {"static": False, "context": False, "multi": False}
    for F, N, E, scenes, kwargs in ORACLE_CASES:
        features, attention = synthetic_video(F, N, E, scenes=scenes, seed=0, static_fraction=0.6)
        stats = compress_video(features, attention, HoliTomConfig(**kwargs)).stats
        seen["static"] |= stats["static_tokens"] > 0
        seen["context"] |= stats["contextual_tokens"] > 0
        seen["multi"] |= stats["segments"] > 1
    assert all(seen.values())


# ----------------------------------------------------------------------------------- invariant
def _expected_count(features: torch.Tensor, segments, tau: float, retain: float) -> tuple[int, int]:
    F, N, _ = features.shape
    sim = frame_similarity(features)
    reduced, count, statics = 0, 0, []
    for s, e in segments:
        S = int((sim[s:e] > tau).all(dim=0).sum()) if e > s else 0
        statics.append(S)
        reduced += S * (e - s)
    r = min(retain / ((F * N - reduced) / (F * N)), 1)
    for (s, e), S in zip(segments, statics):
        clusters = round(S * r) if S < N else max(1, round(S * r))  # an all-static segment keeps one
        count += clusters + (e - s + 1) * math.ceil((N - S) * r)
    return count, reduced


@settings(max_examples=200, deadline=None)
@given(
    frames=st.integers(1, 8),
    tokens=st.integers(1, 20),
    dim=st.integers(2, 8),
    scenes=st.integers(1, 3),
    static_fraction=st.floats(0.0, 1.0),
    retain=st.floats(0.01, 1.0),
    tau=st.floats(0.3, 1.2),
    contextual=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    mws=st.integers(1, 10),
    seed=st.integers(0, 10_000),
)
# tau one ulp below 1.0 (fp32: 1.0) on identical frames: the oracle must compare in sim's precision too
@example(frames=6, tokens=8, dim=2, scenes=1, static_fraction=1.0, retain=1.0, tau=0.9999999999999999,
         contextual=0.0, mws=2, seed=70)
def test_token_count_invariant(frames, tokens, dim, scenes, static_fraction, retain, tau, contextual, mws, seed):
    features, attention = synthetic_video(
        frames, tokens, dim, scenes=scenes, static_fraction=static_fraction, seed=seed
    )
    cfg = HoliTomConfig(retain_ratio=retain, tau=tau, contextual_ratio=contextual, max_window_size=mws)
    out = compress_video(features, attention, cfg)
    expected, reduced = _expected_count(features, out.segments, tau, retain)
    assert out.num_tokens == expected == out.stats["tokens_out"]
    assert out.stats["reduced"] == reduced
    assert (out.segments, reduced) == loop_segment_video(frame_similarity(features), tau, mws)
    assert out.positions.shape == out.frames.shape == (expected,)
    assert out.tokens.shape == (expected, dim)
    if expected:
        assert int(out.positions.min()) >= 0 and int(out.positions.max()) < tokens
        assert bool((out.frames[1:] >= out.frames[:-1]).all())  # temporal order


# ----------------------------------------------------------------------------------- identities
@pytest.mark.parametrize("method", ["dense", "fastv"])
def test_dense_and_fastv_are_identity(method):
    features, attention = synthetic_video(4, 9, 5, seed=3)
    out = compress_video(features, attention, HoliTomConfig(method=method))
    assert torch.equal(out.tokens, features.reshape(36, 5))
    assert out.positions.tolist() == list(range(9)) * 4
    assert out.frames.tolist() == [f for f in range(4) for _ in range(9)]
    assert out.segments == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert out.stats["reduced"] == 0 and out.stats["effective_ratio"] == 1.0
    assert out.stats["method"] == method


def test_tau_above_one_and_retain_one_is_identity():
    features, attention = synthetic_video(5, 12, 6, seed=4, noise=0.0)  # static positions are exact copies
    out = compress_video(features, attention, HoliTomConfig(retain_ratio=1.0, tau=1.01))
    assert torch.equal(out.tokens, features.reshape(60, 6))
    assert out.positions.tolist() == list(range(12)) * 5
    assert out.frames.tolist() == [f for f in range(5) for _ in range(12)]
    assert out.segments == [(f, f) for f in range(5)]


def test_retain_one_only_merges_temporal_duplicates():
    frame = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    features = frame.expand(6, 7, 4).clone()  # six identical frames
    attention = torch.rand(6, 7)
    out = compress_video(features, attention, HoliTomConfig(retain_ratio=1.0, tau=0.99))
    assert out.segments == [(0, 5)] and out.stats["reduced"] == 35
    # one static token per position (the mean of identical copies), no dynamic tokens
    torch.testing.assert_close(out.tokens, frame)
    assert out.positions.tolist() == list(range(7)) and out.frames.tolist() == [0] * 7


def test_all_static_segment_has_no_dynamic_budget():
    features, attention = synthetic_video(6, 10, 8, scenes=2, static_fraction=1.0, seed=2)
    out = compress_video(features, attention, HoliTomConfig(retain_ratio=0.3, tau=0.8))
    assert out.segments == [(0, 2), (3, 5)]
    r = 0.3 / ((60 - 40) / 60)  # = 0.9
    assert out.stats["renormalised_ratio"] == r
    assert out.num_tokens == 2 * round(10 * r) and out.stats["dominant_tokens"] == 0
    assert out.frames.tolist() == [0] * 9 + [3] * 9


def test_single_frame_video():
    features, attention = synthetic_video(1, 20, 6, seed=1)
    out = compress_video(features, attention, HoliTomConfig(retain_ratio=0.25, tau=0.8))
    assert out.segments == [(0, 0)] and out.stats["reduced"] == 0
    top = sorted(sorted(range(20), key=lambda n: -float(attention[0, n]))[:5])
    assert out.positions.tolist() == top and out.frames.tolist() == [0] * 5
    assert torch.equal(out.tokens, features[0, top])


@pytest.mark.parametrize("mws", [1, 2, 5, 1000])
def test_max_window_size_limits_segments(mws):
    features, attention = synthetic_video(10, 12, 6, scenes=1, static_fraction=0.8, seed=6)
    out = compress_video(features, attention, HoliTomConfig(tau=0.8, max_window_size=mws))
    assert all(e - s + 1 <= mws for s, e in out.segments)
    if mws >= 10:
        assert out.segments == [(0, 9)]


# ----------------------------------------------------------------------------------- dtype, determinism
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_features(dtype):
    features, attention = synthetic_video(8, 24, 64, scenes=2, seed=7, noise=0.01)
    cfg = HoliTomConfig(retain_ratio=0.2, tau=0.8, contextual_ratio=0.5)
    ref = compress_video(features, attention, cfg)
    out = compress_video(features.to(dtype), attention, cfg)
    assert out.tokens.dtype == dtype and out.tokens.device == features.device
    assert out.segments == ref.segments
    assert torch.equal(out.positions, ref.positions) and torch.equal(out.frames, ref.frames)
    torch.testing.assert_close(out.tokens.float(), ref.tokens, atol=5e-2, rtol=5e-2)


def test_deterministic_and_ties_by_index():
    features, attention = synthetic_video(6, 16, 8, seed=8)
    cfg = HoliTomConfig(retain_ratio=0.3, tau=0.8, contextual_ratio=0.5)
    a, b = compress_video(features, attention, cfg), compress_video(features, attention, cfg)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.positions, b.positions)
    # uniform attention and no static tokens: the dominant tokens are the first positions of each frame
    flat = torch.ones(3, 10) / 10
    moving = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(1))
    out = compress_video(moving, flat, HoliTomConfig(retain_ratio=0.3, tau=1.01))
    assert out.positions.tolist() == [0, 1, 2] * 3


def test_output_shares_device_and_dtype():
    features, attention = synthetic_video(4, 8, 4, seed=9, dtype=torch.float64)
    out = compress_video(features, attention, HoliTomConfig(retain_ratio=0.5))
    assert out.tokens.dtype == torch.float64 and out.positions.device == features.device


# ----------------------------------------------------------------------------------- VisionZip
def test_visionzip_hand_case():
    features = torch.tensor([[[5.0, 5.0], [1.0, 1.0], [6.0, 6.0], [3.0, 3.0], [10.0, 0.0], [0.0, 4.0]]])
    attention = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.3, 0.05]])
    keys = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]])
    cfg = HoliTomConfig(method="visionzip", spatial_tokens=4, dominant_ratio=0.5)
    out = compress_video(features, attention, cfg, keys=keys)
    # dominant: positions 0, 2; remaining 1, 3, 4, 5; step = 4 // 2 = 2 -> targets 1, 4;
    # key(3) ~ key(1), key(5) ~ key(4): [1,1] + [3,3] and [10,0] + [0,4]
    assert out.positions.tolist() == [0, 2, 1, 4]
    torch.testing.assert_close(out.tokens, torch.tensor([[5.0, 5.0], [6.0, 6.0], [4.0, 4.0], [10.0, 4.0]]))
    assert out.segments == [(0, 0)] and out.stats["method"] == "visionzip"


@pytest.mark.parametrize(("spatial", "dominant_ratio"), [(10, 54 / 64), (7, 0.5), (16, 1.0), (3, 0.0), (None, 0.8)])
def test_visionzip_matches_loop_and_count(spatial, dominant_ratio):
    features, attention = synthetic_video(5, 16, 8, seed=11)
    keys = torch.randn(5, 16, 6, generator=torch.Generator().manual_seed(12))
    cfg = HoliTomConfig(method="visionzip", spatial_tokens=spatial, dominant_ratio=dominant_ratio, retain_ratio=0.25)
    out = compress_video(features, attention, cfg, keys=keys)
    per_frame = tokens_per_frame(cfg, 16)
    assert out.num_tokens == 5 * per_frame
    assert out.frames.tolist() == [f for f in range(5) for _ in range(per_frame)]
    ref = loop_visionzip(features, attention, keys, per_frame, int(per_frame * dominant_ratio))
    assert out.positions.tolist() == ref["positions"]
    torch.testing.assert_close(out.tokens, ref["tokens"], rtol=1e-5, atol=1e-5)


def test_visionzip_needs_keys():
    features, attention = synthetic_video(2, 8, 4)
    with pytest.raises(ValueError, match="keys must be given"):
        compress_video(features, attention, HoliTomConfig(method="visionzip"))


# ----------------------------------------------------------------------------------- bad input
def _bad(**changes):
    features, attention = synthetic_video(3, 6, 4)
    args = {"features": features, "attention": attention, "config": HoliTomConfig(), "keys": None}
    args.update(changes)
    return args


def _nan_features():
    features, _ = synthetic_video(3, 6, 4)
    features[1, 2, 0] = float("nan")
    return features


def _inf_features():
    features, _ = synthetic_video(3, 6, 4)
    features[2, 5, 3] = float("-inf")
    return features


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"features": torch.randn(6, 4)}, "features must be a 3-D tensor, got shape \\(6, 4\\)"),
        ({"features": torch.randn(0, 6, 4), "attention": torch.rand(0, 6)}, "features must be a non-empty"),
        ({"features": torch.randn(3, 0, 4), "attention": torch.rand(3, 0)}, "features must be a non-empty"),
        ({"attention": torch.rand(3, 5)}, r"attention must have shape \(F, N\) = \(3, 6\).*\(3, 5\)"),
        ({"attention": torch.rand(4, 6)}, r"attention must have shape \(F, N\) = \(3, 6\)"),
        ({"attention": torch.rand(18)}, "attention must be a 2-D"),
        ({"attention": torch.full((3, 6), float("nan"))}, "attention must be finite"),
        ({"features": _nan_features()}, "features must be finite"),
        ({"features": _inf_features()}, "features must be finite"),
        ({"keys": torch.randn(3, 5, 2)}, r"keys must have shape \(F, N, Dk\)"),
        ({"config": {"method": "holitom"}}, "config must be a HoliTomConfig"),
    ],
)
def test_bad_input(changes, match):
    with pytest.raises(ValueError, match=match):
        compress_video(**_bad(**changes))


@pytest.mark.parametrize("method", ["dense", "visionzip"])
def test_bad_input_other_methods(method):
    keys = torch.randn(3, 6, 2)
    with pytest.raises(ValueError, match="features must be finite"):
        compress_video(**_bad(features=_nan_features(), config=HoliTomConfig(method=method), keys=keys))
    with pytest.raises(ValueError, match=r"keys must have shape"):
        compress_video(**_bad(config=HoliTomConfig(method=method), keys=torch.randn(2, 6, 2)))


def test_accelerator_code_path_matches_oracle(monkeypatch):
    import lmms_holitom.ops.cluster as cluster
    import lmms_holitom.ops.segment as segment

    monkeypatch.setattr(cluster, "_use_index_add", lambda device: False)
    monkeypatch.setattr(segment, "_CHUNK_BYTES_CPU", 1 << 30)  # one-shot similarity, as on GPUs
    features, attention = synthetic_video(8, 16, 8, scenes=2, seed=13)
    cfg = HoliTomConfig(retain_ratio=0.3, tau=0.8, contextual_ratio=0.5)
    out = compress_video(features, attention, cfg)
    ref = loop_compress_video(features, attention, cfg)
    assert out.positions.tolist() == ref["positions"] and out.stats["static_tokens"] > 0
    torch.testing.assert_close(out.tokens, ref["tokens"], rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    features, attention = synthetic_video(8, 36, 64, scenes=2, seed=14, noise=0.01)
    cfg = HoliTomConfig(retain_ratio=0.25, tau=0.8, contextual_ratio=0.5)
    ref = compress_video(features, attention, cfg)
    out = compress_video(features.cuda(), attention.cuda(), cfg)
    assert out.tokens.is_cuda and out.segments == ref.segments
    assert out.positions.cpu().tolist() == ref.positions.tolist()
    torch.testing.assert_close(out.tokens.cpu(), ref.tokens, rtol=1e-4, atol=1e-4)


def test_differentiable_when_grad_is_enabled():
    features, attention = synthetic_video(4, 12, 6, seed=15)
    features.requires_grad_(True)
    cfg = HoliTomConfig(retain_ratio=0.3, tau=0.8, contextual_ratio=0.5)
    out = compress_video(features, attention, cfg)
    out.tokens.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    with torch.no_grad():
        again = compress_video(features, attention, cfg)
    torch.testing.assert_close(again.tokens, out.tokens.detach())
