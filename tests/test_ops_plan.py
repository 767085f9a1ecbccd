"""The merge plan of an outer merge: apply == tokens, a second stream == the loop oracle, origins, weights,
determinism; the explicit-argument merges; no zero-token video (issue 12)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from reference_loops import loop_compress_video, loop_visionzip, synthetic_video

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.outer import compress_video
from lmms_holitom.ops import MergePlan, holitom_merge, identity_merge, visionzip_merge

METHODS = ["holitom", "holitom_wo_m", "visionzip", "dense", "fastv"]
ROOT = Path(__file__).resolve().parents[1]


def _keys(F: int, N: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(F, N, 6, generator=torch.Generator().manual_seed(seed))


def _videos() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Random and degenerate inputs, all (F, N, E) fp32 with (F, N) attention."""
    gen = torch.Generator().manual_seed(3)
    frame = torch.randn(12, 8, generator=gen)
    dup = torch.randn(3, 8, generator=gen)[torch.randint(0, 3, (12,), generator=gen)]  # 4 copies of 3 tokens
    return {
        "random": synthetic_video(8, 12, 8, scenes=2, seed=1),
        "all_static": (frame.expand(6, 12, 8).clone(), torch.rand(6, 12, generator=gen)),
        "nothing_static": synthetic_video(5, 12, 8, scenes=5, static_fraction=0.0, seed=2),
        "duplicate_tokens": (dup.expand(4, 12, 8).clone() + 0.0, torch.ones(4, 12) / 12),
    }


VIDEOS = _videos()


def _config(method: str, beta_merge: bool, contextual: float) -> HoliTomConfig:
    return HoliTomConfig(method=method, retain_ratio=0.3, tau=0.8, beta_merge=beta_merge, contextual_ratio=contextual)


def _row_sums(plan: MergePlan) -> torch.Tensor:
    return torch.zeros(plan.num_outputs).index_add_(0, plan.target, plan.weight)


# ----------------------------------------------------------------------------------- apply == tokens
@pytest.mark.parametrize("video", list(VIDEOS))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("beta_merge", "contextual"), [(True, 0.0), (True, 0.5), (False, 0.0), (False, 0.5)])
def test_apply_to_features_equals_tokens(video, method, beta_merge, contextual):
    features, attention = VIDEOS[video]
    F, N, _ = features.shape
    out = compress_video(features, attention, _config(method, beta_merge, contextual), keys=_keys(F, N))
    plan = out.plan
    assert plan.num_outputs == out.num_tokens and plan.frames == F and plan.tokens_per_frame == N
    torch.testing.assert_close(plan.apply(features), out.tokens, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plan.apply(features.reshape(F * N, -1)), out.tokens, rtol=1e-5, atol=1e-5)
    assert torch.equal(plan.origins(), torch.stack([out.frames, out.positions], dim=1))
    assert plan.frame_counts == tuple(torch.bincount(out.frames, minlength=F).tolist())
    # a well-formed sparse matrix: rows sorted, each dense token used at most once per row
    assert bool((plan.target[1:] >= plan.target[:-1]).all())
    assert int(plan.source.min()) >= 0 and int(plan.source.max()) < F * N
    assert torch.unique(plan.target * F * N + plan.source).numel() == plan.target.numel()
    if method.startswith("holitom"):  # every output token is a mean of dense tokens
        torch.testing.assert_close(_row_sums(plan), torch.ones(plan.num_outputs))
        assert torch.unique(plan.source).numel() == plan.source.numel()  # a dense token feeds one output
    if method in ("dense", "fastv"):
        assert plan.is_identity and plan.apply(features).data_ptr() == features.data_ptr()


@pytest.mark.parametrize("method", ["holitom", "visionzip"])
def test_apply_in_bf16_within_bf16_tolerance(method):
    features, attention = synthetic_video(8, 24, 64, scenes=2, seed=7, noise=0.01, dtype=torch.bfloat16)
    cfg = HoliTomConfig(method=method, retain_ratio=0.2, tau=0.8, contextual_ratio=0.5)
    out = compress_video(features, attention, cfg, keys=_keys(8, 24))
    got = out.plan.apply(features)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), out.tokens.float(), rtol=1.6e-2, atol=1e-2)
    # accumulation is fp32: the bf16 apply equals the fp32 apply rounded once
    torch.testing.assert_close(got, out.plan.apply(features.float()).to(torch.bfloat16), rtol=0, atol=0)


# ----------------------------------------------------------------------------------- second stream
ORACLE = [
    (6, 16, {"retain_ratio": 0.25, "tau": 0.8}),
    (8, 12, {"retain_ratio": 0.3, "tau": 0.8, "contextual_ratio": 0.5, "beta": 0.6}),
    (7, 16, {"retain_ratio": 0.4, "tau": 0.8, "contextual_ratio": 1.0, "beta_merge": False}),
    (9, 10, {"retain_ratio": 0.5, "tau": 0.8, "max_window_size": 2, "contextual_ratio": 0.3, "knn_k": 3}),
]


@pytest.mark.parametrize(("F", "N", "kwargs"), ORACLE)
def test_second_stream_equals_loop_oracle(F, N, kwargs):
    features, attention = synthetic_video(F, N, 8, scenes=2, seed=4)
    stream = torch.randn(F, N, 5, generator=torch.Generator().manual_seed(9))  # another width, unrelated values
    cfg = HoliTomConfig(**kwargs)
    out = compress_video(features, attention, cfg)
    ref = loop_compress_video(features, attention, cfg, stream=stream)
    assert out.positions.tolist() == ref["positions"] and out.stats["static_tokens"] > 0
    torch.testing.assert_close(out.plan.apply(stream), ref["tokens"], rtol=1e-5, atol=1e-5)
    # the oracle without a stream is the features' own merge
    torch.testing.assert_close(out.plan.apply(features), loop_compress_video(features, attention, cfg)["tokens"])


def test_second_stream_visionzip_equals_loop_oracle():
    features, attention = synthetic_video(5, 16, 8, seed=11)
    keys, stream = _keys(5, 16), torch.randn(5, 16, 3, generator=torch.Generator().manual_seed(2))
    cfg = HoliTomConfig(method="visionzip", spatial_tokens=7, dominant_ratio=0.5)
    out = compress_video(features, attention, cfg, keys=keys)
    ref = loop_visionzip(features, attention, keys, 7, 3, stream=stream)
    torch.testing.assert_close(out.plan.apply(stream), ref["tokens"], rtol=1e-5, atol=1e-5)
    assert torch.equal(out.plan.take(torch.arange(5 * 16).view(5, 16)), out.frames * 16 + out.positions)


def test_plan_is_deterministic_and_device_free_of_syncs_to_build():
    features, attention = synthetic_video(8, 16, 8, scenes=3, seed=6)
    cfg = HoliTomConfig(retain_ratio=0.2, tau=0.8, contextual_ratio=0.5)
    a, b = compress_video(features, attention, cfg).plan, compress_video(features, attention, cfg).plan
    for name in ("target", "source", "weight", "origin_frame", "origin_position", "offsets"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.frame_counts == b.frame_counts


def test_dense_matrix_view_matches_apply():
    features, attention = synthetic_video(4, 10, 6, scenes=1, seed=8)
    plan = compress_video(features, attention, HoliTomConfig(retain_ratio=0.3, contextual_ratio=0.5)).plan
    torch.testing.assert_close(plan.dense() @ features.reshape(40, 6), plan.apply(features))


def test_apply_and_take_reject_misaligned_input():
    plan = compress_video(*synthetic_video(3, 6, 4), HoliTomConfig()).plan
    with pytest.raises(ValueError, match=r"x must have shape \(F, N, \.\.\.\) = \(3, 6, \.\.\.\) or \(F\*N"):
        plan.apply(torch.randn(3, 5, 4))
    with pytest.raises(ValueError, match="x must be a floating"):
        plan.apply(torch.zeros(3, 6, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="x must have shape"):
        plan.take(torch.arange(17))


# ----------------------------------------------------------------------------------- explicit arguments
HOLITOM_ARGS = {"retain_ratio": 0.3, "tau": 0.8, "max_window_size": 8, "contextual_ratio": 0.5, "knn_k": 7,
                "beta": 0.6, "beta_merge": True}


def test_explicit_merges_equal_the_method_switch():
    features, attention = synthetic_video(6, 12, 8, scenes=2, seed=3)
    out = holitom_merge(features, attention, **HOLITOM_ARGS)
    cfg = HoliTomConfig(**HOLITOM_ARGS)
    switched = compress_video(features, attention, cfg)
    assert torch.equal(out.tokens, switched.tokens) and "method" not in out.stats
    assert switched.stats == {"method": "holitom", **out.stats}
    assert torch.equal(identity_merge(features).tokens, features.reshape(72, 8))
    vz = visionzip_merge(features, attention, _keys(6, 12), tokens=4, dominant=3)
    assert vz.num_tokens == 24 and vz.stats["renormalised_ratio"] is None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"retain_ratio": 0.0}, r"retain_ratio must be in \(0, 1\], got 0.0"),
        ({"retain_ratio": 1.5}, r"retain_ratio must be in \[0.0, 1.0\], got 1.5"),
        ({"tau": float("nan")}, "tau must be a finite number"),
        ({"max_window_size": 0}, "max_window_size must be >= 1, got 0"),
        ({"contextual_ratio": -0.1}, "contextual_ratio must be in"),
        ({"knn_k": 0}, "knn_k must be >= 1, got 0"),
        ({"beta": 2}, "beta must be in"),
        ({"beta_merge": 1}, "beta_merge must be a bool, got 1"),
    ],
)
def test_holitom_merge_rejects_bad_arguments(change, match):
    with pytest.raises(ValueError, match=match):
        holitom_merge(*synthetic_video(3, 6, 4), **{**HOLITOM_ARGS, **change})


def test_visionzip_merge_rejects_bad_counts():
    features, attention = synthetic_video(2, 6, 4)
    with pytest.raises(ValueError, match="tokens must be <= 6, got 7"):
        visionzip_merge(features, attention, _keys(2, 6), tokens=7, dominant=1)
    with pytest.raises(ValueError, match="dominant must be <= 3, got 4"):
        visionzip_merge(features, attention, _keys(2, 6), tokens=3, dominant=4)


def test_ops_import_neither_config_nor_engine():
    for path in sorted((ROOT / "lmms_holitom" / "ops").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.startswith(("lmms_holitom.config", "lmms_holitom.hf"))]
            assert not bad, f"{path.name} imports {bad}"


# ----------------------------------------------------------------------------------- issue 12
@pytest.mark.parametrize("contextual", [0.0, 0.5])
def test_tiny_retain_ratio_keeps_a_token_per_segment(contextual):
    frame = torch.randn(20, 8, generator=torch.Generator().manual_seed(0))
    features = frame.expand(12, 20, 8).clone()  # one all-static scene
    features[6:] += 3 * torch.randn(20, 8, generator=torch.Generator().manual_seed(1))  # a cut: two scenes
    attention = torch.rand(12, 20)
    cfg = HoliTomConfig(retain_ratio=1e-4, tau=0.8, max_window_size=4, contextual_ratio=contextual)
    out = compress_video(features, attention, cfg)
    assert out.segments == [(0, 3), (4, 5), (6, 9), (10, 11)]
    assert round(20 * out.stats["renormalised_ratio"]) == 0  # the spec's count would be 0 everywhere
    per_segment = [int(((out.frames >= s) & (out.frames <= e)).sum()) for s, e in out.segments]
    assert per_segment == [1, 1, 1, 1]
    assert out.stats["static_tokens"] == 4 and out.num_tokens == 4
    torch.testing.assert_close(out.plan.apply(features), out.tokens)


def test_tiny_retain_ratio_dynamic_frames_keep_one_token_each():
    features, attention = synthetic_video(6, 30, 8, scenes=6, static_fraction=0.0, seed=1)
    out = compress_video(features, attention, HoliTomConfig(retain_ratio=1e-4, tau=0.8))
    assert out.plan.frame_counts == (1,) * 6
