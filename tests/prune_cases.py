"""Seeded video embeddings for the EVS / VidCom2 equality with vLLM (shared by the main suite, which compares with
the selections recorded from vLLM in ``tests/fixtures/vllm_prune.json``, and ``make test-vllm``, which compares
with vLLM itself and checks that the recording is current).

A case is ``(seed, frames, rows, cols, channels, q)``: embeddings (F·rows·cols, C) fp32 drawn from ``seed``, later
frames pulled towards the first (temporal redundancy, so EVS has something to prune), and vLLM's pruning rate q
(our ``retain_ratio`` is ``1 − q``, the same Python float vLLM computes).
"""

from __future__ import annotations

import torch

__all__ = ["CASES", "embeddings", "retain_ratio"]

CASES: list[tuple[int, int, int, int, int, float]] = [
    (0, 8, 4, 4, 32, 0.75),
    (1, 8, 7, 7, 64, 0.9),
    (2, 5, 4, 3, 8, 0.5),
    (3, 16, 2, 7, 32, 0.85),
    (4, 1, 7, 7, 32, 0.9),  # one frame: EVS keeps it whole
    (5, 2, 7, 7, 32, 0.99),  # VidCom2 at one token per frame
    (6, 10, 14, 14, 16, 0.9),  # F·N·(1 − q) = 195.99999999999997: 195 tokens, not 196
    (7, 4, 14, 14, 16, 0.0),  # q = 0: everything
    (1, 2, 2, 7, 32, 0.9),  # VidCom2: the reconcile drops a frame's only token (as vLLM does): [2, 0]
    (9, 12, 3, 5, 24, 0.6),
]


def retain_ratio(q: float) -> float:
    """Our ``retain_ratio`` for vLLM's pruning rate ``q``."""
    return 1 - q


def embeddings(seed: int, frames: int, rows: int, cols: int, channels: int) -> torch.Tensor:
    """(F, rows·cols, C) fp32 from ``seed``: frames 1.. are 0.7 · frame 0 + 0.3 · noise."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(frames, rows * cols, channels, generator=gen)
    if frames > 1:
        x[1:] = 0.7 * x[:1] + 0.3 * x[1:]
    return x
