"""CUDA parity of the tensor layer: `compress_video` and `merge_inner` on the GPU equal the CPU, fp32 and bf16.

The parity tests are skipped without CUDA (they run in ``benchmarks/gpu_check.sh`` on a GPU machine). The
discrete decisions (temporal segments, static masks, attention top-k, DPC-kNN centres, cosine assignment) must be
identical on both devices, the merged values equal to rounding. That is only a fair demand on inputs that are
far from ties, so the inputs are built with clear structure (static positions at cosine ~1, moving ones at
cosine ~0, distinct attention values, clustered static content), and one CPU test — which runs everywhere —
checks the premise: a relative perturbation of 3e-6 (larger than the CPU/GPU rounding differences of fp32
reductions) changes no decision on these inputs.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.outer import compress_video
from lmms_holitom.ops import merge_inner, merge_inner_plan

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (run benchmarks/gpu_check.sh on a GPU machine)")

CONFIGS = {
    "holitom_25": HoliTomConfig(method="holitom", retain_ratio=0.25, tau=0.8),
    "holitom_10": HoliTomConfig(method="holitom", retain_ratio=0.10, tau=0.65),
    "wo_m_contextual": HoliTomConfig(method="holitom_wo_m", retain_ratio=0.15, tau=0.8, contextual_ratio=0.3),
    "clean_no_beta": HoliTomConfig(method="holitom", retain_ratio=0.20, tau=0.8, fidelity="clean", beta_merge=False),
    "visionzip_25": HoliTomConfig(method="visionzip", retain_ratio=0.25),
    "dense": HoliTomConfig(method="dense"),
}
#: (rtol, atol) of merged values against the CPU result of the same dtype.
TOLERANCES = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (1.6e-2, 1e-2)}


def make_video(frames: int = 8, tokens: int = 196, dim: int = 64, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """features (F, N, E) fp32, attention (F, N) fp32 (distinct values, rows sum to 1), keys (F, N, 16).

    Three scenes with hard cuts; in each, 60 % of positions are static (clustered content: six centres of
    different spreads, plus 0.02 jitter per frame) and the rest move (a fresh random vector every frame).
    """
    gen = torch.Generator().manual_seed(seed)
    cuts = torch.linspace(0, frames, 4).round().long().tolist()
    features = torch.empty(frames, tokens, dim)
    spread = torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])
    for a, b in itertools.pairwise(cuts):
        centres = 2.0 * torch.randn(6, dim, generator=gen)
        which = torch.randint(0, 6, (tokens,), generator=gen)
        base = centres[which] + spread[which, None] * torch.randn(tokens, dim, generator=gen)
        static = torch.rand(tokens, generator=gen) < 0.6
        for f in range(a, b):
            moving = 2.0 * torch.randn(tokens, dim, generator=gen)
            jitter = 0.02 * torch.randn(tokens, dim, generator=gen)
            features[f] = torch.where(static[:, None], base + jitter, moving)
    attention = torch.randperm(frames * tokens, generator=gen).float().reshape(frames, tokens) + 1.0
    attention = attention / attention.sum(dim=1, keepdim=True)
    keys = torch.randn(frames, tokens, 16, generator=gen)
    return features, attention, keys


def make_sequence(length: int = 320, dim: int = 64, start: int = 40, run: int = 200, seed: int = 0):
    """hidden (L, E) fp32 with clustered visual tokens in [start, start + run), attention (run,) distinct."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(length, dim, generator=gen)
    centres = 3.0 * torch.randn(12, dim, generator=gen)
    which = torch.randint(0, 12, (run,), generator=gen)
    hidden[start:start + run] = centres[which] + 0.5 * torch.randn(run, dim, generator=gen)
    attention = torch.randperm(run, generator=gen).float() + 1.0
    return hidden, attention / attention.sum(), start, run


def _same_structure(a, b) -> bool:
    return (a.segments == b.segments and torch.equal(a.positions.cpu(), b.positions.cpu())
            and torch.equal(a.frames.cpu(), b.frames.cpu()))


# ---------------------------------------------------------------------------------------------- premise (CPU)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_parity_inputs_are_far_from_ties(name: str) -> None:
    """A 3e-6 relative perturbation changes no discrete decision: CPU/GPU rounding cannot either."""
    cfg = CONFIGS[name]
    features, attention, keys = make_video()
    ref = compress_video(features, attention, cfg, keys=keys)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        f = features * (1 + 3e-6 * torch.randn(features.shape, generator=gen))
        k = keys * (1 + 3e-6 * torch.randn(keys.shape, generator=gen))
        assert _same_structure(ref, compress_video(f, attention, cfg, keys=k))
    hidden, att, start, run = make_sequence()
    _, keep = merge_inner(hidden, att, start, run, 0.5)
    for _ in range(3):
        h = hidden * (1 + 3e-6 * torch.randn(hidden.shape, generator=gen))
        assert torch.equal(merge_inner(h, att, start, run, 0.5)[1], keep)


# ---------------------------------------------------------------------------------------------- CUDA parity
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_compress_video_cuda_matches_cpu(name: str, dtype: torch.dtype) -> None:
    cfg = CONFIGS[name]
    features, attention, keys = make_video()
    features, keys = features.to(dtype), keys.to(dtype)
    cpu = compress_video(features, attention, cfg, keys=keys)
    gpu = compress_video(features.cuda(), attention.cuda(), cfg, keys=keys.cuda())
    assert gpu.tokens.device.type == "cuda" and gpu.tokens.dtype == dtype
    assert gpu.segments == cpu.segments
    assert gpu.num_tokens == cpu.num_tokens
    assert torch.equal(gpu.positions.cpu(), cpu.positions)
    assert torch.equal(gpu.frames.cpu(), cpu.frames)
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(gpu.tokens.cpu().float(), cpu.tokens.float(), rtol=rtol, atol=atol)
    for key in ("tokens_out", "segments", "static_tokens", "reduced"):
        if key in cpu.stats:
            assert gpu.stats[key] == cpu.stats[key], key


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("fidelity", "mode"), [("reference", "merge"), ("clean", "merge"), ("reference", "drop")])
def test_merge_inner_cuda_matches_cpu(fidelity: str, mode: str, dtype: torch.dtype) -> None:
    hidden, attention, start, run = make_sequence()
    hidden = hidden.to(dtype)
    out_cpu, keep_cpu = merge_inner(hidden, attention, start, run, 0.5, fidelity=fidelity, mode=mode)
    out_gpu, keep_gpu = merge_inner(hidden.cuda(), attention.cuda(), start, run, 0.5, fidelity=fidelity, mode=mode)
    assert out_gpu.device.type == "cuda" and out_gpu.dtype == dtype
    assert torch.equal(keep_gpu.cpu(), keep_cpu)
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(out_gpu.cpu().float(), out_cpu.float(), rtol=rtol, atol=atol)


@needs_cuda
def test_compress_video_cuda_large_video_matches_cpu() -> None:
    """The paper's geometry (32 frames × 196 tokens) with a wide embedding, fp32."""
    features, attention, _ = make_video(frames=32, tokens=196, dim=256, seed=3)
    cfg = CONFIGS["holitom_10"]
    cpu = compress_video(features, attention, cfg)
    gpu = compress_video(features.cuda(), attention.cuda(), cfg)
    assert gpu.segments == cpu.segments
    assert torch.equal(gpu.positions.cpu(), cpu.positions)
    torch.testing.assert_close(gpu.tokens.cpu(), cpu.tokens, rtol=1e-5, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", ["holitom_25", "wo_m_contextual", "clean_no_beta", "visionzip_25"])
def test_merge_plan_cuda_matches_cpu_and_is_deterministic(name: str, dtype: torch.dtype) -> None:
    cfg = CONFIGS[name]
    features, attention, keys = make_video()
    features, keys = features.to(dtype), keys.to(dtype)
    stream = torch.randn(features.shape[0], features.shape[1], 40, generator=torch.Generator().manual_seed(4)).to(dtype)
    cpu = compress_video(features, attention, cfg, keys=keys).plan
    gpu = compress_video(features.cuda(), attention.cuda(), cfg, keys=keys.cuda()).plan
    for field in ("target", "source", "offsets", "origin_frame", "origin_position"):
        assert torch.equal(getattr(gpu, field).cpu(), getattr(cpu, field)), field
    torch.testing.assert_close(gpu.weight.cpu(), cpu.weight, rtol=1e-6, atol=0)
    assert gpu.frame_counts == cpu.frame_counts
    first, again = gpu.apply(stream.cuda()), gpu.apply(stream.cuda())
    assert torch.equal(first, again)  # one bag per row, summed in order: no atomics
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(first.cpu().float(), cpu.apply(stream).float(), rtol=rtol, atol=atol)


@needs_cuda
@pytest.mark.parametrize("fidelity", ["reference", "clean"])
def test_inner_plan_cuda_matches_the_merge(fidelity: str) -> None:
    hidden, attention, start, run = make_sequence()
    out, _, plan = merge_inner_plan(hidden.cuda(), attention.cuda(), start, run, 0.5, fidelity=fidelity)
    applied = plan.apply(hidden.cuda())
    assert torch.equal(applied, plan.apply(hidden.cuda()))  # deterministic (no atomics)
    torch.testing.assert_close(applied, out, rtol=1e-5, atol=1e-5)
