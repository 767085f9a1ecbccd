"""The vision saliency probe of LLaVA (SigLIP/CLIP towers), without switching the tower to eager attention.

* `VisionSaliencyProbe` (algorithm §1): a forward pre-hook on the self-attention module of the ONE vision layer that
  produces ``hidden_states[vision_feature_layer]``. From that module's own ``q_proj``/``k_proj`` it computes
  ``softmax(q kᵀ · scale)`` in fp32, ``frames_per_chunk`` frames at a time (peak memory
  ``chunk · heads · T²`` fp32 elements, T = 729 patches), averages over heads and then over queries (the
  attention each patch *receives*), and optionally the head-averaged keys VisionZip needs. The tower itself
  keeps its attention implementation (SDPA / flash) and never returns attention weights.
(The decoder-side probe, the last prompt token's attention row, is `lmms_holitom.hf.attention`.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmms_holitom.core.hooks import PreHookProbe

__all__ = ["VideoSaliency", "VisionSaliencyProbe", "feature_attention_module"]


def feature_attention_module(vision_tower: nn.Module, vision_feature_layer: int | list[int]) -> nn.Module:
    """The self-attention module of the encoder layer that produces ``hidden_states[vision_feature_layer]``.

    ``hidden_states`` of a vision tower with n layers has n + 1 entries (embeddings, then each layer's output),
    so index i (negative indices count from the end) is produced by layer ``i - 1``; LLaVA-OneVision's -1 is the
    last layer. With a list of feature layers, the deepest one is used (the last layer the model keeps).
    """
    encoder = getattr(vision_tower, "encoder", None)
    if encoder is None and hasattr(vision_tower, "vision_model"):
        encoder = vision_tower.vision_model.encoder
    if encoder is None or not hasattr(encoder, "layers"):
        raise TypeError(f"cannot find the encoder layers of vision tower {type(vision_tower).__name__}")
    layers = encoder.layers
    n = len(layers)
    indices = [vision_feature_layer] if isinstance(vision_feature_layer, int) else list(vision_feature_layer)
    resolved = [i if i >= 0 else n + 1 + i for i in indices]
    if any(not 0 <= i <= n for i in resolved):
        raise ValueError(f"vision_feature_layer {vision_feature_layer!r} is out of range for a {n}-layer tower")
    index = max(resolved)
    if index == 0:
        raise ValueError(
            "vision_feature_layer selects the patch embeddings (hidden_states[0]); HoliTom needs the attention of "
            "a transformer layer"
        )
    attention = getattr(layers[index - 1], "self_attn", None)
    if attention is None or not all(hasattr(attention, p) for p in ("q_proj", "k_proj")):
        raise TypeError(f"vision layer {index - 1} has no self_attn with q_proj/k_proj")
    return attention


class VisionSaliencyProbe(PreHookProbe):
    """Context manager: while active, a forward pre-hook on ``attention_module`` records per-patch saliency.

    After the tower ran (inside the ``with`` block):

    * ``attention``: (B, T) fp32 — softmax attention probabilities of that layer averaged over heads, then over
      queries, i.e. the attention each of the T patches receives (B = batch · frames);
    * ``keys``: (B, T, head_dim) fp32 — the layer's key vectors averaged over heads (only with ``want_keys``);
    * ``peak_elements``: number of elements of the largest score tensor the probe created
      (``min(chunk, B) · heads · T²``).

    The hook is registered on entry and removed on exit (also on errors); the module's inputs are not changed.

    Args:
        attention_module: a SigLIP/CLIP-style attention module with ``q_proj``, ``k_proj``, ``num_heads``,
            ``head_dim`` and ``scale``.
        frames_per_chunk: frames (batch rows) processed at once.
        want_keys: also record head-averaged keys (VisionZip).
    """

    def __init__(self, attention_module: nn.Module, frames_per_chunk: int = 8, want_keys: bool = False) -> None:
        if frames_per_chunk < 1:
            raise ValueError(f"probe_chunk must be an integer >= 1, got {frames_per_chunk!r}")
        self.module = attention_module
        self.chunk = int(frames_per_chunk)
        self.want_keys = want_keys
        self.attention: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None
        self.peak_elements = 0
        self.calls = 0

    @torch.no_grad()
    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        attention, keys = self.compute(module, hidden, mask)
        self.attention = attention if self.attention is None else torch.cat([self.attention, attention])
        if keys is not None:
            self.keys = keys if self.keys is None else torch.cat([self.keys, keys])
        self.calls += 1
        return None

    def compute(
        self, module: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Received attention (B, T) and head-averaged keys (B, T, head_dim) of ``hidden`` (B, T, D)."""
        batch, tokens, _ = hidden.shape
        heads, head_dim = module.num_heads, module.head_dim
        received = hidden.new_empty((batch, tokens), dtype=torch.float32)
        keys_out = hidden.new_empty((batch, tokens, head_dim), dtype=torch.float32) if self.want_keys else None
        for start in range(0, batch, self.chunk):
            stop = min(start + self.chunk, batch)
            h = hidden[start:stop]
            q = module.q_proj(h).view(stop - start, tokens, heads, head_dim).transpose(1, 2).float()
            k = module.k_proj(h).view(stop - start, tokens, heads, head_dim).transpose(1, 2).float()
            scores = torch.matmul(q, k.transpose(-1, -2)) * module.scale  # (c, heads, T, T)
            if mask is not None:
                scores = scores + mask[start:stop].float()
            self.peak_elements = max(self.peak_elements, scores.numel())
            probs = torch.softmax(scores, dim=-1)
            del scores
            received[start:stop] = probs.mean(dim=1).mean(dim=1)  # heads, then queries -> (c, T)
            del probs
            if keys_out is not None:
                keys_out[start:stop] = k.mean(dim=1)
        return received, keys_out


@dataclass
class VideoSaliency:
    """What the vision probe found for one ``get_video_features`` call (attached as ``.holitom_saliency``).

    Attributes:
        attention: (B·F, N) fp32, received attention pooled like the features (docs/algorithm.md §1).
        keys: (B·F, N, head_dim) fp32, head-averaged keys of the same layer, pooled like the features (VisionZip).
        raw_attention: (B·F, T) fp32 before pooling (T = 729 patches for SigLIP-384/14).
        peak_elements: elements of the largest score tensor the probe created (chunk · heads · T²).
        chunk: frames per probe chunk.
    """

    attention: torch.Tensor
    keys: torch.Tensor
    raw_attention: torch.Tensor
    peak_elements: int
    chunk: int
