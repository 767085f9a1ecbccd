"""Straightforward loop formulations of the HoliTom spec (test oracles and benchmark baselines).

Written from docs/algorithm.md directly, one frame / segment / token at a time, sharing no code
with `lmms_holitom.ops`. Importable without pytest (the benchmark uses it). Only the distance matrix of
DPC-kNN uses ``torch.cdist`` (the spec's own formula) and the inner merge's cosine matrix a matmul (as the
original code does); everything else is Python loops over frames, positions and tokens.

Tie rules are the project's deterministic ones: attention / score ties to the lower index; a density tie
between tokens j and i counts j as denser when j < i; nearest-centre / most-similar ties to the lower index.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

__all__ = [
    "loop_compress_video",
    "loop_dpc_knn",
    "loop_exact_budget",
    "loop_frame_similarity",
    "loop_merge_inner",
    "loop_segment_video",
    "loop_visionzip",
    "synthetic_video",
]


# ------------------------------------------------------------------------------------------- §2
def loop_frame_similarity(features: Tensor) -> Tensor:
    """(F, N, E) -> (F-1, N) fp32 cosine, one frame pair at a time."""
    F, N, _ = features.shape
    sim = torch.zeros((max(F - 1, 0), N), dtype=torch.float32)
    for t in range(F - 1):
        a, b = features[t].float().cpu(), features[t + 1].float().cpu()
        sim[t] = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-8)
    return sim


def loop_segment_video(similarity: Tensor, tau: float, max_window_size: int) -> tuple[list, int]:
    """Gain table by explicit loops over windows and positions, DP exactly as algorithm §2.3."""
    rows = similarity.tolist()
    tau = float(torch.tensor(tau, dtype=similarity.dtype))  # compared in sim's precision (algorithm §2.2)
    F = len(rows) + 1
    N = similarity.shape[1]
    gain = [[0] * F for _ in range(F)]
    for s in range(F):
        for e in range(s + 1, F):
            static = sum(1 for n in range(N) if all(rows[t][n] > tau for t in range(s, e)))
            gain[s][e] = static * (e - s)
    dp = [0] * F
    prev = [0] * F
    for i in range(F):
        best = dp[i - 1] if i > 0 else 0
        best_start = i
        for w in range(2, min(i + 1, max_window_size) + 1):
            j = i - w
            value = (dp[j] if j >= 0 else 0) + gain[j + 1][i]
            if value > best:
                best, best_start = value, j + 1
        dp[i] = best
        prev[i] = best_start
    segments = []
    i = F - 1
    while i >= 0:
        segments.append((prev[i], i))
        i = prev[i] - 1
    return segments[::-1], dp[F - 1]


# ------------------------------------------------------------------------------------------- §4c
def loop_dpc_knn(
    x: Tensor, clusters: int, k: int, beta: float, beta_merge: bool, values: Tensor | None = None
) -> tuple[list, Tensor]:
    """DPC-kNN centres + cluster merge of one set x (n, E); returns (centres, merged (clusters, E') fp32).

    The centres and the assignment are decided on x; the merged values are those of ``values`` (n, E'),
    x itself by default (the same merge applied to an aligned second stream)."""
    n, E = x.shape
    x32 = x.float()
    dist = torch.cdist(x32.unsqueeze(0), x32.unsqueeze(0))[0] / math.sqrt(E)
    for i in range(n):
        dist[i, i] = 0.0
        for j in range(i):  # a distance matrix is symmetric (cdist's matmul path is not, bit for bit)
            dist[i, j] = dist[j, i]
    density = []
    for i in range(n):
        nearest = torch.topk(dist[i], k, largest=False).values
        density.append(float(torch.exp(-(nearest * nearest).mean())))
    dmax = float(dist.max())
    score = []
    for i in range(n):
        delta = dmax
        for j in range(n):
            if density[j] > density[i] or (density[j] == density[i] and j < i):
                delta = min(delta, float(dist[i, j]))
        score.append(float(torch.tensor(density[i], dtype=torch.float32) * torch.tensor(delta)))
    ranked = sorted(range(n), key=lambda i: (-score[i], i))
    centres = sorted(ranked[:clusters])
    members: dict[int, list[int]] = {c: [] for c in centres}
    for i in range(n):
        if i in members:
            continue
        best = min(centres, key=lambda c: (float(dist[i, c]), c))
        members[best].append(i)
    v32 = x32 if values is None else values.float()
    merged = []
    for c in centres:
        if not members[c]:
            merged.append(v32[c])
        elif beta_merge:
            merged.append(beta * v32[c] + (1 - beta) * torch.stack([v32[j] for j in members[c]]).mean(0))
        else:
            merged.append(torch.stack([v32[c]] + [v32[j] for j in members[c]]).mean(0))
    out = torch.stack(merged) if merged else torch.zeros((0, v32.shape[1]))
    return centres, out


# ------------------------------------------------------------------------------------------- §3-§5
def loop_compress_video(features: Tensor, attention: Tensor, config, stream: Tensor | None = None) -> dict:
    """HoliTom outer merge, per segment / frame / token. Returns tokens, positions, frames, segments...

    Every decision is taken on ``features``; the tokens are made of ``stream`` (F, N, E'), an aligned
    second stream, when given (the features themselves by default), in its dtype."""
    F, N, _ = features.shape
    values = features if stream is None else stream
    sim = loop_frame_similarity(features)
    segments, reduced = loop_segment_video(sim, config.tau, config.max_window_size)
    total = F * N
    r = min(config.retain_ratio / ((total - reduced) / total), 1)
    rows = sim.tolist()
    attn = attention.float().tolist()
    tokens: list[Tensor] = []
    positions: list[int] = []
    frames: list[int] = []
    kinds: list[int] = []  # 0 static, 1 dominant, 2 contextual
    represented: set[tuple[int, int]] = set()  # dense tokens feeding an output (weights non-zero for 0 < beta < 1)
    static_total = 0
    for s, e in segments:
        if s == e:
            static_pos = []
        else:
            static_pos = [n for n in range(N) if all(rows[t][n] > config.tau for t in range(s, e))]
        static_set = set(static_pos)
        dynamic_pos = [n for n in range(N) if n not in static_set]
        if static_pos:
            static_feat = torch.stack([features[s : e + 1, n].mean(0) for n in static_pos])
            static_val = None
            if stream is not None:
                static_val = torch.stack([stream[s : e + 1, n].float().mean(0) for n in static_pos])
            clusters = round(len(static_pos) * r)
            if not dynamic_pos:  # the project's rule: an all-static segment keeps at least one token
                clusters = max(1, clusters)
            if clusters > 0:
                centres, merged = loop_dpc_knn(
                    static_feat, clusters, min(config.knn_k, clusters), config.beta, config.beta_merge, static_val
                )
                for c, tok in zip(centres, merged):
                    tokens.append(tok.to(values.dtype))
                    positions.append(static_pos[c])
                    frames.append(s)
                    kinds.append(0)
                represented.update((f, n) for f in range(s, e + 1) for n in static_pos)
                static_total += clusters
        for f in range(s, e + 1):
            L = len(dynamic_pos)
            budget = math.ceil(L * r)
            dominant = round(budget * (1 - config.contextual_ratio))
            contextual = budget - dominant
            ranked = sorted(dynamic_pos, key=lambda n: (-attn[f][n], n))
            for n in sorted(ranked[:dominant]):
                tokens.append(values[f, n])
                positions.append(n)
                frames.append(f)
                kinds.append(1)
                represented.add((f, n))
            if contextual > 0:
                rest = sorted(ranked[dominant:])
                x = torch.stack([features[f, n] for n in rest])
                v = None if stream is None else torch.stack([stream[f, n] for n in rest])
                centres, merged = loop_dpc_knn(
                    x, contextual, min(config.knn_k, contextual), config.beta, config.beta_merge, v
                )
                for c, tok in zip(centres, merged):
                    tokens.append(tok.to(values.dtype))
                    positions.append(rest[c])
                    frames.append(f)
                    kinds.append(2)
                represented.update((f, n) for n in rest)
    return {
        "tokens": torch.stack(tokens) if tokens else torch.zeros((0, values.shape[2]), dtype=values.dtype),
        "positions": positions,
        "frames": frames,
        "segments": segments,
        "reduced": reduced,
        "r": r,
        "static_tokens": static_total,
        "kinds": kinds,
        "represented": represented,
    }


# ------------------------------------------------------------------------------------------- §5c
def loop_exact_budget(features: Tensor, attention: Tensor, config) -> dict:
    """HoliTom's outer merge reconciled to ``F · ceil(retain_ratio · N)`` tokens (algorithm §5c), one output /
    dense token at a time, on `loop_compress_video`'s result (whose ``represented`` needs 0 < beta < 1 or
    ``beta_merge`` false). Returns tokens, positions, frames and kinds (3: restored) of the reconciled merge."""
    F, N, _ = features.shape
    ref = loop_compress_video(features, attention, config)
    count = F * math.ceil(config.retain_ratio * N)
    attn = attention.float().tolist()
    outputs = [{"token": t, "frame": f, "position": n, "kind": k}
               for t, f, n, k in zip(ref["tokens"], ref["frames"], ref["positions"], ref["kinds"])]
    if len(outputs) > count:  # keep each segment's best, then the best others: static first, then saliency
        segment_of = {f: i for i, (s, e) in enumerate(ref["segments"]) for f in range(s, e + 1)}

        def rank(i: int) -> tuple:
            o = outputs[i]
            return (o["kind"] != 0, -attn[o["frame"]][o["position"]], i)

        best: dict[int, int] = {}
        for i, o in enumerate(outputs):
            seg = segment_of[o["frame"]]
            if seg not in best or rank(i) < rank(best[seg]):
                best[seg] = i
        protected = set(best.values())
        chosen = set(sorted(range(len(outputs)), key=lambda i: (i not in protected, rank(i)))[:count])
        outputs = [o for i, o in enumerate(outputs) if i in chosen]
    elif len(outputs) < count:  # restore: unrepresented first, then by saliency; after their frame's outputs
        taken = {(o["frame"], o["position"]) for o in outputs}
        free = [(f, n) for f in range(F) for n in range(N) if (f, n) not in taken]
        free.sort(key=lambda fn: (fn in ref["represented"], -attn[fn[0]][fn[1]], fn[0] * N + fn[1]))
        restored = sorted(free[: count - len(outputs)])
        merged = []
        for f in range(F):
            merged += [o for o in outputs if o["frame"] == f]
            merged += [{"token": features[g, n], "frame": g, "position": n, "kind": 3} for g, n in restored if g == f]
        outputs = merged
    return {
        "tokens": torch.stack([o["token"] for o in outputs]),
        "positions": [o["position"] for o in outputs],
        "frames": [o["frame"] for o in outputs],
        "kinds": [o["kind"] for o in outputs],
        "segments": ref["segments"],
        "count": count,
    }


# ------------------------------------------------------------------------------------------- §7
def loop_visionzip(
    features: Tensor, attention: Tensor, keys: Tensor, tokens: int, dominant: int, stream: Tensor | None = None
) -> dict:
    """VisionZip video adaptation, one frame at a time (tokens made of ``stream`` when given)."""
    features = features if stream is None else stream  # decisions use attention and keys only
    F, N, E = features.shape
    contextual = tokens - dominant
    out: list[Tensor] = []
    positions: list[int] = []
    attn = attention.float().tolist()
    for f in range(F):
        ranked = sorted(range(N), key=lambda n: (-attn[f][n], n))
        dom = sorted(ranked[:dominant])
        rest = sorted(ranked[dominant:])
        for n in dom:
            out.append(features[f, n].float())
            positions.append(n)
        if contextual == 0:
            continue
        step = max(1, len(rest) // contextual)
        target_idx = list(range(0, len(rest), step))[:contextual]
        targets = [rest[i] for i in target_idx]
        others = [rest[i] for i in range(len(rest)) if i not in set(target_idx)]
        groups: dict[int, list[int]] = {t: [] for t in targets}
        for o in others:
            ko = keys[f, o].float()
            best, best_sim = None, -math.inf
            for t in targets:  # strict > keeps the lower-index target on ties
                kt = keys[f, t].float()
                s = float((ko / ko.norm().clamp_min(1e-12)) @ (kt / kt.norm().clamp_min(1e-12)))
                if s > best_sim:
                    best, best_sim = t, s
            groups[best].append(o)
        for t in targets:
            mean = torch.stack([features[f, o].float() for o in groups[t]]).mean(0) if groups[t] else torch.zeros(E)
            out.append(features[f, t].float() + mean)
            positions.append(t)
    return {"tokens": torch.stack(out).to(features.dtype), "positions": positions}


# ------------------------------------------------------------------------------------------- §6
def loop_merge_inner(
    hidden: Tensor,
    attention: Tensor,
    start: int,
    length: int,
    ratio: float,
    fidelity: str = "reference",
    mode: str = "merge",
    values: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The original's sequential rule ``h[t] = (h[t] + h[j]) / 2`` over j increasing (or mean / drop).

    Decided on ``hidden``; the rows merged are those of ``values`` (L, E'), an aligned tensor, when given."""
    L = hidden.shape[0]
    v = hidden if values is None else values
    keep_n = round(length * (1 - ratio))
    att = attention.float().tolist()
    ranked = sorted(range(length), key=lambda i: (-att[i], i))
    kept = sorted(ranked[:keep_n])
    merged = sorted(ranked[keep_n:])
    h = v.clone()
    if mode == "merge" and kept and merged:
        run = hidden[start : start + length].float()
        unit = run / run.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        cos = unit[merged] @ unit[kept].T  # (len(merged), len(kept)), computed once
        target = [kept[int(torch.argmax(cos[i]))] for i in range(len(merged))]
        if fidelity == "reference":
            for i, j in enumerate(merged):
                t = start + target[i]
                h[t] = (h[t] + h[start + j]) / 2
        else:
            groups: dict[int, list[int]] = {t: [] for t in kept}
            for i, j in enumerate(merged):
                groups[target[i]].append(j)
            for t, js in groups.items():
                if js:
                    rows = [v[start + t].float()] + [v[start + j].float() for j in js]
                    h[start + t] = torch.stack(rows).mean(0).to(v.dtype)
    keep = list(range(start)) + [start + t for t in kept] + list(range(start + length, L))
    keep_t = torch.tensor(keep, dtype=torch.long)
    return h[keep_t], keep_t


# ------------------------------------------------------------------------------------------- data
def synthetic_video(
    frames: int,
    tokens: int,
    dim: int,
    *,
    scenes: int = 3,
    static_fraction: float = 0.6,
    noise: float = 0.05,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """A video with temporal redundancy: ``scenes`` scenes (hard cuts between them); in each scene a
    random subset of positions is static (the scene's base vector + small noise, cosine ~ 1) and the
    others move (a fresh random vector every frame, cosine ~ 0). Returns (features (F, N, E), attention
    (F, N), positive, summing to 1 per frame)."""
    gen = torch.Generator().manual_seed(seed)
    scenes = max(1, min(scenes, frames))
    cuts = torch.linspace(0, frames, scenes + 1).round().long().tolist()
    features = torch.empty((frames, tokens, dim))
    for a, b in itertools.pairwise(cuts):
        base = torch.randn((tokens, dim), generator=gen)
        static = torch.rand(tokens, generator=gen) < static_fraction
        for f in range(a, b):
            moving = torch.randn((tokens, dim), generator=gen)
            jitter = noise * torch.randn((tokens, dim), generator=gen)
            features[f] = torch.where(static.unsqueeze(1), base + jitter, moving)
    attention = torch.rand((frames, tokens), generator=gen) ** 4
    attention = attention / attention.sum(dim=1, keepdim=True)
    return features.to(dtype), attention
