"""Qwen-VL frames for ``vllm_holitom``, as ``qwen2_5_vl_holitom`` / ``qwen3_vl_holitom`` / ``qwen3_5_holitom`` (and
lmms-eval's ``qwen2_5_vl`` / ``qwen3_vl`` / ``qwen3_5``) sample them.

The transformers models read a video with ``qwen_vl_utils.process_vision_info`` (decord there): ``smart_nframes``
frames at ``round(linspace(0, n-1, k))`` (from the item's ``nframes``, or its ``fps`` / ``max_frames``, default
2 fps), resized with ``smart_resize`` to a multiple of ``2 * image_patch_size`` (28 for Qwen2.5-VL, 32 for Qwen3-VL)
within ``[min_pixels, max_pixels]`` capped by ``fetch_video``'s per-frame budget (bicubic, antialiased). Qwen2.5-VL
then keeps ``linspace(0, T-1, max_num_frames)`` of them (unique, last frame included); Qwen3-VL keeps them all and
passes the video metadata (source fps, sampled indices, frame count) to its processor, whose timestamp tokens need
it. A vLLM environment has no decord, and its torchvision has no video reader, so `read_qwen_video` decodes the
same frames with PyAV and applies ``qwen_vl_utils``' own arithmetic; the main suite checks it against the
transformers models' readers on real clips.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lmms_holitom.video import VideoDecodeError, _count_frames, _decode_at, _open

__all__ = ["qwen25_keep", "read_qwen25_video", "read_qwen_video"]


def qwen25_keep(total: int, max_num_frames: int) -> np.ndarray:
    """Indices lmms-eval's ``qwen2_5_vl`` keeps of ``total`` decoded frames: ``linspace(0, T-1, max_num_frames)``,
    unique, the last frame always included."""
    indices = np.unique(np.linspace(0, total - 1, max_num_frames, dtype=int))
    if total - 1 not in indices:
        indices = np.unique(np.append(indices, total - 1))
    return indices


def _max_pixels(item: dict[str, Any], frames: int, factor: int) -> float:
    """``qwen_vl_utils.fetch_video``'s per-frame pixel cap for ``frames`` frames of side multiple ``factor`` (the
    item's ``min_pixels`` / ``max_pixels`` / ``total_pixels``, its defaults, its constants)."""
    from qwen_vl_utils import vision_process as vp

    min_pixels = item.get("min_pixels", vp.VIDEO_MIN_TOKEN_NUM * factor * factor)
    total_pixels = item.get("total_pixels", vp.MODEL_SEQ_LEN * factor * factor * 0.9)
    cap = max(min(vp.VIDEO_MAX_TOKEN_NUM * factor * factor, total_pixels / frames * vp.FRAME_FACTOR),
              int(min_pixels * 1.05))
    return min(item.get("max_pixels", cap), cap)


def read_qwen_video(path: str | os.PathLike, item: dict[str, Any],
                    image_patch_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """(frames (F, H, W, 3) uint8 with H, W multiples of ``2 * image_patch_size``; metadata ``{fps, frames_indices,
    total_num_frames, video_backend}`` as ``qwen_vl_utils`` returns it) of ``process_vision_info`` for a video item
    (``min_pixels``, ``max_pixels``, ``total_pixels``, ``nframes`` or ``fps`` / ``max_frames``; an ``nframes`` above
    the video's frame count is that count, as the transformers Qwen3-VL model asks). Raises `VideoDecodeError`."""
    import torch
    from qwen_vl_utils import vision_process as vp
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "file not found" if not path.exists() else "not a regular file")
    container = _open(path)
    try:
        rate = container.streams.video[0].average_rate
    finally:
        container.close()
    total = _count_frames(path)
    if total < 1 or not rate:
        raise VideoDecodeError(path, "zero frames" if total < 1 else "no frame rate")
    sampling = {k: item[k] for k in ("nframes", "fps", "min_frames", "max_frames") if k in item}
    if "nframes" in sampling:
        sampling["nframes"] = min(sampling["nframes"], total)
    try:
        count = vp.smart_nframes(sampling, total_frames=total, video_fps=float(rate))
    except ValueError as exc:  # fewer frames than qwen_vl_utils can sample (it raises the same)
        raise VideoDecodeError(path, str(exc)) from exc
    indices = torch.linspace(0, total - 1, count).round().long().tolist()
    kept, _ = _decode_at(path, np.asarray(indices))
    if len(kept) < len(set(indices)):
        raise VideoDecodeError(path, f"{len(kept)} of {len(set(indices))} sampled frames decode")
    video = torch.from_numpy(np.stack([kept[i] for i in indices])).permute(0, 3, 1, 2)
    factor = image_patch_size * vp.SPATIAL_MERGE_SIZE
    height, width = vp.smart_resize(video.shape[2], video.shape[3], factor=factor,
                                    min_pixels=item.get("min_pixels", vp.VIDEO_MIN_TOKEN_NUM * factor * factor),
                                    max_pixels=_max_pixels(item, count, factor))
    video = tvf.resize(video, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    metadata = {"fps": float(rate), "frames_indices": indices, "total_num_frames": total, "video_backend": "pyav"}
    return video.permute(0, 2, 3, 1).contiguous().numpy().astype(np.uint8, copy=False), metadata


def read_qwen25_video(path: str | os.PathLike, min_pixels: int, max_pixels: int, max_num_frames: int) -> np.ndarray:
    """(F, H, W, 3) uint8: the frames ``qwen2_5_vl_holitom`` feeds its processor (module docstring); H and W are
    multiples of 28. Raises `VideoDecodeError` for a file that gives no frames."""
    video, _ = read_qwen_video(path, {"min_pixels": min_pixels, "max_pixels": max_pixels}, image_patch_size=14)
    return video[qwen25_keep(len(video), max_num_frames)]
