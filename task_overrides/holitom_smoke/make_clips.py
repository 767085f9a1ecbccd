"""Small synthetic video clips for the ``holitom_smoke`` tasks, written reproducibly with PyAV.

Each clip exercises one situation HoliTom must handle: a moving shape on a static background (temporal
merging keeps the background once), a scene cut (two segments), a fully static clip (everything merges),
a single-frame clip, an odd resolution (97×61), a longer clip, and a corrupt (truncated) file for the
error-reporting path. Only numpy and PyAV are needed; nothing is downloaded.

``ensure_clips(dir=None)`` writes whatever is missing (atomically, so concurrent ranks are safe) and returns
the folder: ``$HOLITOM_SMOKE_CLIPS``, else ``$LMMS_HOLITOM_CACHE/smoke-clips-v1``, else
``~/.cache/lmms_holitom/smoke-clips-v1`` — outside the source tree, so the task works from a read-only
install too. Run ``python make_clips.py [DIR]`` to (re)build them by hand.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["CLIPS", "CORRUPT_CLIP", "MISSING_CLIP", "clips_dir", "ensure_clips", "write_clip"]

VERSION = 1
FPS = 8

Frames = Callable[[], np.ndarray]


def clips_dir() -> Path:
    """Default folder of the clips (see the module docstring)."""
    if os.environ.get("HOLITOM_SMOKE_CLIPS"):
        return Path(os.environ["HOLITOM_SMOKE_CLIPS"])
    root = os.environ.get("LMMS_HOLITOM_CACHE") or os.path.join(Path.home(), ".cache", "lmms_holitom")
    return Path(root) / f"smoke-clips-v{VERSION}"


# ------------------------------------------------------------------------------------------ drawing
def _background(h: int, w: int) -> np.ndarray:
    """A fixed horizontal/vertical gradient (static across frames)."""
    y = np.linspace(40, 120, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 60, w, dtype=np.float32)[None, :]
    bg = np.zeros((h, w, 3), np.float32)
    bg[..., 0] = y
    bg[..., 1] = 80 + x
    bg[..., 2] = 160 - y / 2
    return bg.astype(np.uint8)


def _square(frame: np.ndarray, top: int, left: int, size: int, colour: tuple[int, int, int]) -> None:
    frame[max(top, 0) : max(top + size, 0), max(left, 0) : max(left + size, 0)] = colour


def moving_square(n: int = 32, h: int = 96, w: int = 128) -> np.ndarray:
    """A red square sliding left to right over a static gradient."""
    bg = _background(h, w)
    frames = np.repeat(bg[None], n, axis=0)
    for i in range(n):
        left = round(4 + i * (w - 28) / max(n - 1, 1))
        _square(frames[i], h // 2 - 10, left, 20, (230, 20, 20))
    return frames


def scene_cut(n: int = 32, h: int = 96, w: int = 128) -> np.ndarray:
    """A blue scene with a yellow disc, then (at n/2) a cut to a green scene with a white bar."""
    yy, xx = np.mgrid[0:h, 0:w]
    first = np.zeros((h, w, 3), np.uint8)
    first[:] = (20, 40, 200)
    first[(yy - h // 2) ** 2 + (xx - w // 3) ** 2 < (h // 5) ** 2] = (240, 220, 30)
    second = np.zeros((h, w, 3), np.uint8)
    second[:] = (30, 170, 40)
    second[h // 3 : h // 3 + 12, w // 6 : 5 * w // 6] = (250, 250, 250)
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[: n // 2] = first
    frames[n // 2 :] = second
    return frames


def static(n: int = 24, h: int = 96, w: int = 128) -> np.ndarray:
    """Nothing moves: the gradient with a fixed grey square."""
    frame = _background(h, w)
    _square(frame, 30, 50, 24, (128, 128, 128))
    return np.repeat(frame[None], n, axis=0)


def single_frame(h: int = 96, w: int = 128) -> np.ndarray:
    """One frame: a purple background with a white square."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:] = (140, 40, 170)
    _square(frame, 20, 20, 30, (255, 255, 255))
    return frame[None]


def odd_resolution(n: int = 20, h: int = 61, w: int = 97) -> np.ndarray:
    """An odd frame size (97×61): a vertical bar moving top to bottom."""
    bg = _background(h, w)
    frames = np.repeat(bg[None], n, axis=0)
    for i in range(n):
        top = round(i * (h - 8) / max(n - 1, 1))
        frames[i, top : top + 8, w // 2 - 3 : w // 2 + 3] = (250, 250, 0)
    return frames


def colour_change(n: int = 48, h: int = 120, w: int = 160) -> np.ndarray:
    """A square standing still that turns from red to blue two thirds of the way through."""
    bg = _background(h, w)
    frames = np.repeat(bg[None], n, axis=0)
    for i in range(n):
        colour = (220, 30, 30) if i < 2 * n // 3 else (30, 30, 220)
        _square(frames[i], 40, 60, 32, colour)
    return frames


#: file name -> frame generator
CLIPS: dict[str, Frames] = {
    "moving_square.mp4": moving_square,
    "scene_cut.mp4": scene_cut,
    "static.mp4": static,
    "single_frame.mp4": single_frame,
    "odd_resolution.mp4": odd_resolution,
    "colour_change.mp4": colour_change,
}
CORRUPT_CLIP = "corrupt.mp4"  # a truncated mp4 (no index): cannot be opened
MISSING_CLIP = "missing.mp4"  # never written


# ------------------------------------------------------------------------------------------ writing
def write_clip(path: str | os.PathLike, frames: np.ndarray, fps: int = FPS, codec: str = "mpeg4") -> Path:
    """Encode ``frames`` (F, H, W, 3) uint8 RGB into ``path`` with PyAV (high quality, single thread).

    ``mpeg4`` is FFmpeg's built-in encoder (present in every PyAV build) and accepts odd frame sizes.
    """
    import av

    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must have shape (F>0, H, W, 3), got {frames.shape}")
    fmt = {".mkv": "matroska", ".mp4": "mp4", ".avi": "avi"}.get(path.suffix.lower())
    container = av.open(str(path), mode="w", format=fmt)
    try:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "mpeg4":
            stream.codec_context.options = {"qscale": "2"}
            stream.codec_context.qmin, stream.codec_context.qmax = 1, 3
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return path


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_corrupt(path: Path) -> None:
    """A real mp4 cut to its first 40 %: the index (moov atom) written at the end is lost."""
    good = path.with_name(path.stem + ".full.mp4")
    write_clip(good, moving_square(16))
    data = good.read_bytes()
    good.unlink()
    path.write_bytes(data[: int(len(data) * 0.4)])


def ensure_clips(directory: str | os.PathLike | None = None) -> Path:
    """Write every missing clip (and the corrupt one) into ``directory``; return the folder."""
    target = Path(directory) if directory is not None else clips_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name, make in CLIPS.items():
        if not (target / name).is_file():
            _atomic_write(target / name, lambda p, make=make: write_clip(p, make()))
    if not (target / CORRUPT_CLIP).is_file():
        _atomic_write(target / CORRUPT_CLIP, _write_corrupt)
    return target


if __name__ == "__main__":
    print(ensure_clips(sys.argv[1] if len(sys.argv) > 1 else None))
