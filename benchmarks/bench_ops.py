"""Benchmark of the tensor layer (`lmms_holitom.ops`) against straightforward loop formulations.

Workload (defaults = LLaVA-OneVision-7B at 32 frames): features (F=32, N=196, E=3584) fp32 with temporal
redundancy (scenes with hard cuts; in each scene ~60 % of the positions are static up to small noise, the
others move), attention from a skewed random distribution. Timed, with warm-up and medians:

* ``compress_video`` (HoliTom, retain 0.10 / tau 0.65 and retain 0.25 / tau 0.80, and with a contextual
  share 0.5) against (a) ``per-segment loops``: a plain PyTorch formulation of the spec with Python loops
  over segments, frames and clusters (normalised feature copies, per-frame top-k, a masked loop per
  cluster), and (b) the test oracle ``tests/reference_loops.py`` (per-token loops; fewer repeats);
* ``frame_similarity`` against ``torch.nn.functional.cosine_similarity``;
* ``MergePlan.apply``: the first setting's plan applied to a second aligned (F, N, E) stream, against a
  loop over output rows;
* ``merge_inner`` (650 visual tokens in a 700-token sequence, ratio 0.5) against the original's sequential
  rule as a Python loop (``loop_merge_inner``).

Usage::

    python benchmarks/bench_ops.py [--device cpu|cuda] [--repeats 15] [--frames 32] [--tokens 196]
                                   [--dim 3584] [--scenes 4] [--static-fraction 0.6] [--threads N]
                                   [--json results.json] [--no-oracle]

Prints a table (median ms, ratio to the vectorised op, whether outputs agree); ``--json`` also writes
the numbers. On CPU the default run takes well under two minutes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as Fn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # reference_loops (importable without pytest)
sys.path.insert(0, str(ROOT))

from reference_loops import loop_compress_video, loop_merge_inner, synthetic_video  # noqa: E402

from lmms_holitom.config import HoliTomConfig  # noqa: E402
from lmms_holitom.core.outer import compress_video  # noqa: E402
from lmms_holitom.ops import frame_similarity, merge_inner  # noqa: E402


# ----------------------------------------------------------------------------------- baseline
def _loop_dpc_merge(x: torch.Tensor, clusters: int, k: int, beta: float, beta_merge: bool):
    """DPC-kNN + merge with a Python loop over clusters (straightforward formulation)."""
    n, E = x.shape
    x32 = x.float()
    dist = torch.cdist(x32, x32) / math.sqrt(E)
    dist.fill_diagonal_(0)
    density = torch.exp(-(torch.topk(dist, k, dim=-1, largest=False).values ** 2).mean(-1))
    idx = torch.arange(n, device=x.device)
    higher = (density[None, :] > density[:, None]) | (
        (density[None, :] == density[:, None]) & (idx[None, :] < idx[:, None])
    )
    delta = torch.where(higher, dist, dist.max()).min(dim=-1).values
    order = torch.sort(density * delta, descending=True, stable=True).indices
    centres = torch.sort(order[:clusters]).values
    is_centre = torch.zeros(n, dtype=torch.bool, device=x.device)
    is_centre[centres] = True
    others = idx[~is_centre]
    assign = dist[others][:, centres].argmin(dim=-1)
    merged = []
    for c in range(clusters):
        members = x32[others[assign == c]]
        centre = x32[centres[c]]
        if members.shape[0] == 0:
            merged.append(centre)
        elif beta_merge:
            merged.append(beta * centre + (1 - beta) * members.mean(0))
        else:
            merged.append(torch.cat([centre[None], members]).mean(0))
    return torch.stack(merged).to(x.dtype), centres


def per_segment_loops(features: torch.Tensor, attention: torch.Tensor, cfg: HoliTomConfig) -> torch.Tensor:
    """HoliTom outer merge as a plain reading of the spec: loops over segments, frames and clusters."""
    F, N, _ = features.shape
    device = features.device
    unit = Fn.normalize(features.float(), dim=-1)
    sim = (unit[:-1] * unit[1:]).sum(-1)
    static = (sim > cfg.tau).int()
    gain = torch.zeros(F, F)
    for s in range(F - 1):
        run = torch.cumprod(static[s:], dim=0).sum(dim=1).float().cpu()
        gain[s, s + 1 :] = run * torch.arange(1, F - s)
    dp, prev = [0.0] * F, [0] * F
    for i in range(F):
        best, first = (dp[i - 1] if i > 0 else 0.0), i
        for w in range(2, min(i + 1, cfg.max_window_size) + 1):
            j = i - w
            value = (dp[j] if j >= 0 else 0.0) + float(gain[j + 1, i])
            if value > best:
                best, first = value, j + 1
        dp[i], prev[i] = best, first
    segments, i = [], F - 1
    while i >= 0:
        segments.append((prev[i], i))
        i = prev[i] - 1
    segments.reverse()
    reduced = int(dp[-1])
    r = min(cfg.retain_ratio / ((F * N - reduced) / (F * N)), 1)
    out = []
    for s, e in segments:
        mask = torch.zeros(N, dtype=torch.bool, device=device) if s == e else (sim[s:e] > cfg.tau).all(dim=0)
        S = int(mask.sum())
        if S:
            clusters = round(S * r)
            if clusters:
                static_feat = features[s : e + 1, mask].mean(0)
                out.append(
                    _loop_dpc_merge(static_feat, clusters, min(cfg.knn_k, clusters), cfg.beta, cfg.beta_merge)[0]
                )
        dyn_pos = torch.nonzero(~mask).squeeze(1)
        budget = math.ceil((N - S) * r)
        dominant = round(budget * (1 - cfg.contextual_ratio))
        contextual = budget - dominant
        for f in range(s, e + 1):
            att = attention[f, dyn_pos]
            top = torch.sort(att, descending=True, stable=True).indices[:dominant]
            keep = torch.zeros(N - S, dtype=torch.bool, device=device)
            keep[top] = True
            out.append(features[f, dyn_pos[keep]])
            if contextual:
                rest = features[f, dyn_pos[~keep]]
                k = min(cfg.knn_k, contextual)
                out.append(_loop_dpc_merge(rest, contextual, k, cfg.beta, cfg.beta_merge)[0])
    return torch.cat(out)


def per_row_apply(plan: Any, x: torch.Tensor) -> torch.Tensor:
    """A merge plan applied one output row at a time (weighted sum of its dense rows)."""
    rows = x.reshape(plan.frames * plan.tokens_per_frame, -1).float()
    bounds = [*plan.offsets.tolist(), plan.target.shape[0]]
    out = [
        (rows[plan.source[a:b]] * plan.weight[a:b, None]).sum(0) for a, b in itertools.pairwise(bounds)
    ]
    return torch.stack(out).to(x.dtype)


# ----------------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _agree(a: torch.Tensor, b: torch.Tensor) -> str:
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    diff = (a.float().cpu() - b.float().cpu()).abs().max().item() if a.numel() else 0.0
    return "yes" if diff <= 1e-4 else f"max diff {diff:.2e}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    torch.set_grad_enabled(False)
    F, N, E = args.frames, args.tokens, args.dim
    features, attention = synthetic_video(
        F, N, E, scenes=args.scenes, static_fraction=args.static_fraction, noise=0.05, seed=0
    )
    features, attention = features.to(device), attention.to(device)
    rows: list[dict[str, Any]] = []

    def add(name: str, ours_ms: float, baseline: str, base_ms: float | None, agree: str) -> None:
        ratio = base_ms / ours_ms if base_ms else None
        rows.append(
            {"op": name, "ms": ours_ms, "baseline": baseline, "baseline_ms": base_ms, "speedup": ratio, "agree": agree}
        )

    configs = {
        "compress_video r=0.10 tau=0.65": HoliTomConfig(retain_ratio=0.10, tau=0.65),
        "compress_video r=0.25 tau=0.80": HoliTomConfig(retain_ratio=0.25, tau=0.80),
        "compress_video r=0.25 D=0.5": HoliTomConfig(retain_ratio=0.25, tau=0.80, contextual_ratio=0.5),
    }
    details: dict[str, Any] = {}
    for name, cfg in configs.items():
        out = compress_video(features, attention, cfg)
        details[name] = {k: out.stats[k] for k in ("segments", "reduced", "static_tokens", "tokens_out")}
        ours = median_ms(lambda cfg=cfg: compress_video(features, attention, cfg), args.repeats, device)
        base_out = per_segment_loops(features, attention, cfg)
        base = median_ms(
            lambda cfg=cfg: per_segment_loops(features, attention, cfg), max(3, args.repeats // 3), device, 1
        )
        add(name, ours, "per-segment loops", base, _agree(out.tokens, base_out))
        if args.oracle and device.type == "cpu" and name.endswith("0.65"):
            t0 = time.perf_counter()
            ref = loop_compress_video(features, attention, cfg)
            oracle_ms = (time.perf_counter() - t0) * 1e3
            add(name, ours, "per-token loops (oracle, 1 run)", oracle_ms, _agree(out.tokens, ref["tokens"]))

    # the plan of the first setting applied to a second aligned stream (e.g. Qwen3-VL's deepstack features)
    plan = compress_video(features, attention, next(iter(configs.values()))).plan
    stream = torch.randn(F, N, E, generator=torch.Generator().manual_seed(2)).to(device)
    ours = median_ms(lambda: plan.apply(stream), args.repeats, device)
    base = median_ms(lambda: per_row_apply(plan, stream), max(3, args.repeats // 3), device, 1)
    add("MergePlan.apply (2nd stream)", ours, "per-output-row loop", base,
        _agree(plan.apply(stream), per_row_apply(plan, stream)))

    sim = frame_similarity(features)
    ours = median_ms(lambda: frame_similarity(features), args.repeats, device)
    base = median_ms(
        lambda: Fn.cosine_similarity(features[:-1], features[1:], dim=-1), max(3, args.repeats // 3), device
    )
    add(
        "frame_similarity",
        ours,
        "F.cosine_similarity",
        base,
        _agree(sim, Fn.cosine_similarity(features[:-1], features[1:], dim=-1)),
    )

    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(700, E, generator=gen).to(device)
    att = torch.rand(650, generator=gen).to(device)
    for fidelity in ("reference", "clean"):
        out_h, _ = merge_inner(hidden, att, 30, 650, 0.5, fidelity=fidelity)
        ours = median_ms(lambda f=fidelity: merge_inner(hidden, att, 30, 650, 0.5, fidelity=f), args.repeats, device)
        ref_h, _ = loop_merge_inner(hidden, att, 30, 650, 0.5, fidelity)
        base = median_ms(
            lambda f=fidelity: loop_merge_inner(hidden, att, 30, 650, 0.5, f), max(3, args.repeats // 3), device
        )
        add(f"merge_inner V=650/700 {fidelity}", ours, "sequential Python loop", base, _agree(out_h, ref_h))

    return {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "workload": {
            "frames": F,
            "tokens": N,
            "dim": E,
            "dtype": "float32",
            "scenes": args.scenes,
            "static_fraction": args.static_fraction,
        },
        "repeats": args.repeats,
        "details": details,
        "rows": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    w = result["workload"]
    print(
        f"device {result['device']}, torch {result['torch']}, {result['threads']} threads; "
        f"F={w['frames']} N={w['tokens']} E={w['dim']} {w['dtype']}, {w['scenes']} scenes, "
        f"{w['static_fraction']:.0%} static; repeats {result['repeats']}"
    )
    head = f"{'op':34} {'ours ms':>9}  {'baseline':32} {'base ms':>9} {'speedup':>8}  agree"
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        base = f"{r['baseline_ms']:9.2f}" if r["baseline_ms"] is not None else f"{'-':>9}"
        speed = f"{r['speedup']:7.1f}x" if r["speedup"] else f"{'-':>8}"
        print(f"{r['op']:34} {r['ms']:9.2f}  {r['baseline']:32} {base} {speed}  {r['agree']}")
    for name, d in result["details"].items():
        print(f"  {name}: {d}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--tokens", type=int, default=196)
    p.add_argument("--dim", type=int, default=3584)
    p.add_argument("--scenes", type=int, default=4, help="hard cuts split the video into this many scenes")
    p.add_argument("--static-fraction", type=float, default=0.6, help="share of static positions per scene")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--no-oracle", dest="oracle", action="store_false", help="skip the slow per-token oracle")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
