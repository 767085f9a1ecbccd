"""The vision saliency arithmetic shared by the probes (algorithm §1): `head_summed_received_attention`.

``softmax(q kᵀ · scale)`` over keys, summed over heads and averaged over queries: the attention each token receives,
before the division by the total head count (the caller divides, after any tensor-parallel reduction of the sums).

The straightforward formulation, ``softmax(q @ kᵀ * scale).sum(1).mean(1)`` on a chunk of B rows, allocates four
fresh ``B · H · T²`` fp32 tensors (scores, scaled scores, probabilities, head sums); at T = 729 that is 17 MB per row
and head group, and on a CPU the page faults of those fresh allocations and the passes over memory that no cache
holds cost more than the arithmetic. Here one row at a time, and within it at most ``ROW_TILE`` queries at a time
(near-equal tiles), is written into one reused ``(H, tile, T)`` buffer with the same kernels (``matmul`` out=,
``mul_``, ``softmax`` out= in place, ``sum`` out=); the head sums of every query land in one ``(T, T)`` buffer, and
the mean over queries runs once per row on that buffer. Every element goes through the same operations in the same
order, so the result is bit-identical to the straightforward one (`tests/test_ops_saliency.py` holds that
formulation as the oracle), and the peak extra memory no longer grows with ``H · T²`` (a full-attention span of
2,304 patches — a 768² frame at patch 16 — with 16 heads would take 340 MB; tiled, 38 MB plus the 21 MB of head
sums).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ROW_TILE", "head_summed_received_attention", "score_elements"]

#: queries scored at once; a tile of 8 heads x 256 x 729 fp32 scores (6 MB) stays within the last-level cache
ROW_TILE = 256


def _tile(tokens: int) -> int:
    """Queries per tile: near-equal tiles of at most `ROW_TILE` (a one-query tail would take a matrix-vector kernel,
    other bits)."""
    tiles = -(-tokens // ROW_TILE)
    return -(-tokens // tiles)


def score_elements(heads: int, tokens: int) -> int:
    """fp32 elements of the largest score buffer `head_summed_received_attention` makes for ``heads`` heads over
    ``tokens`` tokens (the CPU figure; off the CPU the softmax writes a second buffer of the tile's size)."""
    return max(heads * _tile(tokens) * tokens, tokens * tokens)


def head_summed_received_attention(q: Tensor, k: Tensor, scale: float, out: Tensor | None = None) -> Tensor:
    """``softmax(q kᵀ · scale, dim=-1).sum(dim=1).mean(dim=1)`` for fp32 ``q``, ``k`` of shape (B, H, T, D).

    Args:
        q: (B, H, T, D) fp32 queries (any strides).
        k: (B, H, T, D) fp32 keys (any strides).
        scale: the multiplier of the scores (``head_dim ** -0.5`` or the module's own ``scale``).
        out: optional (B, T) fp32 tensor (or view) to write into.

    Returns:
        (B, T) fp32: for each row and key token, the probabilities it receives summed over the H heads and
        averaged over the T queries. Peak extra memory ``H · ceil(T / ceil(T / ROW_TILE)) · T + T²`` fp32 elements
        (twice the first term off the CPU, where the softmax does not run in place).
    """
    if q.dim() != 4 or q.shape != k.shape or q.dtype != torch.float32 or k.dtype != torch.float32:
        raise ValueError(f"q and k must be fp32 (B, H, T, D) of one shape, got {tuple(q.shape)} {q.dtype} and "
                         f"{tuple(k.shape)} {k.dtype}")
    batch, heads, tokens, _ = q.shape
    if out is None:
        out = torch.empty((batch, tokens), dtype=torch.float32, device=q.device)
    tile = _tile(tokens)
    buffer = torch.empty(heads * tile * tokens, dtype=torch.float32, device=q.device)
    summed = torch.empty((tokens, tokens), dtype=torch.float32, device=q.device)
    # the CPU kernel writes a row's probabilities after its last read of that row: in place is safe there
    probs_buffer = buffer if q.device.type == "cpu" else torch.empty_like(buffer)
    for row in range(batch):
        keys_t = k[row].transpose(-1, -2)
        for first in range(0, tokens, tile):
            count = min(tile, tokens - first)
            # contiguous views of the buffers' heads: the in-place softmax needs a contiguous tensor
            scores = buffer[: heads * count * tokens].view(heads, count, tokens)
            probs = probs_buffer[: heads * count * tokens].view(heads, count, tokens)
            torch.matmul(q[row, :, first : first + count], keys_t, out=scores)
            scores.mul_(scale)
            torch.ops.aten._softmax.out(scores, -1, False, out=probs)
            torch.sum(probs, dim=0, out=summed[first : first + count])
        torch.mean(summed, dim=0, out=out[row])
    return out
