"""The inner merge's attention probe (docs/algorithm.md §6.1): one query row at one decoder layer.

`last_token_attention` computes the attention probabilities of one token (the last prompt token) from that layer's
own ``q_proj``/``k_proj`` (plus ``q_norm``/``k_norm`` where the layer has them, as Qwen3 does), the rotary embedding
at the right positions (partial rotary: only the first ``cos.shape[-1]`` dims of a head rotate, as in
gated-attention layers with ``partial_rotary_factor``) and ``repeat_kv`` for grouped-query heads — a gated query
projection (``q_proj`` emitting ``[query | gate]`` per head, twice the query width) keeps the query half — O(L) work
instead of the O(L²) of an eager layer. It mirrors the attention of transformers' Llama/Qwen2/Qwen3 decoder layers
(rotate-half RoPE, softmax in fp32), checked against transformers 5.24 and 5.25 (the range is `lmms_holitom.compat`;
``tests/test_transformers_mirror.py`` compares it with the installed stock layers); this module is the one place
that mirrors it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["last_token_attention", "rotate_half"]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Rotates half the hidden dims (RoPE), as transformers' Llama/Qwen2."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (1, heads, n, hd); cos/sin: (1, n, rd) with rd <= hd: the first rd dims rotate, the rest pass
    rd = cos.shape[-1]
    rot = x[..., :rd] * cos.unsqueeze(1) + rotate_half(x[..., :rd]) * sin.unsqueeze(1)
    return rot if rd == x.shape[-1] else torch.cat([rot, x[..., rd:]], dim=-1)


@torch.no_grad()
def last_token_attention(
    layer: nn.Module,
    hidden_states: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    query_index: int,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention probabilities of token ``query_index`` over tokens ``0..query_index`` at one decoder layer.

    Causal, so the query sees every token up to and including itself. Equals the eager attention weights of
    that row (softmax in fp32), averaged over heads.

    Args:
        layer: a Qwen2/Llama-style decoder layer (``input_layernorm``, ``self_attn.{q,k}_proj``).
        hidden_states: (1, L, E) the layer's INPUT hidden states.
        position_embeddings: ``(cos, sin)``, each (1, L, head_dim), of the L tokens.
        query_index: index of the query token (the last prompt token).
        key_mask: optional (L,) bool, False for padding tokens to exclude.

    Returns:
        (query_index + 1,) fp32, sums to 1.
    """
    attn = layer.self_attn
    n = query_index + 1
    head_dim = attn.head_dim
    x = layer.input_layernorm(hidden_states[:, :n])
    q = attn.q_proj(x[:, -1:]).view(1, 1, attn.config.num_attention_heads, -1)
    q = q[..., :head_dim]  # a gated query projection emits [query | gate] per head: the query half
    k = attn.k_proj(x).view(1, n, -1, head_dim)
    if getattr(attn, "q_norm", None) is not None:  # Qwen3: per-head RMSNorm before RoPE
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)  # (1, H, 1, hd), (1, Hkv, n, hd)
    cos, sin = (t.to(q.device) for t in position_embeddings)
    q = _rope(q, cos[:, query_index : query_index + 1], sin[:, query_index : query_index + 1])
    k = _rope(k, cos[:, :n], sin[:, :n])
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1) if groups > 1 else k  # == transformers' repeat_kv
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * attn.scaling  # (1, H, 1, n)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:n].to(scores.device, torch.bool).view(1, 1, 1, n), float("-inf"))
    return torch.softmax(scores, dim=-1).mean(dim=1)[0, 0]
