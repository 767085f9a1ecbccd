"""What the plugin's Qwen classes share (`qwen2_5_vl`: Qwen2.5-VL; `qwen3_vl`: Qwen3-VL, Qwen3.5 and their MoE):
`QwenHoliTomMixin` (its settings, the load-time refusals, the video grid, and ``embed_input_ids``, which hands the
compressed rows' extra position columns to the class's ``_take_positions``).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.integrations.vllm.limits import check_position_limits
from lmms_holitom.integrations.vllm.settings import HoliTomVllmError, vllm_settings

__all__ = ["QwenHoliTomMixin"]

logger = logging.getLogger("vllm.lmms_holitom")  # a child of vLLM's logger: shown with vLLM's own lines


class QwenHoliTomMixin:
    """Mixed in before vLLM's Qwen class; the class defines ``family`` and ``_take_positions``."""

    family: str
    config: Any
    is_multimodal_pruning_enabled: bool
    holitom_config: HoliTomConfig | None
    _holitom_rows: Any

    def _holitom_init(self, vllm_config: Any, rows: str) -> None:
        """Read the ``holitom`` entry; refuse (one line) the engine settings that would skip the rows' positions
        (`limits.check_position_limits`, whose message names ``rows``)."""
        self.holitom_config = vllm_settings(self.config)
        #: this step's compressed rows, set by embed_input_ids, used by forward (the class's own tuple)
        self._holitom_rows = None
        if self.holitom_config is not None:
            logger.info("lmms-holitom: %s videos run %s", self.family, self.holitom_config.given_dict())
        if self._compressing():  # else no entry, or dense: vLLM's own path, nothing to refuse
            check_position_limits(vllm_config, self.family, rows, self.is_multimodal_pruning_enabled)

    def _compressing(self) -> bool:
        return self.holitom_config is not None and self.holitom_config.spec.outer is not None

    @staticmethod
    def _video_grid(video_input: Any) -> list[list[int]]:
        """``[[t, h, w], ...]`` of a batch of video frames (precomputed embeddings cannot be compressed)."""
        if video_input["type"] != "pixel_values_videos":
            raise HoliTomVllmError("hf_overrides.holitom needs video frames, not precomputed video_embeds")
        return [[int(v) for v in g] for g in video_input["video_grid_thw"].tolist()]

    def embed_input_ids(
        self, input_ids: torch.Tensor, multimodal_embeddings: Any = None, *, is_multimodal: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._holitom_rows = None
        if self._compressing() and multimodal_embeddings is not None and len(multimodal_embeddings):
            multimodal_embeddings = self._take_positions(list(multimodal_embeddings), is_multimodal)
        return super().embed_input_ids(input_ids, multimodal_embeddings, is_multimodal=is_multimodal)

    def _take_positions(self, embeddings: list[torch.Tensor], is_multimodal: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError
