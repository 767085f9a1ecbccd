"""Qwen2.5-VL frames for ``vllm_holitom``, as ``qwen2_5_vl_holitom`` (and lmms-eval's ``qwen2_5_vl``) sample them.

The transformers model reads a video with ``qwen_vl_utils.process_vision_info`` (decord there): ``smart_nframes``
frames at ``round(linspace(0, n-1, k))`` (2 fps, at least 4, an even count), resized with ``smart_resize`` to
``[min_pixels, max_pixels]`` (bicubic, antialiased), then keeps ``linspace(0, T-1, max_num_frames)`` of them (unique,
last frame included). A vLLM environment has no decord, and its torchvision has no video reader, so
`read_qwen25_video` decodes the same frames with PyAV and applies ``qwen_vl_utils``' own arithmetic; the main suite
checks it against ``qwen2_5_vl_holitom``'s reader on real clips.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lmms_holitom.video import VideoDecodeError, _count_frames, _decode_at, _open

__all__ = ["qwen25_keep", "read_qwen25_video"]


def qwen25_keep(total: int, max_num_frames: int) -> np.ndarray:
    """Indices lmms-eval's ``qwen2_5_vl`` keeps of ``total`` decoded frames: ``linspace(0, T-1, max_num_frames)``,
    unique, the last frame always included."""
    indices = np.unique(np.linspace(0, total - 1, max_num_frames, dtype=int))
    if total - 1 not in indices:
        indices = np.unique(np.append(indices, total - 1))
    return indices


def _max_pixels(min_pixels: int, max_pixels: int, frames: int) -> float:
    """``qwen_vl_utils.fetch_video``'s per-frame pixel cap for ``frames`` frames (its defaults, its constants)."""
    from qwen_vl_utils import vision_process as vp

    factor = 14 * vp.SPATIAL_MERGE_SIZE
    total_pixels = vp.MODEL_SEQ_LEN * factor * factor * 0.9
    cap = max(min(vp.VIDEO_MAX_TOKEN_NUM * factor * factor, total_pixels / frames * vp.FRAME_FACTOR),
              int(min_pixels * 1.05))
    return min(max_pixels, cap)


def read_qwen25_video(path: str | os.PathLike, min_pixels: int, max_pixels: int, max_num_frames: int) -> np.ndarray:
    """(F, H, W, 3) uint8: the frames ``qwen2_5_vl_holitom`` feeds its processor (module docstring); H and W are
    multiples of 28. Raises `VideoDecodeError` for a file that gives no frames."""
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
    try:
        count = vp.smart_nframes({}, total_frames=total, video_fps=float(rate))
    except ValueError as exc:  # fewer frames than qwen_vl_utils can sample (it raises the same)
        raise VideoDecodeError(path, str(exc)) from exc
    indices = torch.linspace(0, total - 1, count).round().long().tolist()
    kept, _ = _decode_at(path, np.asarray(indices))
    if len(kept) < len(set(indices)):
        raise VideoDecodeError(path, f"{len(kept)} of {len(set(indices))} sampled frames decode")
    video = torch.from_numpy(np.stack([kept[i] for i in indices])).permute(0, 3, 1, 2)
    height, width = vp.smart_resize(video.shape[2], video.shape[3], factor=28, min_pixels=min_pixels,
                                    max_pixels=_max_pixels(min_pixels, max_pixels, count))
    video = tvf.resize(video, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
    video = video[torch.from_numpy(qwen25_keep(count, max_num_frames))]
    return video.permute(0, 2, 3, 1).contiguous().numpy().astype(np.uint8, copy=False)
