"""Video frame loading: uniform frame sampling exactly as lmms-eval's ``llava_onevision`` model does it.

`load_video_frames` returns ``max_frames_num`` RGB frames, shape ``(F, H, W, 3)``, ``uint8``, at the indices
``np.linspace(0, n - 1, max_frames_num, dtype=int)`` where ``n`` is the number of frames of the video.

Short videos (``n < max_frames_num``): lmms-eval's ``Llava_OneVision`` (its default decord path, the one the
HoliTom paper's numbers come from) keeps ``max_frames_num`` indices, so frames repeat; we do the same, so a
video always yields exactly ``max_frames_num`` frames (a 1-frame clip gives ``max_frames_num`` copies of its
frame). lmms-eval's PyAV helper ``read_video`` caps the count at ``n`` instead; we do not follow it.

Backends: ``pyav`` (default; decodes sequentially, keeps only the sampled frames and stops after the last
one) and ``decord`` (when installed). Any file that cannot give frames — missing, unreadable, without a
video stream, or with zero decodable frames — raises `VideoDecodeError`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

__all__ = ["BACKENDS", "VideoDecodeError", "check_backend", "load_video_frames", "probe_video", "sample_indices"]

BACKENDS = ("pyav", "decord")


class VideoDecodeError(RuntimeError):
    """A video file that gives no frames (missing, corrupt, no video stream, zero frames)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")

    def __reduce__(self):  # picklable (multiprocessing, lmms-eval caching)
        return (type(self), (self.path, self.reason))


def sample_indices(total_frames: int, max_frames_num: int) -> np.ndarray:
    """The frame indices lmms-eval's ``llava_onevision`` samples: ``linspace(0, n-1, max_frames_num)``."""
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if max_frames_num < 1:
        raise ValueError(f"max_frames_num must be >= 1, got {max_frames_num}")
    return np.linspace(0, total_frames - 1, max_frames_num, dtype=int)


def check_backend(backend: str) -> str:
    """Validate a backend name (and that decord is importable when asked for); return it normalised."""
    name = str(backend).strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"video_decode_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if name == "decord":
        try:
            importlib.import_module("decord")
        except ImportError as exc:
            raise ImportError(
                "video_decode_backend=decord needs the `decord` package (pip install decord, or "
                "pip install 'lmms-holitom[decord]'); the default backend pyav needs nothing extra"
            ) from exc
    return name


def load_video_frames(path: str | os.PathLike, max_frames_num: int, backend: str = "pyav") -> np.ndarray:
    """Decode ``max_frames_num`` uniformly sampled RGB frames of a video.

    Args:
        path: video file.
        max_frames_num: number of frames returned (frames repeat when the video is shorter).
        backend: ``pyav`` (default) or ``decord``.

    Returns:
        ``np.ndarray`` of shape ``(max_frames_num, H, W, 3)``, dtype ``uint8``.

    Raises:
        VideoDecodeError: missing or corrupt file, no video stream, or no decodable frame.
        ValueError: ``max_frames_num < 1`` or an unknown backend.
        ImportError: ``backend="decord"`` without decord installed.
    """
    if int(max_frames_num) < 1:
        raise ValueError(f"max_frames_num must be >= 1, got {max_frames_num}")
    backend = check_backend(backend)
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "file not found" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file")
    if backend == "decord":
        return _load_decord(path, int(max_frames_num))
    return _load_pyav(path, int(max_frames_num))


def probe_video(path: str | os.PathLike) -> str | None:
    """Cheap container check (PyAV open + video stream, nothing decoded): None if usable, else the reason."""
    path = Path(path)
    if not path.is_file():
        return "file not found" if not path.exists() else "not a regular file"
    if path.stat().st_size == 0:
        return "empty file"
    try:
        _open(path).close()
    except VideoDecodeError as exc:
        return exc.reason
    return None


# ---------------------------------------------------------------------------------------------- PyAV
def _open(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(path, f"cannot open ({type(exc).__name__}: {exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    return container


def _count_frames(path: Path) -> int:
    """Frames in the first video stream: the container's count, else counted from its packets."""
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        count = 0
        for packet in container.demux(stream):
            if packet.size > 0:
                count += 1
        return count
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"cannot read packets ({type(exc).__name__}: {exc})") from exc
    finally:
        container.close()


def _decode_at(path: Path, indices: np.ndarray) -> tuple[dict[int, np.ndarray], int]:
    """Decode sequentially, keep the frames at ``indices``; return them and the number of frames seen.

    Stops right after the last wanted index, so the count is exact only when the video ended earlier.
    """
    import av

    wanted = set(int(i) for i in indices)
    last = max(wanted)
    kept: dict[int, np.ndarray] = {}
    seen = 0
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            seen = i + 1
            if i in wanted:
                kept[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                break
    except av.FFmpegError as exc:
        if len(kept) < len(wanted):
            raise VideoDecodeError(path, f"decoding failed after {seen} frames ({exc})") from exc
    finally:
        container.close()
    return kept, seen


def _load_pyav(path: Path, max_frames_num: int) -> np.ndarray:
    total = _count_frames(path)
    if total < 1:
        raise VideoDecodeError(path, "zero frames")
    indices = sample_indices(total, max_frames_num)
    kept, seen = _decode_at(path, indices)
    if len(kept) < len(set(indices.tolist())):
        # The container over-reported its length: resample over the frames that really decode.
        if seen < 1:
            raise VideoDecodeError(path, "zero decodable frames")
        indices = sample_indices(seen, max_frames_num)
        kept, _ = _decode_at(path, indices)
        if len(kept) < len(set(indices.tolist())):
            raise VideoDecodeError(path, "frames disappeared between two decoding passes")
    return np.stack([kept[int(i)] for i in indices]).astype(np.uint8, copy=False)


# ---------------------------------------------------------------------------------------------- decord
def _load_decord(path: Path, max_frames_num: int) -> np.ndarray:
    decord = importlib.import_module("decord")
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        total = len(reader)
        if total < 1:
            raise VideoDecodeError(path, "zero frames")
        frames = reader.get_batch(sample_indices(total, max_frames_num).tolist()).asnumpy()
    except VideoDecodeError:
        raise
    except Exception as exc:  # decord raises its own DECORDError / RuntimeError types
        raise VideoDecodeError(path, f"decord failed ({type(exc).__name__}: {exc})") from exc
    return np.ascontiguousarray(frames, dtype=np.uint8)
