"""Qwen2.5-VL in vLLM with HoliTom's outer merge (and the other pre-LLM methods), M-RoPE positions exact.

Mirrors, in vLLM 0.32's ``vllm/model_executor/models/qwen2_5_vl.py``:

* ``Qwen2_5_VLMultiModalProcessor._get_prompt_updates`` — ``t·h·w / merge²`` ``<|video_pad|>`` per video; here the
  method's count (`settings.video_token_count` of ``t`` temporal groups × ``N`` tokens each);
* ``_process_video_input`` — the tower, under the saliency probe (`qwen_probe`), then per video the features
  ``(t, N, E)`` go through `lmms_holitom.core.outer.compress_video_on_one_thread` (a HoliTom "frame" is one
  temporal group, as in the transformers backend, `lmms_holitom.hf.models.qwen_vision`).

**Positions.** The transformers backend gives every kept token the dense M-RoPE position ``(t, h, w)`` of its
origin, and every text token its dense position (the text after a video continues after the *dense* grid). vLLM
computes a request's M-RoPE positions when it is added (``get_mrope_input_positions``), before the encoder runs,
so only the kept tokens' positions are data-dependent; the text positions and the decode offset are not. Here:

1. ``get_mrope_input_positions`` lays out the dense positions, except that a compressed video's ``K`` placeholder
   rows all get the video's base position (where its dense grid starts) and the text after it continues after
   the dense grid, as in the transformers backend;
2. ``embed_multimodal`` returns per video ``(K, E + 3)`` fp32 rows: the kept tokens and their positions relative
   to the base, ``(⌊t·s⌋, h, w)`` with ``s = second_per_grid_ts · tokens_per_second`` (fp32 holds integers to
   2²⁴ exactly; the features convert back to the model dtype losslessly). They live in vLLM's encoder cache like
   any embedding, so chunked prefill, preemption and batching slice them together with their rows;
3. ``embed_input_ids`` (the runner's merge of this step's multimodal rows) strips the three columns and keeps,
   for this step, the batch rows they go to; ``forward`` (the same step, next call) adds the relative positions to
   those rows of ``positions`` in place, before the language model runs.

Why not vLLM's EVS hooks (``SupportsMultiModalPruning.recompute_mrope_positions``): the runner calls them only when
``is_multimodal_pruning_enabled``, which the CPU runner never sets and the GPU runners set only with a
``--video-pruning-rate`` (which would also switch on vLLM's own EVS); and EVS carries positions in embedding-dtype
channels, which bf16 rounds (257 -> 256). This mechanism uses no runner flag and no runner patch, so it is the
same code on the CPU and GPU runners, and positions are exact in any dtype for any prompt prefix. Limits (checked
at load, one line, `limits.check_position_limits`): pipeline parallelism (later stages do not see step 3); vLLM's
own ``--video-pruning-rate`` together with a ``holitom`` entry; and CUDA graphs that replay the whole model,
skipping step 3's Python (`limits.cuda_graph_refusal`: ``cudagraph_mode=FULL``; or full decode graphs with chunked
multimodal input, where a one-token prefill chunk holding a kept row looks like a decode batch —
``--disable-chunked-mm-input`` avoids it).
The GPU runner is not testable on the machines this was built on. With ``mm_encoder_tp_mode="data"`` every rank
runs the whole tower on its videos (vLLM's data-parallel sharding of the encoder is not used here).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.processing import PromptReplacement

from lmms_holitom.core.outer import compress_video_on_one_thread
from lmms_holitom.integrations.vllm.qwen_common import QwenHoliTomMixin
from lmms_holitom.integrations.vllm.qwen_probe import QwenWindowedSaliencyProbe
from lmms_holitom.integrations.vllm.record import save_record
from lmms_holitom.integrations.vllm.settings import (
    RECORD_ENV,
    video_token_count,
    vllm_settings,
)

__all__ = [
    "HoliTomQwen2_5_VLForConditionalGeneration",
    "HoliTomQwen2_5_VLMultiModalProcessor",
    "HoliTomQwen2_5_VLProcessingInfo",
]

logger = logging.getLogger("vllm.lmms_holitom")
#: columns appended to each kept row: its (t, h, w) M-RoPE position relative to the video's base
POSITION_COLUMNS = 3


class HoliTomQwen2_5_VLProcessingInfo(Qwen2_5_VLProcessingInfo):
    """Placeholder counts of the configured method (stock counts without a ``holitom`` entry)."""

    def holitom_video_tokens(self, grid_thw: Sequence[int]) -> int:
        """``<|video_pad|>`` count of one video of patch grid ``(t, h, w)``."""
        t, h, w = (int(v) for v in grid_thw)
        merge = self.get_hf_config().vision_config.spatial_merge_size
        return video_token_count(vllm_settings(self.get_hf_config()), t, h * w // (merge * merge))


class HoliTomQwen2_5_VLMultiModalProcessor(Qwen2_5_VLMultiModalProcessor):
    """The stock processor; a video's placeholder run has the method's length."""

    def _get_prompt_updates(self, mm_items: Any, hf_processor_mm_kwargs: Mapping[str, Any], out_mm_kwargs: Any):
        updates = super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        config = vllm_settings(self.info.get_hf_config())
        if config is None or config.spec.outer is None:  # inert, or dense: vLLM's own counts (its EVS included)
            return updates
        pad = self.info.get_hf_config().video_token_id

        def video(item_idx: int) -> list[int]:
            grid = out_mm_kwargs["video"][item_idx]["video_grid_thw"].data
            return [pad] * self.info.holitom_video_tokens(grid.tolist())

        return [u for u in updates if u.modality != "video"] + [
            PromptReplacement(modality="video", target=[pad], replacement=video)
        ]


@MULTIMODAL_REGISTRY.register_processor(
    HoliTomQwen2_5_VLMultiModalProcessor,
    info=HoliTomQwen2_5_VLProcessingInfo,
    dummy_inputs=Qwen2_5_VLDummyInputsBuilder,
)
class HoliTomQwen2_5_VLForConditionalGeneration(QwenHoliTomMixin, Qwen2_5_VLForConditionalGeneration):
    """vLLM's Qwen2.5-VL; videos go through the configured method before the LLM (module docstring)."""

    family = "Qwen2.5-VL"

    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._holitom_init(vllm_config, "the kept tokens'")  # rows: (batch rows, (3, n) relative positions)

    # ------------------------------------------------------------------ the encoder
    def _process_video_input(self, video_input: Any) -> tuple[torch.Tensor, ...]:
        if not self._compressing():
            return super()._process_video_input(video_input)
        config = self.holitom_config
        grid = self._video_grid(video_input)
        metadata = self.visual.prepare_encoder_metadata(grid)
        if config.spec.saliency:
            with QwenWindowedSaliencyProbe(self.visual, grid) as probe:
                embeds = self.visual(video_input["pixel_values_videos"], None, encoder_metadata=metadata)
            saliency = probe.per_video(metadata["reverse_indices"])
        else:
            embeds = self.visual(video_input["pixel_values_videos"], None, encoder_metadata=metadata)
            saliency = [(None, None)] * len(grid)
        merge = self.visual.spatial_merge_size
        sizes = [t * h * w // (merge * merge) for t, h, w in grid]
        seconds = video_input.get("second_per_grid_ts")
        out = []
        for i, (features, (t, _, w), (attention, keys)) in enumerate(zip(embeds.split(sizes), grid, saliency)):
            scale = float(seconds[i]) if seconds is not None else 1.0
            scale *= getattr(self.config.vision_config, "tokens_per_second", 1.0)
            out.append(self._compress_one(features.view(t, -1, features.shape[-1]), attention, keys, w // merge,
                                          scale))
        return tuple(out)

    def _compress_one(
        self, features: torch.Tensor, attention: torch.Tensor | None, keys: torch.Tensor | None, width: int,
        time_scale: float,
    ) -> torch.Tensor:
        """One video's features (t, N, E) -> (K, E + 3) fp32: the kept tokens and their relative (t, h, w)."""
        config = self.holitom_config
        out = compress_video_on_one_thread(features, attention, config, keys)
        expected = video_token_count(config, features.shape[0], features.shape[1])
        if out.tokens.shape[0] != expected:
            raise RuntimeError(
                f"lmms-holitom: {config.method} kept {out.tokens.shape[0]} tokens where the prompt has {expected} "
                "placeholders"
            )
        logger.info("lmms-holitom: video of %d groups x %d tokens -> %d tokens (%s)",
                    features.shape[0], features.shape[1], expected, config.method)
        frames, spatial = out.frames.long().cpu(), out.positions.long().cpu()
        times = torch.tensor([int(f * time_scale) for f in frames.tolist()], dtype=torch.long)
        relative = torch.stack([times, spatial // width, spatial % width], dim=1)
        rows = out.tokens.to(features.dtype)
        if os.environ.get(RECORD_ENV):
            save_record({
                "kind": "video", "method": config.method, "frames": int(features.shape[0]),
                "tokens_per_frame": int(features.shape[1]), "origins": torch.stack([frames, spatial], dim=1),
                "rows": rows.detach().float().cpu(), "grid_width": width, "time_scale": time_scale,
            })
        return torch.cat([rows.float(), relative.to(rows.device, torch.float32)], dim=1)

    # ------------------------------------------------------------------ positions
    def get_mrope_input_positions(self, input_tokens: list[int], mm_features: list[Any]) -> tuple[torch.Tensor, int]:
        """The stock dense layout, except that a compressed video's placeholder rows all hold its base position
        (the kept tokens' offsets are added in `forward`) and the text after it continues after the dense grid."""
        if not self._compressing():
            return super().get_mrope_input_positions(input_tokens, mm_features)
        blocks, start, next_position = [], 0, 0
        features = sorted(mm_features, key=lambda f: f.mm_position.offset)
        for feature, (offset, t, h, w, t_factor) in zip(features, self.iter_mm_grid_thw(features), strict=True):
            text = offset - start
            blocks.append(np.broadcast_to(np.arange(text), (3, text)) + next_position)
            base = next_position + text
            grid = np.indices((t, h, w))
            if t_factor != 1.0:
                grid[0] = (grid[0] * t_factor).astype(np.int64)
            dense = grid.reshape(3, -1) + base
            length = feature.mm_position.length
            blocks.append(dense if length == dense.shape[1] else np.full((3, length), base, dtype=np.int64))
            next_position = int(dense.max()) + 1
            start = offset + length
        text = len(input_tokens) - start
        blocks.append(np.broadcast_to(np.arange(text), (3, text)) + next_position)
        positions = np.concatenate(blocks, axis=1).reshape(3, -1)
        end = next_position + text
        return torch.from_numpy(positions), end - len(input_tokens)

    def _take_positions(self, embeddings: list[torch.Tensor], is_multimodal: torch.Tensor) -> list[torch.Tensor]:
        """Strip the position columns of our rows; keep (batch rows, relative positions) for this step's forward."""
        from vllm.multimodal.utils import copy_mm_embedding_modality

        hidden = self.config.text_config.hidden_size
        batch_rows = is_multimodal.nonzero().flatten()
        rows, relative, stripped, offset = [], [], [], 0
        for embedding in embeddings:
            count = embedding.shape[0]
            if embedding.shape[-1] == hidden + POSITION_COLUMNS:
                rows.append(batch_rows[offset:offset + count])
                relative.append(embedding[:, hidden:].round().long().T)
                embedding = copy_mm_embedding_modality(embedding, embedding[:, :hidden])
            stripped.append(embedding)
            offset += count
        if rows:
            self._holitom_rows = (torch.cat(rows), torch.cat(relative, dim=1))
        return stripped

    def forward(
        self, input_ids: torch.Tensor | None, positions: torch.Tensor, intermediate_tensors: Any = None,
        inputs_embeds: torch.Tensor | None = None, **kwargs: object,
    ) -> Any:
        if self._holitom_rows is not None:
            rows, relative = self._holitom_rows
            self._holitom_rows = None
            rows = rows.to(positions.device)
            positions[:, rows] += relative.to(positions.device, positions.dtype)  # in place: the runner's buffer
            if os.environ.get(RECORD_ENV):
                save_record({"kind": "positions", "positions": positions[:, rows].cpu()})
        return super().forward(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)

