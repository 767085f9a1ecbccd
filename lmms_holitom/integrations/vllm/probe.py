"""The vision saliency probe for vLLM's vision towers (fused ``qkv_proj``), tensor-parallel aware.

Same quantity as the transformers probe (`lmms_holitom.hf.models.probes.VisionSaliencyProbe`, algorithm §1): in the
self-attention module of the layer that produces the selected features, ``softmax(q kᵀ · scale)`` in fp32 (scored
one frame at a time by `lmms_holitom.ops.saliency`), averaged over heads, then over queries (the attention each patch
receives); and the head-averaged keys VisionZip needs. The q and k are the tower's own: a forward hook on the
module's ``qkv_proj`` reads the projection the layer has just computed, instead of projecting the layer's input a
second time (at 32 frames of the bench's ``issue`` shape that second projection was 23 ms of a 170 ms probe).
Under tensor parallelism (vLLM's default ``mm_encoder_tp_mode="weights"``) each rank holds ``num_heads / tp`` heads
(its ``qkv_proj`` output holds those heads only): per-rank head sums are all-reduced before dividing by the total head
count, so every rank sees the same saliency as one rank would; with ``"data"`` the tower is replicated (the module's
``tp_size`` is 1) and nothing is reduced.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lmms_holitom.core.hooks import OutputHookProbe
from lmms_holitom.ops.saliency import head_summed_received_attention

__all__ = ["QKVSaliencyProbe"]


class QKVSaliencyProbe(OutputHookProbe):
    """Context manager: while active, records ``attention`` (B, T) fp32 and ``keys`` (B, T, head_dim) fp32.

    Args:
        module: a vLLM vision attention module with ``qkv_proj`` (returns ``(qkv, bias)``), ``num_heads``,
            ``num_heads_per_partition``, ``head_dim``, ``scale`` and ``tp_size``.
        frames_per_chunk: frames (batch rows) whose q/k are converted to fp32 at once; the scores go one frame at a
            time (`ops.saliency.head_summed_received_attention`: peak ``(heads/tp) · tile · T + T²`` fp32 elements).
    """

    def __init__(self, module: nn.Module, frames_per_chunk: int = 8) -> None:
        self.attention_module = module
        self.module = module.qkv_proj  # watched: its output is the layer's own q, k, v
        self.chunk = max(1, int(frames_per_chunk))
        self.attention: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None
        self.calls = 0

    @torch.no_grad()
    def _hook(self, projection: nn.Module, args: tuple, output: Any) -> None:
        qkv = output[0] if isinstance(output, tuple) else output
        attention, keys = self.compute(self.attention_module, qkv)
        self.attention = attention if self.attention is None else torch.cat([self.attention, attention])
        self.keys = keys if self.keys is None else torch.cat([self.keys, keys])
        self.calls += 1

    def compute(self, module: nn.Module, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Received attention (B, T) and head-averaged keys (B, T, head_dim) from the fused projection ``qkv``
        (B, T, 3 · heads/tp · head_dim) of ``module``."""
        batch, tokens, _ = qkv.shape
        heads, head_dim = module.num_heads_per_partition, module.head_dim
        received = torch.empty((batch, tokens), dtype=torch.float32, device=qkv.device)
        key_sum = torch.empty((batch, tokens, head_dim), dtype=torch.float32, device=qkv.device)
        q_all, k_all, _ = qkv.chunk(3, dim=-1)
        for start in range(0, batch, self.chunk):
            stop = min(start + self.chunk, batch)
            q = q_all[start:stop].reshape(stop - start, tokens, heads, head_dim).transpose(1, 2).float()
            k = k_all[start:stop].reshape(stop - start, tokens, heads, head_dim).transpose(1, 2).float()
            # heads summed (reduced below), queries averaged
            head_summed_received_attention(q, k, module.scale, out=received[start:stop])
            key_sum[start:stop] = k.sum(dim=1)
        if getattr(module, "tp_size", 1) > 1:
            from vllm.distributed import tensor_model_parallel_all_reduce

            received = tensor_model_parallel_all_reduce(received)
            key_sum = tensor_model_parallel_all_reduce(key_sum)
        return received / module.num_heads, key_sum / module.num_heads
