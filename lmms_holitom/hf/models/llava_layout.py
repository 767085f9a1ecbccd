"""LLaVA video layouts as tensor functions (docs/algorithm.md §5, §5b): pooling and where newlines go.

* `pool_average`: LLaVA-Video's 2×2 average pooling of each frame's patch map (27×27 -> 13×13; the 27th row and
  column are dropped, as ``avg_pool2d`` does). Bilinear pooling (LLaVA-OneVision) is transformers' own
  ``apply_pooling``.
* `one_token_run`: the tokens in their merge order, then one newline after the whole video (LLaVA-OneVision).
* `grid_run`: LLaVA-Video's grid: per frame, tokens sorted by spatial index, a newline after each row that keeps
  at least one token; a segment's static tokens sit in its first frame at their cluster centres' positions.
  With every token kept this is LLaVA-NeXT's dense grid layout (``p · (p + 1)`` tokens per frame).
"""

from __future__ import annotations

import math

import torch

from lmms_holitom.core.splice import VisualRun
from lmms_holitom.core.trace import NEWLINE_ORIGIN

__all__ = ["dense_grid", "grid_run", "one_token_run", "pool_average"]


def pool_average(features: torch.Tensor, side: int) -> torch.Tensor:
    """(B, side², E) -> (B, (side // 2)², E): 2×2 average pooling of each frame's map."""
    batch, _, dim = features.shape
    grid = features.view(batch, side, side, dim).permute(0, 3, 1, 2)
    pooled = torch.nn.functional.avg_pool2d(grid, kernel_size=2, stride=2)
    return pooled.permute(0, 2, 3, 1).reshape(batch, -1, dim)


def dense_grid(features: torch.Tensor, newline: torch.Tensor) -> torch.Tensor:
    """(B, F, p², E) pooled frames -> (B, F·p·(p+1), E): a newline after every row of every frame."""
    batch, frames, n, dim = features.shape
    p = math.isqrt(n)
    rows = features.reshape(batch, frames, p, p, dim)
    nl = newline.to(features.device, features.dtype).view(1, 1, 1, 1, dim).expand(batch, frames, p, 1, dim)
    return torch.cat([rows, nl], dim=3).reshape(batch, frames * p * (p + 1), dim)


def _origins(frames: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return torch.stack([frames.to(torch.long), positions.to(torch.long)], dim=1)


def one_token_run(
    tokens: torch.Tensor, frames: torch.Tensor, positions: torch.Tensor, newline: torch.Tensor
) -> VisualRun:
    """Tokens (M, E) in merge order, then the newline: a run of M + 1 tokens."""
    origins = _origins(frames, positions)
    nl_origin = torch.tensor([NEWLINE_ORIGIN], dtype=torch.long, device=origins.device)
    run = torch.cat([tokens, newline.to(tokens.device, tokens.dtype).unsqueeze(0)])
    return VisualRun(tokens=run, origins=torch.cat([origins, nl_origin]), run_lengths=(int(run.shape[0]),))


def grid_run(
    tokens: torch.Tensor, frames: torch.Tensor, positions: torch.Tensor, newline: torch.Tensor, side: int
) -> VisualRun:
    """The grid layout of tokens (M, E) with origins ``(frames, positions)`` on a ``side × side`` pooled map.

    Tokens are ordered by (frame, spatial index) — stable, so the order is fully determined by the origins — and
    a newline follows the last token of every (frame, row) group. Output: M + G rows (G non-empty rows).
    """
    n = side * side
    key = frames.to(torch.long) * n + positions.to(torch.long)
    order = torch.sort(key, stable=True).indices
    tokens, key = tokens.index_select(0, order), key[order]
    row_key = key // side  # frame * side + row
    _, counts = torch.unique_consecutive(row_key, return_counts=True)  # one host sync (the run's length)
    groups = int(counts.shape[0])
    group_of = torch.repeat_interleave(torch.arange(groups, device=key.device), counts)
    token_at = torch.arange(key.shape[0], device=key.device) + group_of  # each earlier group adds a newline
    newline_at = torch.cumsum(counts, 0) + torch.arange(groups, device=key.device)
    total = int(key.shape[0]) + groups
    out = tokens.new_empty((total, tokens.shape[1]))
    out[token_at] = tokens
    out[newline_at] = newline.to(tokens.device, tokens.dtype)
    origins = torch.full((total, 2), NEWLINE_ORIGIN[0], dtype=torch.long, device=key.device)
    origins[token_at] = torch.stack([key // n, key % n], dim=1)
    return VisualRun(tokens=out, origins=origins, run_lengths=(total,))
