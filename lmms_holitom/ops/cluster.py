"""DPC-kNN cluster centres and the cluster merge (algorithm §4c).

The engine, `dpc_knn_ragged`, clusters a batch of sets of *different* sizes at once (the sets' rows one
after the other, with their sizes), each with its own number of centres and its own k; distances and
scores live in a padded (B, n, n) layout with masks, token rows are never padded or copied.
All static sets of a video (one per segment) are one batch, and so are all frames' contextual sets: no
loop over tokens or clusters; the only loop is one Gram matmul per set (so padding costs no FLOPs).
The public equal-size helpers (`dpc_knn_centres`, `cluster_merge`,
`dpc_knn_merge`) take one set (n, E) or a batch (B, n, E). Distances are fp32.

* ``dist = cdist(x, x) / sqrt(E)``, from one Gram matrix as cdist's own matmul path does, with the
  diagonal exactly 0 (the spec's "k nearest, itself included" means distance 0 to itself).
* density ``rho_i = exp(-mean of the k smallest squared distances of row i)`` (itself included);
* ``delta_i`` = distance to the nearest token of higher density; the densest token gets the largest
  entry of ``dist``. **Deterministic tie rule** (replaces the reference's 1e-6 uniform noise from the
  global RNG, which only exists to make densities a strict order): token j ranks above token i iff
  ``rho_j > rho_i`` or (``rho_j == rho_i`` and ``j < i``). So of two duplicates the lower index is the
  parent of the other (which gets ``delta = 0``), exactly what the noise does with a random order.
* centres: the ``clusters`` largest ``rho * delta``, ties to the lower index (stable sort), returned in
  increasing index order;
* every non-centre token joins the nearest centre (argmin over ``dist``; equal distances go to the
  lower-index centre); a centre with members becomes ``beta * centre + (1 - beta) * mean(members)``
  (``beta_merge=False``: ``mean(centre, members)``), one without members stays as it is.

Over 300 lines on purpose: DPC-kNN's centres, its merge and the ragged-batch engine share their tie rules; apart
they would drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lmms_holitom.ops._checks import check_int, check_ratio

__all__ = [
    "RaggedMerge",
    "cluster_merge",
    "dpc_knn_centres",
    "dpc_knn_merge",
    "dpc_knn_ragged",
    "gather_rows",
    "group_sum",
    "host_tensor",
    "pairwise_distance",
    "ragged_merge",
]


@dataclass(frozen=True)
class RaggedMerge:
    """A ragged cluster merge and its assignment (so the same merge can be applied to aligned tensors).

    Attributes:
        tokens: (C, E) merged tokens in x.dtype, C = sum of clusters, set by set in centre-index order.
        rows: (C,) long rows of x of the centres.
        slot: (T,) long output slot 0..C-1 of every row of x (a centre: its own slot).
        weight: (T,) fp32 weight of every row in its slot's token (the weights of a slot sum to 1).
    """

    tokens: Tensor
    rows: Tensor
    slot: Tensor
    weight: Tensor


# ----------------------------------------------------------------------------------- building blocks
def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``out[b, j] = x[b, index[b, j]]``: x (B, n, E), index (B, m) -> (B, m, E).

    One flat ``index_select`` (an order of magnitude faster than ``torch.gather`` with an expanded index).
    """
    B, n, E = x.shape
    flat = index + (torch.arange(B, device=index.device) * n).unsqueeze(1)
    return x.reshape(B * n, E).index_select(0, flat.flatten()).view(B, index.shape[1], E)


def host_tensor(values: object, device: torch.device) -> Tensor:
    """A long tensor built on the host (Python list / numpy), copied to ``device`` without waiting for
    the device's queued work (``non_blocking``: a pageable host->device copy is staged at once)."""
    return torch.as_tensor(values, dtype=torch.long).to(device, non_blocking=True)


def ragged_index(sizes: list[int], width: int, device: torch.device) -> Tensor:
    """Flat indices ``b * width + j`` for ``j < sizes[b]``, set by set: the valid entries of a padded
    (B, width) layout in compact order. Built on the host (a loop over sets), one copy to the device."""
    parts = [np.arange(s, dtype=np.int64) + b * width for b, s in enumerate(sizes)]
    return host_tensor(np.concatenate(parts) if parts else np.zeros(0, np.int64), device)


def pairwise_distance(x: Tensor, sizes: list[int] | None = None) -> Tensor:
    """``cdist / sqrt(E)`` within each set, fp32, exact zero diagonal.

    Args:
        x: (B, n, E) equally sized sets, or (T, E) rows of a ragged batch with ``sizes`` (set b is the
            next ``sizes[b]`` rows).

    Returns:
        (B, n, n) with n = max(sizes); entries beyond a set's size are meaningless (callers mask them).

    Computed like ``torch.cdist``'s matmul path (``|a|^2 + |b|^2 - 2 a.b`` from a Gram matrix, the squared
    norms read off its diagonal, so the diagonal is exactly 0), without cdist's padded (n, E + 2) copies
    of the input. A ragged batch gets one matmul per set (a loop over sets), so no FLOPs go to padding.
    The Gram matrix is symmetrised, so the matrix is exactly symmetric: structural ties (two mutual
    nearest neighbours have the same density) stay exact ties and are broken by index, not by rounding.
    """
    x32 = x.float()
    if sizes is None:
        gram = torch.bmm(x32, x32.transpose(1, 2))
    else:
        n = max(sizes)
        gram = x32.new_zeros((len(sizes), n, n))
        start = 0
        for b, s in enumerate(sizes):
            rows = x32[start : start + s]
            gram[b, :s, :s] = rows @ rows.T
            start += s
    gram = (gram + gram.transpose(1, 2)) * 0.5  # exactly symmetric: d(i, j) == d(j, i), bit for bit
    sq = gram.diagonal(dim1=-2, dim2=-1)
    dist = (sq.unsqueeze(-1) + sq.unsqueeze(-2)).sub_(gram, alpha=2).clamp_min_(0).sqrt_()
    dist.diagonal(dim1=-2, dim2=-1).zero_()
    return dist.div_(math.sqrt(x.shape[-1]))


def _use_index_add(device: torch.device) -> bool:
    """``index_add_`` is deterministic on the CPU only (CUDA uses float atomics)."""
    return device.type == "cpu"


def group_sum(values: Tensor, group: Tensor, groups: int, weight: Tensor | None = None) -> Tensor:
    """Deterministic weighted sums of rows by group, in fp32.

    Args:
        values: (m, E) rows; group: (m,) long in [0, groups); weight: optional (m,) fp32.

    Returns:
        (groups, E) fp32 with ``out[g] = sum_{j: group[j] = g} weight[j] * values[j]``. On the CPU one
        ``index_add_`` (sequential, deterministic); elsewhere a 0/weight one-hot matrix times the rows
        (a GEMM, deterministic, unlike atomics).
    """
    m, E = values.shape
    device = values.device
    v = values.float()
    if _use_index_add(device):
        if weight is not None:
            v = v * weight.unsqueeze(-1)
        return torch.zeros((groups, E), dtype=torch.float32, device=device).index_add_(0, group, v)
    w = torch.ones(m, dtype=torch.float32, device=device) if weight is None else weight.float()
    onehot = torch.zeros((groups, m), dtype=torch.float32, device=device)
    onehot.scatter_(0, group.unsqueeze(0), w.unsqueeze(0))
    return onehot @ v


def _column(values: list[int], device: torch.device) -> Tensor:
    return host_tensor(values, device).view(-1, 1)


# ----------------------------------------------------------------------------------- the engine
@torch.no_grad()
def _centres(dist: Tensor, valid: Tensor, clusters: list[int], ks: list[int]) -> Tensor:
    """(B, n, n) distances, (B, n) validity -> (B, c_max) increasing local centres, padded with n."""
    n = dist.shape[-1]
    device = dist.device
    k_max, c_max = max(ks), max(clusters)
    knn = torch.topk(dist.masked_fill(~valid.unsqueeze(1), math.inf), k_max, dim=-1, largest=False).values
    if min(ks) == k_max:
        mean_sq = (knn * knn).mean(dim=-1)
    else:  # set b averages its own k_b nearest (the first k_b of the ascending top-k)
        k_col = _column(ks, device)
        use = torch.arange(k_max, device=device).view(1, 1, k_max) < k_col.unsqueeze(-1)
        mean_sq = torch.where(use, knn * knn, 0.0).sum(dim=-1) / k_col
    density = torch.exp(-mean_sq).masked_fill(~valid, -math.inf)  # padding is never "higher"
    idx = torch.arange(n, device=device)
    rho_j, rho_i = density.unsqueeze(1), density.unsqueeze(2)  # [b, i, j]
    higher = (rho_j > rho_i) | ((rho_j == rho_i) & (idx.view(1, 1, n) < idx.view(1, n, 1)))
    pair = valid.unsqueeze(1) & valid.unsqueeze(2)
    dist_max = dist.masked_fill(~pair, 0.0).amax(dim=(-2, -1), keepdim=True)
    delta = torch.where(higher, dist, dist_max).amin(dim=-1)
    score = (density * delta).masked_fill(~valid, -math.inf)
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices[:, :c_max]
    keep = torch.arange(c_max, device=device).view(1, c_max) < _column(clusters, device)
    return torch.sort(torch.where(keep, order, n), dim=-1).values


def _merge(
    x: Tensor,
    sizes: list[int],
    clusters: list[int],
    centres: Tensor,
    dist: Tensor,
    beta: float,
    beta_merge: bool,
) -> RaggedMerge:
    """Merge every non-centre row of each set into its nearest centre.

    Args:
        x: (T, E) rows of the ragged batch; centres: (B, c_max) local, increasing, padded with n.

    Returns:
        `RaggedMerge`: the tokens, the centres' rows in x, and every row's output slot and weight.
    """
    B, n, _ = dist.shape
    c_max = centres.shape[1]
    device = x.device
    total = sum(clusters)
    is_slot = centres < n  # (B, c_max)
    safe = centres.clamp(max=n - 1)
    valid = torch.arange(n, device=device).view(1, n) < _column(sizes, device)
    is_centre = torch.zeros((B, n + 1), dtype=torch.bool, device=device).scatter_(1, centres, True)[:, :n]
    to_centres = torch.gather(dist, 2, safe.unsqueeze(1).expand(B, n, c_max))
    nearest = to_centres.masked_fill(~is_slot.unsqueeze(1), math.inf).argmin(dim=-1)  # ties: lower index
    first_slot = _column([sum(clusters[:b]) for b in range(B)], device)  # output slot of set b's centre 0
    group = torch.where(valid & ~is_centre, nearest + first_slot, total)  # non-members -> a dropped group
    group = group.flatten().index_select(0, ragged_index(sizes, n, device))  # (T,), x's row order
    sums = group_sum(x, group, total + 1)[:total]
    counts = torch.zeros(total + 1, dtype=torch.long, device=device).scatter_add_(0, group, torch.ones_like(group))
    counts = counts[:total].unsqueeze(1)
    first_row = _column([sum(sizes[:b]) for b in range(B)], device)
    rows = (safe + first_row).flatten().index_select(0, ragged_index(clusters, c_max, device))
    merged = x.index_select(0, rows).float()  # the centres, updated in place (no large temporaries)
    if beta_merge:  # beta * centre + (1 - beta) * mean(members); a centre without members stays
        weight = torch.where(counts > 0, beta, 1.0)
        merged.mul_(weight).add_(sums.div_(counts.clamp_min(1)).mul_(1 - weight))
    else:  # mean(centre, members)
        merged.add_(sums).div_(counts + 1)
    slot, row_weight = _assignment(group, rows, counts.squeeze(1), beta, beta_merge)
    return RaggedMerge(merged.to(x.dtype), rows, slot, row_weight)


def _assignment(
    group: Tensor, rows: Tensor, counts: Tensor, beta: float, beta_merge: bool
) -> tuple[Tensor, Tensor]:
    """Every row's output slot and weight in the merge, from `_merge`'s own ``group`` (T,), the centre
    rows (total,) and the member counts (total,): ``token[g] = sum_{slot[j] = g} weight[j] * x[j]``."""
    total = rows.shape[0]
    slot = group.index_copy(0, rows, torch.arange(total, device=group.device))
    members = counts.to(torch.float32)
    if beta_merge:
        centre_w = torch.where(counts > 0, beta, 1.0)
        member_w = (1 - beta) / members.clamp_min(1)
    else:
        centre_w = member_w = 1.0 / (members + 1)
    weight = member_w.index_select(0, slot)
    return slot, weight.index_copy(0, rows, centre_w)


def dpc_knn_ragged(
    x: Tensor,
    sizes: list[int],
    clusters: list[int],
    ks: list[int],
    beta: float,
    beta_merge: bool,
) -> tuple[Tensor, Tensor]:
    """DPC-kNN + cluster merge of a batch of sets of different sizes, all at once (trusted arguments).

    Args:
        x: (T, E) the sets' rows one after the other (set b is the next ``sizes[b]`` rows), T = sum(sizes).
        sizes, clusters, ks: per set, ``1 <= clusters[b] <= sizes[b]``, ``1 <= ks[b] <= sizes[b]``.
        beta, beta_merge: as `cluster_merge`.

    Returns:
        ``(tokens, rows)``: (sum clusters, E) merged tokens in x.dtype, set by set, each set's in
        centre-index order; (sum clusters,) long rows of x of the centres.
    """
    merge = ragged_merge(x, sizes, clusters, ks, beta, beta_merge)
    return merge.tokens, merge.rows


def ragged_merge(
    x: Tensor,
    sizes: list[int],
    clusters: list[int],
    ks: list[int],
    beta: float,
    beta_merge: bool,
) -> RaggedMerge:
    """`dpc_knn_ragged` with the assignment: which output slot every row of x went to, with what weight."""
    device = x.device
    if clusters == sizes:  # every token is a centre: nothing to compute
        every = torch.arange(x.shape[0], device=device)
        return RaggedMerge(x, every, every, torch.ones(x.shape[0], dtype=torch.float32, device=device))
    n = max(sizes)
    valid = torch.arange(n, device=device).view(1, n) < _column(sizes, device)
    dist = pairwise_distance(x, sizes)
    centres = _centres(dist, valid, clusters, ks)
    return _merge(x, sizes, clusters, centres, dist, beta, beta_merge)


# ----------------------------------------------------------------------------------- public helpers
def _as_batch(name: str, x: object) -> tuple[Tensor, bool]:
    if not isinstance(x, Tensor) or x.dim() not in (2, 3) or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating (n, E) or (B, n, E) tensor, got {shape}")
    if x.shape[-1] < 1 or x.shape[-2] < 1 or (x.dim() == 3 and x.shape[0] < 1):
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")
    return (x.unsqueeze(0), True) if x.dim() == 2 else (x, False)


def _check_cluster_args(n: int, clusters: object, k: object) -> tuple[int, int]:
    clusters = check_int("clusters", clusters, minimum=0, maximum=n)
    k = check_int("k", k, minimum=1, maximum=n)
    return clusters, k


def dpc_knn_merge(
    x: Tensor, clusters: int, k: int, beta: float = 0.6, beta_merge: bool = True
) -> tuple[Tensor, Tensor]:
    """DPC-kNN centres and cluster merge of equally sized sets (distances computed once).

    Args:
        x: (n, E) or (B, n, E) tokens (any floating dtype; arithmetic in fp32).
        clusters: number of centres, 0 <= clusters <= n.
        k: neighbours for the density (itself included), 1 <= k <= n.
        beta: weight of a centre against the mean of its members, in [0, 1].
        beta_merge: False -> plain mean of centre and members.

    Returns:
        ``(tokens, centres)``: (…, clusters, E) merged tokens in ``x.dtype``, centre-index order, and
        (…, clusters) long centre indices, increasing.
    """
    xb, single = _as_batch("x", x)
    B, n, E = xb.shape
    clusters, k = _check_cluster_args(n, clusters, k)
    beta = check_ratio("beta", beta, low=0.0, high=1.0, high_open=False)
    if clusters == 0:
        tokens, centres = xb.new_empty((B, 0, E)), torch.empty((B, 0), dtype=torch.long, device=xb.device)
    else:
        flat, rows = dpc_knn_ragged(xb.reshape(B * n, E), [n] * B, [clusters] * B, [k] * B, beta, bool(beta_merge))
        tokens = flat.view(B, clusters, E)
        centres = rows.view(B, clusters) - (torch.arange(B, device=xb.device) * n).unsqueeze(1)
    return (tokens[0], centres[0]) if single else (tokens, centres)


def dpc_knn_centres(x: Tensor, clusters: int, k: int) -> Tensor:
    """DPC-kNN cluster centres (algorithm §4c) of one set (n, E) or equally sized sets (B, n, E).

    Returns:
        (clusters,) or (B, clusters) long indices into the n tokens, increasing.
    """
    xb, single = _as_batch("x", x)
    B, n, _ = xb.shape
    clusters, k = _check_cluster_args(n, clusters, k)
    if clusters in (0, n):
        centres = torch.arange(clusters, device=xb.device).expand(B, clusters)
    else:
        valid = torch.ones((B, n), dtype=torch.bool, device=xb.device)
        centres = _centres(pairwise_distance(xb), valid, [clusters] * B, [k] * B)
    return centres[0] if single else centres


def cluster_merge(
    x: Tensor,
    centres: Tensor,
    beta: float = 0.6,
    beta_merge: bool = True,
    dist: Tensor | None = None,
) -> Tensor:
    """Merge every non-centre token into its nearest centre (algorithm §4c).

    Args:
        x: (n, E) or (B, n, E) tokens.
        centres: (c,) or (B, c) long, strictly increasing indices into the n tokens.
        beta: weight of the centre against the mean of its members, in [0, 1].
        beta_merge: False -> plain mean of centre and members.
        dist: optional (B, n, n) fp32 distances from `pairwise_distance` (recomputed when None).

    Returns:
        (c, E) or (B, c, E) merged tokens in centre order, dtype of ``x`` (arithmetic in fp32).
    """
    xb, single = _as_batch("x", x)
    B, n, E = xb.shape
    cb = centres.unsqueeze(0) if single and isinstance(centres, Tensor) and centres.dim() == 1 else centres
    if not isinstance(cb, Tensor) or cb.dim() != 2 or cb.shape[0] != B or cb.dtype != torch.long:
        shape = tuple(centres.shape) if isinstance(centres, Tensor) else type(centres).__name__
        raise ValueError(f"centres must be a long (c,) or (B, c) tensor matching x, got {shape}")
    cb = cb.to(xb.device)
    if cb.numel():
        lo, hi = int(cb.min()), int(cb.max())
        increasing = bool((cb[:, 1:] > cb[:, :-1]).all()) if cb.shape[1] > 1 else True
        if lo < 0 or hi >= n or not increasing:
            raise ValueError(
                f"centres must be strictly increasing indices in [0, {n}), got shape {tuple(cb.shape)} "
                f"with values in [{lo}, {hi}]"
            )
    beta = check_ratio("beta", beta, low=0.0, high=1.0, high_open=False)
    if dist is not None and tuple(dist.shape) != (B, n, n):
        raise ValueError(f"dist must have shape ({B}, {n}, {n}), got {tuple(dist.shape)}")
    c = cb.shape[1]
    if c == 0:
        out = xb.new_empty((B, 0, E))
    else:
        d = pairwise_distance(xb) if dist is None else dist.float()
        flat = _merge(xb.reshape(B * n, E), [n] * B, [c] * B, cb, d, beta, bool(beta_merge)).tokens
        out = flat.view(B, c, E)
    return out[0] if single else out
