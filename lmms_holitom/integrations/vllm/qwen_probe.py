"""HoliTom's saliency from vLLM's Qwen2.5-VL vision tower (windowed attention, full attention in a few blocks).

Same quantity as the transformers backend (`lmms_holitom.hf.models.qwen_vision.QwenVisionSaliencyProbe`,
algorithm §1): in the tower's **last full-attention block** (``fullatt_block_indexes[-1]``, the block feeding the
merger), ``softmax(q kᵀ · head_dim^-½)`` in fp32 with the block's own fused ``qkv`` projection and vision RoPE
(the module's ``apply_rotary_emb``), averaged over heads and over the queries of each attention span (one span per
temporal group: ``h · w`` patches), then over the ``merge²`` patches one merged token fuses; plus the head-averaged
keys before RoPE (VisionZip). vLLM's tower permutes merge units into window order before the blocks and restores
the order after the merger with ``encoder_metadata["reverse_indices"]``; the probe applies the same indices, so its
rows follow the tower's output rows.

The spans come from ``grid_thw`` (not from the hook's ``cu_seqlens``, whose layout is attention-backend specific,
e.g. FlashInfer's). Under tensor parallelism (``mm_encoder_tp_mode="weights"``) a rank holds
``num_heads / tp`` heads: head sums are all-reduced before dividing by the total head count.
"""

from __future__ import annotations

import torch
from torch import nn

from lmms_holitom.core.hooks import PreHookProbe
from lmms_holitom.ops.saliency import head_summed_received_attention

__all__ = ["QwenWindowedSaliencyProbe", "last_full_attention_block"]


def last_full_attention_block(visual: nn.Module) -> int:
    """Index of the block whose attention gives the saliency (the last full-attention one)."""
    full = [int(i) for i in getattr(visual, "fullatt_block_indexes", [])]
    if not full:
        return len(visual.blocks) - 1
    return max(i if i >= 0 else len(visual.blocks) + i for i in full)


class QwenWindowedSaliencyProbe(PreHookProbe):
    """Context manager around one tower call on videos of patch grids ``grid_thw`` (``[[t, h, w], ...]``).

    After the call: ``per_video(reverse_indices)`` -> one ``((t, N) attention, (t, N, head_dim) keys)`` per video,
    fp32, rows in the tower's output order (``N = h · w / merge²``).
    """

    def __init__(self, visual: nn.Module, grid_thw: list[list[int]], frames_per_chunk: int = 8) -> None:
        self.visual = visual
        self.module = visual.blocks[last_full_attention_block(visual)].attn
        self.grid = [[int(v) for v in g] for g in grid_thw]
        self.chunk = max(1, int(frames_per_chunk))
        self.unit = int(visual.spatial_merge_size) ** 2
        self.received: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None

    @torch.no_grad()
    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = kwargs["x"] if "x" in kwargs else args[0]
        cos = kwargs["rotary_pos_emb_cos"] if "rotary_pos_emb_cos" in kwargs else args[2]
        sin = kwargs["rotary_pos_emb_sin"] if "rotary_pos_emb_sin" in kwargs else args[3]
        self.received, self.keys = self.compute(module, hidden.squeeze(1), cos, sin)

    def _spans(self) -> list[tuple[int, int, int]]:
        """(start row, groups, patches per group): runs of equal spans, at most ``chunk`` groups each."""
        runs, start = [], 0
        for t, h, w in self.grid:
            for first in range(0, t, self.chunk):
                count = min(self.chunk, t - first)
                runs.append((start, count, h * w))
                start += count * h * w
        return runs

    def compute(
        self, module: nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Received attention (S,) and head-averaged pre-RoPE keys (S, head_dim) of ``hidden`` (S, D), window order."""
        heads, head_dim = module.num_attention_heads_per_partition, module.hidden_size_per_attention_head
        rows = hidden.shape[0]
        qkv, _ = module.qkv(hidden)
        qkv = qkv.view(rows, 3, heads, head_dim)
        rotated = module.apply_rotary_emb(qkv[:, :2].transpose(0, 1).contiguous(), cos, sin)  # (2, S, heads, hd)
        received = torch.zeros(rows, dtype=torch.float32, device=hidden.device)
        for start, count, span in self._spans():
            stop = start + count * span
            q = rotated[0, start:stop].float().view(count, span, heads, head_dim).transpose(1, 2)
            k = rotated[1, start:stop].float().view(count, span, heads, head_dim).transpose(1, 2)
            # heads summed (reduced below), queries averaged
            head_summed_received_attention(q, k, head_dim**-0.5, out=received[start:stop].view(count, span))
        keys = qkv[:, 1].float().sum(dim=1)
        if getattr(module, "tp_size", 1) > 1:
            from vllm.distributed import tensor_model_parallel_all_reduce

            received = tensor_model_parallel_all_reduce(received)
            keys = tensor_model_parallel_all_reduce(keys)
        total = heads * getattr(module, "tp_size", 1)
        return received / total, keys / total

    def per_video(self, reverse_indices: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Pool patches into merged tokens, undo the window order, split per video into (t, N) / (t, N, Dk)."""
        if self.received is None or self.keys is None:
            raise RuntimeError("lmms-holitom: the saliency probe saw no call of the last full-attention block")
        order = reverse_indices.to(self.received.device).long()
        pooled = self.received.view(-1, self.unit).mean(dim=1)[order]
        keys = self.keys.view(-1, self.unit, self.keys.shape[-1]).mean(dim=1)[order]
        sizes = [t * h * w // self.unit for t, h, w in self.grid]
        out = []
        for (t, _, _), attention, key in zip(self.grid, pooled.split(sizes), keys.split(sizes), strict=True):
            out.append((attention.view(t, -1), key.view(t, attention.numel() // t, -1)))
        return out
