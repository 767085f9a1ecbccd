"""head_summed_received_attention (algorithm §1) == the straightforward formulation, bit for bit, whatever the tiling
of its queries (`ROW_TILE`: one tile, exactly one full tile, two near-equal tiles where one tile and a one-query tail
would be, three tiles)."""

from __future__ import annotations

import pytest
import torch

from lmms_holitom.ops.saliency import ROW_TILE, head_summed_received_attention


def _oracle(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """The formulation the probes used before (and the transformers probe uses): all rows at once."""
    probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1)
    return probs.sum(dim=1).mean(dim=1)


def _qk(batch: int, heads: int, tokens: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 views of a bf16 fused qkv, laid out as the probes read it: (B, T, 3·H·D) -> (B, H, T, D) strided."""
    generator = torch.Generator().manual_seed(seed)
    qkv = (3 * torch.randn(batch, tokens, 3 * heads * dim, generator=generator)).to(torch.bfloat16)
    q, k, _ = qkv.chunk(3, dim=-1)
    q = q.reshape(batch, tokens, heads, dim).transpose(1, 2).float()
    k = k.reshape(batch, tokens, heads, dim).transpose(1, 2).float()
    return q, k


@pytest.mark.parametrize(("batch", "heads", "tokens", "dim"), [(1, 1, 5, 32), (3, 2, 64, 32), (8, 8, 729, 32),
                                                               (2, 4, 196, 16), (1, 2, 256, 16), (2, 3, 257, 32),
                                                               (1, 2, 600, 8)])
def test_equals_the_straightforward_formulation_bit_for_bit(batch: int, heads: int, tokens: int, dim: int) -> None:
    q, k = _qk(batch, heads, tokens, dim, seed=batch * 100 + tokens)
    got = head_summed_received_attention(q, k, dim**-0.5)
    assert got.shape == (batch, tokens) and got.dtype == torch.float32
    assert torch.equal(got, _oracle(q, k, dim**-0.5))


def test_contiguous_inputs_and_out_view_give_the_same_result() -> None:
    q, k = _qk(4, 3, 100, 32, seed=7)
    target = torch.full((6, 100), -1.0)
    head_summed_received_attention(q.contiguous(), k.contiguous(), 0.2, out=target[1:5])
    assert torch.equal(target[1:5], _oracle(q, k, 0.2))
    assert (target[0] == -1).all() and (target[5] == -1).all()


def test_rejects_non_fp32_or_mismatched_inputs() -> None:
    q, k = _qk(1, 2, 8, 32, seed=1)
    with pytest.raises(ValueError, match="fp32"):
        head_summed_received_attention(q.to(torch.bfloat16), k, 0.1)
    with pytest.raises(ValueError, match="one shape"):
        head_summed_received_attention(q, k[:, :1], 0.1)


def test_the_cases_cross_tile_boundaries() -> None:
    """The parametrised sizes above straddle `ROW_TILE`; a retuned tile must keep them doing so."""
    assert 196 < ROW_TILE <= 256 < 257 < 2 * ROW_TILE < 600
