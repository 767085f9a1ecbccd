"""DPC-kNN cluster centres and the cluster merge (spec §4c).

All functions take one set ``x`` of shape (n, E) or a batch of equally sized sets (B, n, E) and work on
the batch at once (no loop over tokens, clusters or batch entries). Distances are fp32.

* ``dist = cdist(x, x) / sqrt(E)`` with the diagonal set to exactly 0 (cdist's matmul path leaves
  rounding noise there; the spec's "k nearest, itself included" means distance 0 to itself).
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
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lmms_holitom.ops._checks import check_int, check_ratio

__all__ = ["cluster_merge", "dpc_knn_centres", "dpc_knn_merge", "group_sum", "pairwise_distance"]


def _as_batch(name: str, x: object) -> tuple[Tensor, bool]:
    if not isinstance(x, Tensor) or x.dim() not in (2, 3) or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating (n, E) or (B, n, E) tensor, got {shape}")
    if x.shape[-1] < 1:
        raise ValueError(f"{name} must have E >= 1, got shape {tuple(x.shape)}")
    return (x.unsqueeze(0), True) if x.dim() == 2 else (x, False)


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``out[b, j] = x[b, index[b, j]]``: x (B, n, E), index (B, m) -> (B, m, E).

    One flat ``index_select`` (an order of magnitude faster than ``torch.gather`` with an expanded index).
    """
    B, n, E = x.shape
    flat = index + (torch.arange(B, device=index.device) * n).unsqueeze(1)
    return x.reshape(B * n, E).index_select(0, flat.flatten()).view(B, index.shape[1], E)


def pairwise_distance(x: Tensor) -> Tensor:
    """``cdist(x, x) / sqrt(E)`` in fp32 with an exact zero diagonal. x (B, n, E) -> (B, n, n)."""
    x32 = x.float()
    dist = torch.cdist(x32, x32) / math.sqrt(x.shape[-1])
    dist.diagonal(dim1=-2, dim2=-1).zero_()
    return dist


def _centres_from_distance(dist: Tensor, clusters: int, k: int) -> Tensor:
    """(B, n, n) fp32 distances -> (B, clusters) centre indices, increasing."""
    n = dist.shape[-1]
    knn = torch.topk(dist, k, dim=-1, largest=False).values
    density = torch.exp(-(knn * knn).mean(dim=-1))  # (B, n)
    idx = torch.arange(n, device=dist.device)
    rho_j, rho_i = density.unsqueeze(1), density.unsqueeze(2)  # [b, i, j]
    higher = (rho_j > rho_i) | ((rho_j == rho_i) & (idx.view(1, 1, n) < idx.view(1, n, 1)))
    dist_max = dist.amax(dim=(-2, -1), keepdim=True)
    delta = torch.where(higher, dist, dist_max).amin(dim=-1)
    score = density * delta
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices[:, :clusters]
    return torch.sort(order, dim=-1).values


def _check_cluster_args(n: int, clusters: object, k: object) -> tuple[int, int]:
    clusters = check_int("clusters", clusters, minimum=0, maximum=n)
    k = check_int("k", k, minimum=1, maximum=max(n, 1))
    return clusters, k


@torch.no_grad()
def dpc_knn_centres(x: Tensor, clusters: int, k: int) -> Tensor:
    """DPC-kNN cluster centres (spec §4c).

    Args:
        x: (n, E) or (B, n, E) tokens (any floating dtype; distances in fp32).
        clusters: number of centres, 0 <= clusters <= n.
        k: neighbours for the density (itself included), 1 <= k <= n.

    Returns:
        (clusters,) or (B, clusters) long indices into the n tokens, increasing.
    """
    xb, single = _as_batch("x", x)
    clusters, k = _check_cluster_args(xb.shape[1], clusters, k)
    centres = _select(xb, clusters, k)[0]
    return centres[0] if single else centres


def _select(xb: Tensor, clusters: int, k: int) -> tuple[Tensor, Tensor | None]:
    B, n, _ = xb.shape
    if clusters == n:  # every token is a centre: no distances needed
        idx = torch.arange(n, device=xb.device).expand(B, n).contiguous()
        return idx, None
    if clusters == 0:
        return torch.empty((B, 0), dtype=torch.long, device=xb.device), None
    dist = pairwise_distance(xb)
    return _centres_from_distance(dist, clusters, k), dist


def _use_index_add(device: torch.device) -> bool:
    """``index_add_`` is deterministic on the CPU only (CUDA uses float atomics)."""
    return device.type == "cpu"


def group_sum(values: Tensor, group: Tensor, groups: int, weight: Tensor | None = None) -> Tensor:
    """Deterministic weighted sums of rows by group, in fp32.

    Args:
        values: (B, m, E) rows; group: (B, m) long in [0, groups); weight: optional (B, m) fp32.

    Returns:
        (B, groups, E) fp32 with ``out[b, g] = sum_{j: group[b, j] = g} weight[b, j] * values[b, j]``.
        On the CPU one ``index_add_`` (sequential, deterministic); elsewhere a 0/weight one-hot matrix
        times the rows (a GEMM, deterministic, unlike atomics).
    """
    B, m, E = values.shape
    device = values.device
    v = values.float()
    if _use_index_add(device):
        if weight is not None:
            v = v * weight.unsqueeze(-1)
        flat = (group + (torch.arange(B, device=device) * groups).unsqueeze(1)).flatten()
        out = torch.zeros((B * groups, E), dtype=torch.float32, device=device)
        return out.index_add_(0, flat, v.reshape(B * m, E)).view(B, groups, E)
    w = torch.ones((B, m), dtype=torch.float32, device=device) if weight is None else weight.float()
    onehot = torch.zeros((B, groups, m), dtype=torch.float32, device=device)
    onehot.scatter_(1, group.unsqueeze(1), w.unsqueeze(1))
    return torch.bmm(onehot, v)


def _merge(xb: Tensor, centres: Tensor, dist: Tensor | None, beta: float, beta_merge: bool) -> Tensor:
    """Batched cluster merge; xb (B, n, E), centres (B, c) increasing -> (B, c, E) in xb.dtype."""
    B, n, _ = xb.shape
    c = centres.shape[1]
    device = xb.device
    centre_x = gather_rows(xb, centres)
    if c == n or c == 0:
        return centre_x
    if dist is None:
        dist = pairwise_distance(xb)
    is_centre = torch.zeros((B, n), dtype=torch.uint8, device=device).scatter_(1, centres, 1)
    members = torch.argsort(is_centre, dim=1, stable=True)[:, : n - c]  # (B, n-c) increasing
    to_centres = torch.gather(gather_rows(dist, members), 2, centres.unsqueeze(1).expand(B, n - c, c))
    assign = to_centres.argmin(dim=-1)  # (B, n-c): nearest centre, ties to the lower index
    member_x = gather_rows(xb, members)
    sums = group_sum(member_x, assign, c)
    counts = torch.zeros((B, c), dtype=torch.long, device=device)
    counts = counts.scatter_add_(1, assign, torch.ones_like(assign)).unsqueeze(-1)  # no host sync
    centre32 = centre_x.float()
    if beta_merge:
        merged = beta * centre32 + (1 - beta) * (sums / counts.clamp_min(1))
    else:
        merged = (centre32 + sums) / (counts + 1)
    return torch.where(counts > 0, merged, centre32).to(xb.dtype)


def cluster_merge(
    x: Tensor,
    centres: Tensor,
    beta: float = 0.6,
    beta_merge: bool = True,
    dist: Tensor | None = None,
) -> Tensor:
    """Merge every non-centre token into its nearest centre (spec §4c).

    Args:
        x: (n, E) or (B, n, E) tokens.
        centres: (c,) or (B, c) long, increasing, distinct indices into the n tokens.
        beta: weight of the centre against the mean of its members, in [0, 1].
        beta_merge: False -> plain mean of centre and members.
        dist: optional (B, n, n) fp32 distances from `pairwise_distance` (recomputed when None).

    Returns:
        (c, E) or (B, c, E) merged tokens in centre order, dtype of ``x`` (arithmetic in fp32).
    """
    xb, single = _as_batch("x", x)
    cb = centres.unsqueeze(0) if single and isinstance(centres, Tensor) and centres.dim() == 1 else centres
    if not isinstance(cb, Tensor) or cb.dim() != 2 or cb.shape[0] != xb.shape[0] or cb.dtype != torch.long:
        shape = tuple(centres.shape) if isinstance(centres, Tensor) else type(centres).__name__
        raise ValueError(f"centres must be a long (c,) or (B, c) tensor matching x, got {shape}")
    n = xb.shape[1]
    if cb.numel():
        cb = cb.to(xb.device)
        lo, hi = int(cb.min()), int(cb.max())
        distinct = bool((cb[:, 1:] > cb[:, :-1]).all()) if cb.shape[1] > 1 else True
        if lo < 0 or hi >= n or not distinct:
            raise ValueError(
                f"centres must be strictly increasing indices in [0, {n}), got shape {tuple(cb.shape)} "
                f"with values in [{lo}, {hi}]"
            )
    beta = check_ratio("beta", beta, low=0.0, high=1.0, high_open=False)
    if dist is not None and tuple(dist.shape) != (xb.shape[0], n, n):
        raise ValueError(f"dist must have shape ({xb.shape[0]}, {n}, {n}), got {tuple(dist.shape)}")
    out = _merge(xb, cb.to(xb.device), dist, beta, bool(beta_merge))
    return out[0] if single else out


def dpc_knn_merge(
    x: Tensor, clusters: int, k: int, beta: float = 0.6, beta_merge: bool = True
) -> tuple[Tensor, Tensor]:
    """Centres + merge in one call (distances computed once).

    Args:
        x: (n, E) or (B, n, E) tokens.
        clusters, k: as `dpc_knn_centres`.
        beta, beta_merge: as `cluster_merge`.

    Returns:
        ``(tokens, centres)``: (…, clusters, E) merged tokens in ``x.dtype`` and (…, clusters) indices.
    """
    xb, single = _as_batch("x", x)
    clusters, k = _check_cluster_args(xb.shape[1], clusters, k)
    beta = check_ratio("beta", beta, low=0.0, high=1.0, high_open=False)
    with torch.no_grad():
        centres, dist = _select(xb, clusters, k)
    tokens = _merge(xb, centres, dist, beta, bool(beta_merge))
    return (tokens[0], centres[0]) if single else (tokens, centres)
