"""HoliTom's saliency for the vision encoders of Qwen2.5-VL and Qwen3-VL (transformers 5.x).

What a HoliTom "frame" is here: one temporal patch group of the encoder (``temporal_patch_size = 2`` input
frames share one Conv3d patch), i.e. one row ``t`` of ``video_grid_thw``. Its tokens are the rows the 2×2 patch
merger emits for that group, in the order of ``model.get_video_features(...).pooler_output`` (row-major over
the merged ``(H/2m)×(W/2m)`` grid): ``N = (H/28)·(W/28)`` for Qwen2.5-VL (patch 14), ``(H/32)·(W/32)`` for
Qwen3-VL (patch 16), where H, W are the processor's resized frame sizes (`video_token_grid`).

Saliency (`QwenVisionSaliencyProbe`): the attention each patch *receives* in the encoder's last
**full-attention** block, ``softmax(q kᵀ · scale)`` in fp32 with the block's own ``qkv`` projection and vision
RoPE (the module's own ``apply_rotary_pos_emb_vision``), averaged over heads and over the queries of its own
attention span (one span per temporal group, ``cu_seqlens``), then averaged over the ``merge²`` patches the
merger fuses into one token.

* Qwen2.5-VL: the last index of ``config.fullatt_block_indexes`` (31 of 32 in the 7B checkpoint, the block
  feeding the merger); the other blocks attend inside windows. The encoder permutes merge units into window
  order before the blocks (``permute_input_for_window_attn``) and restores the order after the merger
  (``argsort(window_index)``); a full-attention span is still one whole temporal group (windows never cross
  groups), and the probe applies the same inverse permutation, so saliency rows follow the features' rows.
* Qwen3-VL: every block is full attention; the LAST block feeds ``visual.merger`` (``pooler_output``), so it is
  the probed block. No window permutation.

Qwen3-VL deepstack: ``get_video_features(...)`` also returns ``deepstack_features``, a list with one entry per
``config.vision_config.deepstack_visual_indexes`` (8, 16, 24 in Qwen3-VL-8B); each entry is a tuple with one
(t·N, out_hidden_size) tensor per video — the hidden states after that block, through its own
``deepstack_merger_list`` merger. Their rows are exactly the main features' rows (same merge units, same
order, same per-video split), so a compression plan (row indices / weights) of the main features applies to
each stream unchanged. The decoder adds stream i to the hidden states at the visual rows after decoder
layer i (``Qwen3VLTextModel._deepstack_process``).

The encoder itself keeps its attention implementation (SDPA / flash); only the probed block's attention
module gets a forward pre-hook, and the encoder a pre-hook that records ``grid_thw``; both are removed on
exit (also on errors). The scores go through `lmms_holitom.ops.saliency` (the vLLM probes use the same function):
one temporal group and at most 256 queries at a time, so memory does not grow with ``heads · S²`` (S, the patches of
one temporal group, is 8,160 for a 1080p frame at ``max_pixels`` 1,605,632: 16 heads · S² fp32 would be 4.3 GB per
group). ``peak_elements`` = the largest fp32 score buffer the probe made (`ops.saliency.score_elements`);
``frames_per_chunk`` groups have their q/k projected at once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from lmms_holitom.ops.saliency import head_summed_received_attention, score_elements

__all__ = [
    "QwenVisionSaliencyProbe",
    "VideoTokenGrid",
    "probed_block_index",
    "vision_encoder",
    "video_token_grid",
]


@dataclass(frozen=True)
class VideoTokenGrid:
    """Token geometry of one video after the patch merger.

    Attributes:
        t: temporal groups (HoliTom frames), ``video_grid_thw[i, 0]``.
        height, width: the merged token grid, ``grid_h / merge``, ``grid_w / merge``.
        n: tokens per temporal group, ``height · width``.
    """

    t: int
    height: int
    width: int

    @property
    def n(self) -> int:
        return self.height * self.width

    @property
    def tokens(self) -> int:
        return self.t * self.n


def video_token_grid(video_grid_thw: torch.Tensor, spatial_merge_size: int = 2) -> list[VideoTokenGrid]:
    """One `VideoTokenGrid` per row of ``video_grid_thw`` (V, 3) of patch counts ``(t, h, w)``."""
    grid = torch.as_tensor(video_grid_thw)
    if grid.ndim != 2 or grid.shape[-1] != 3:
        raise ValueError(f"video_grid_thw must have shape (videos, 3), got {tuple(grid.shape)}")
    out = []
    for t, h, w in grid.tolist():
        if h % spatial_merge_size or w % spatial_merge_size:
            raise ValueError(f"grid {(t, h, w)} is not divisible by spatial_merge_size={spatial_merge_size}")
        out.append(VideoTokenGrid(int(t), int(h) // spatial_merge_size, int(w) // spatial_merge_size))
    return out


def vision_encoder(model: nn.Module) -> nn.Module:
    """The vision encoder (``.visual``) of a Qwen2.5-VL / Qwen3-VL model, its ``.model``, or the encoder itself."""
    for candidate in (model, getattr(model, "visual", None), getattr(getattr(model, "model", None), "visual", None)):
        if candidate is not None and hasattr(candidate, "blocks") and hasattr(candidate, "merger"):
            return candidate
    raise TypeError(f"{type(model).__name__} has no Qwen vision encoder (a module with .blocks and .merger)")


def probed_block_index(visual: nn.Module) -> int:
    """Index of the block whose attention gives the saliency: the last full-attention block."""
    depth = len(visual.blocks)
    full = getattr(visual, "fullatt_block_indexes", None)
    if full is None:  # Qwen3-VL: all blocks attend over the whole temporal group
        return depth - 1
    full = [i if i >= 0 else depth + i for i in full]
    if not full or not all(0 <= i < depth for i in full):
        raise ValueError(f"fullatt_block_indexes {list(full)} has no valid block index for a {depth}-block encoder")
    return max(full)


def _rope_function(module: nn.Module):
    """The ``apply_rotary_pos_emb_vision`` of the module's own modeling file (applies RoPE as it does)."""
    fn = getattr(sys.modules.get(type(module).__module__), "apply_rotary_pos_emb_vision", None)
    if fn is None:
        raise TypeError(f"{type(module).__name__}: no apply_rotary_pos_emb_vision in {type(module).__module__}")
    return fn


def _equal_runs(lengths: list[int], chunk: int) -> list[tuple[int, int]]:
    """Split span indices into runs ``[i, j)`` of at most ``chunk`` consecutive spans of equal length."""
    runs, i = [], 0
    while i < len(lengths):
        j = i + 1
        while j < len(lengths) and j - i < chunk and lengths[j] == lengths[i]:
            j += 1
        runs.append((i, j))
        i = j
    return runs


class QwenVisionSaliencyProbe:
    """Context manager: records HoliTom saliency (and optionally keys) while a Qwen vision encoder runs.

    After an encoder call inside the ``with`` block (``model.generate``, ``model.get_video_features`` ...):

    * ``saliency()`` -> list with one (t, N) fp32 tensor per entry of that call's ``grid_thw`` (videos, or
      images with t = 1), rows in the order of the merger's output / ``get_video_features``;
    * ``keys()`` -> list of (t, N, head_dim) fp32: the block's key projections (before RoPE) averaged over heads
      and over the merged patches (only with ``want_keys``, for VisionZip);
    * ``grids`` -> the `VideoTokenGrid` of each entry; ``peak_elements``; ``calls`` (encoder calls seen).

    ``call`` selects an earlier encoder call (default the last, ``-1``); ``reset()`` forgets them.

    Args:
        visual: the vision encoder, or a model holding it (`vision_encoder`).
        frames_per_chunk: temporal groups whose q/k are projected at once (the scores go one group at a time).
        want_keys: also record pooled keys.
    """

    def __init__(self, visual: nn.Module, frames_per_chunk: int = 8, want_keys: bool = False) -> None:
        if isinstance(frames_per_chunk, bool) or not isinstance(frames_per_chunk, int) or frames_per_chunk < 1:
            raise ValueError(f"probe_chunk must be an integer >= 1, got {frames_per_chunk!r}")
        self.visual = vision_encoder(visual)
        self.block_index = probed_block_index(self.visual)
        self.module = self.visual.blocks[self.block_index].attn
        self.chunk = frames_per_chunk
        self.want_keys = want_keys
        self.merge = int(self.visual.spatial_merge_size)
        self.peak_elements = 0
        self._records: list[dict[str, Any]] = []
        self._grid: torch.Tensor | None = None
        self._handles: list[Any] = []

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> QwenVisionSaliencyProbe:
        try:
            self._handles.append(self.visual.register_forward_pre_hook(self._grid_hook, with_kwargs=True))
            self._handles.append(self.module.register_forward_pre_hook(self._attention_hook, with_kwargs=True))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def reset(self) -> None:
        self._records.clear()
        self.peak_elements = 0

    # -- results ---------------------------------------------------------------------------------------------
    @property
    def calls(self) -> int:
        return len(self._records)

    def _record(self, call: int) -> dict[str, Any]:
        if not self._records:
            raise RuntimeError("the probe has seen no vision-encoder call yet (run the model inside the `with` block)")
        return self._records[call]

    def saliency(self, call: int = -1) -> list[torch.Tensor]:
        return self._record(call)["saliency"]

    def keys(self, call: int = -1) -> list[torch.Tensor]:
        record = self._record(call)
        if record["keys"] is None:
            raise RuntimeError("keys were not recorded: create the probe with want_keys=True")
        return record["keys"]

    def grids(self, call: int = -1) -> list[VideoTokenGrid]:
        return self._record(call)["grids"]

    # -- hooks -----------------------------------------------------------------------------------------------
    def _grid_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        if grid is None:
            raise TypeError(f"{type(module).__name__} was called without grid_thw")
        self._grid = torch.as_tensor(grid)
        return None

    @torch.no_grad()
    def _attention_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        cu_seqlens = kwargs["cu_seqlens"] if "cu_seqlens" in kwargs else args[1]
        rope = kwargs.get("position_embeddings", args[2] if len(args) > 2 else None)
        if self._grid is None:
            raise RuntimeError("the probed attention block ran outside an encoder call")
        received, keys = self.compute(module, hidden, cu_seqlens, rope)
        self._records.append(self._per_video(received, keys, self._grid))
        self._grid = None
        return None

    # -- the computation -------------------------------------------------------------------------------------
    def compute(
        self,
        module: nn.Module,
        hidden: torch.Tensor,
        cu_seqlens: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Received attention (S,) fp32 and head-averaged keys (S, head_dim) of ``hidden`` (S, D).

        Rows are in the encoder's internal order (window order for Qwen2.5-VL); spans from ``cu_seqlens``.
        """
        apply_rope = _rope_function(module)
        heads = module.num_heads
        bounds = [int(b) for b in cu_seqlens.tolist()]
        lengths = [b - a for a, b in pairwise(bounds)]
        cos, sin = position_embeddings
        received = hidden.new_zeros(hidden.shape[0], dtype=torch.float32)
        keys_out = None
        for first, stop in _equal_runs(lengths, self.chunk):
            start, end, count, span = bounds[first], bounds[stop], stop - first, lengths[first]
            if span == 0:
                continue
            qkv = module.qkv(hidden[start:end]).reshape(end - start, 3, heads, -1).permute(1, 0, 2, 3)
            q, k = apply_rope(qkv[0], qkv[1], cos[start:end], sin[start:end])  # (rows, heads, hd)
            q = q.float().reshape(count, span, heads, -1).transpose(1, 2)  # (c, heads, span, hd)
            k = k.float().reshape(count, span, heads, -1).transpose(1, 2)
            # heads summed, queries averaged -> (c, span); then the head average
            head_summed_received_attention(q, k, module.scaling, out=received[start:end].view(count, span))
            received[start:end] /= heads
            self.peak_elements = max(self.peak_elements, score_elements(heads, span))
            if self.want_keys:
                if keys_out is None:
                    keys_out = hidden.new_zeros((hidden.shape[0], q.shape[-1]), dtype=torch.float32)
                keys_out[start:end] = qkv[1].float().mean(dim=1)
        if self.want_keys and keys_out is None:
            keys_out = hidden.new_zeros((hidden.shape[0], module.head_dim), dtype=torch.float32)
        return received, keys_out

    def _restore_order(self, grid_thw: torch.Tensor) -> torch.Tensor | None:
        """Inverse of the encoder's window permutation (indices into merged rows), or None without windows."""
        if getattr(self.visual, "fullatt_block_indexes", None) is None:
            return None
        from transformers.vision_utils import get_vision_window_index

        window_index, _ = get_vision_window_index(
            grid_thw, spatial_merge_size=self.merge, window_size=self.visual.window_size,
            patch_size=self.visual.patch_size,
        )
        return torch.argsort(window_index)

    def _per_video(
        self, received: torch.Tensor, keys: torch.Tensor | None, grid_thw: torch.Tensor
    ) -> dict[str, Any]:
        """Pool patches into merged tokens, undo the window order, split into (t, N) per video."""
        unit = self.merge * self.merge
        pooled = received.view(-1, unit).mean(dim=1)
        pooled_keys = keys.view(-1, unit, keys.shape[-1]).mean(dim=1) if keys is not None else None
        order = self._restore_order(grid_thw.cpu())
        if order is not None:
            order = order.to(pooled.device)
            pooled = pooled[order]
            pooled_keys = pooled_keys[order] if pooled_keys is not None else None
        grids = video_token_grid(grid_thw, self.merge)
        sizes = [g.tokens for g in grids]
        saliency = [s.view(g.t, g.n) for s, g in zip(torch.split(pooled, sizes), grids)]
        split_keys = None
        if pooled_keys is not None:
            split_keys = [k.view(g.t, g.n, -1) for k, g in zip(torch.split(pooled_keys, sizes), grids)]
        return {"saliency": saliency, "keys": split_keys, "grids": grids}
