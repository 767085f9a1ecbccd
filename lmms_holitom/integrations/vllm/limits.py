"""Engine settings under which the Qwen families' compressed videos would get wrong M-RoPE positions: refused at load.

The Qwen classes (`qwen2_5_vl`, `qwen3_vl`) add the kept rows' position offsets in the model's own ``forward`` (their
module docstrings), so the three things that skip or contradict that step are refused, each in one line naming the
setting: pipeline parallelism (later stages do not see the offsets), CUDA graphs that replay the whole model without
its Python ``forward`` (`cuda_graph_refusal`), and vLLM's own EVS (``video_pruning_rate``) together with a ``holitom``
entry. LLaVA-OneVision needs none of this (1-D positions: the kept rows take the placeholders' positions).
"""

from __future__ import annotations

from typing import Any

from lmms_holitom.integrations.vllm.settings import HoliTomVllmError

__all__ = ["check_position_limits", "cuda_graph_refusal"]


def cuda_graph_refusal(compilation_config: Any, scheduler_config: Any) -> str | None:
    """Why a CUDA graph replay could skip the model's ``forward`` (where the positions are set) under these configs,
    or None."""
    from vllm.config import CUDAGraphMode

    mode = compilation_config.cudagraph_mode
    if mode is None or mode == CUDAGraphMode.NONE:
        return None
    if mode.mixed_mode() == CUDAGraphMode.FULL:
        return (f"cudagraph_mode={mode.name} replays prefill batches without the model's Python forward, where the "
                "kept tokens' M-RoPE positions are set; use FULL_AND_PIECEWISE with --disable-chunked-mm-input")
    if (mode.decode_mode() == CUDAGraphMode.FULL and scheduler_config.enable_chunked_prefill
            and not scheduler_config.disable_chunked_mm_input):
        return (f"cudagraph_mode={mode.name} with chunked multimodal input can replay a one-token chunk of a video "
                "as a decode batch, skipping the kept tokens' M-RoPE positions; pass --disable-chunked-mm-input "
                "(or --enforce-eager)")
    return None


def check_position_limits(vllm_config: Any, family: str, rows: str, pruning_enabled: bool) -> None:
    """Raise `HoliTomVllmError` (one line naming the setting) when the engine config cannot set the compressed
    rows' positions.

    Args:
        vllm_config: the engine's ``VllmConfig``.
        family: the model family the message names (``Qwen2.5-VL``, ``Qwen3-VL``, ...).
        rows: what carries the positions, as the message names it (``the kept tokens'``, ``the block's``).
        pruning_enabled: the model's ``is_multimodal_pruning_enabled`` (vLLM's EVS is on).
    """
    if vllm_config.parallel_config.pipeline_parallel_size > 1:
        raise HoliTomVllmError(
            f"hf_overrides.holitom cannot run with pipeline_parallel_size > 1 on {family}: {rows} M-RoPE positions "
            "are set on the first stage; use tensor parallelism"
        )
    refusal = cuda_graph_refusal(vllm_config.compilation_config, vllm_config.scheduler_config)
    if refusal is not None:
        raise HoliTomVllmError(f"hf_overrides.holitom on {family}: {refusal}")
    if pruning_enabled:
        raise HoliTomVllmError(
            "hf_overrides.holitom and video_pruning_rate (vLLM's EVS) cannot both be set: choose one method"
        )
