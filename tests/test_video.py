"""`lmms_holitom.video.load_video_frames` on real files written and decoded with PyAV (no mocks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lmms_holitom.video import VideoDecodeError, check_backend, load_video_frames, sample_indices

ROOT = Path(__file__).resolve().parents[1]
LEVEL0, STEP = 8, 6  # frame i is a flat grey of level 8 + 6*i: survives lossy coding, decodes back to i


def _make_clips_module():
    path = ROOT / "task_overrides" / "holitom_smoke" / "make_clips.py"
    spec = importlib.util.spec_from_file_location("holitom_smoke_make_clips_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_clips = _make_clips_module()


def _indexed_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    levels = LEVEL0 + STEP * np.arange(n)
    return np.broadcast_to(levels[:, None, None, None], (n, h, w, 3)).astype(np.uint8).copy()


def _decoded_indices(frames: np.ndarray) -> list[int]:
    return [round((float(f.mean()) - LEVEL0) / STEP) for f in frames]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("video")


@pytest.mark.parametrize(("n", "fmt"), [(37, ".mp4"), (30, ".mkv"), (5, ".mp4"), (1, ".mp4")])
@pytest.mark.parametrize("max_frames", [8, 1, 16])
def test_exact_indices(clip_dir: Path, n: int, fmt: str, max_frames: int) -> None:
    """Decoded frames are exactly linspace(0, n-1, max_frames) (mkv has no frame count: counted)."""
    path = clip_dir / f"indexed_{n}{fmt}"
    if not path.exists():
        make_clips.write_clip(path, _indexed_frames(n))
    frames = load_video_frames(path, max_frames)
    assert frames.shape == (max_frames, 48, 64, 3)
    assert frames.dtype == np.uint8
    expected = np.linspace(0, n - 1, max_frames, dtype=int).tolist()
    assert _decoded_indices(frames) == expected
    assert expected == sample_indices(n, max_frames).tolist()


def test_mkv_reports_no_frame_count(clip_dir: Path) -> None:
    """The mkv case above really exercises the counting path."""
    import av

    path = clip_dir / "indexed_30.mkv"
    if not path.exists():
        make_clips.write_clip(path, _indexed_frames(30))
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0


def test_short_video_repeats_frames(clip_dir: Path) -> None:
    """n < max_frames_num keeps max_frames_num frames (repeats), like lmms-eval's llava_onevision."""
    path = clip_dir / "indexed_3.mp4"
    make_clips.write_clip(path, _indexed_frames(3))
    frames = load_video_frames(path, 7)
    assert _decoded_indices(frames) == [0, 0, 0, 1, 1, 1, 2]


def test_odd_resolution(clip_dir: Path) -> None:
    path = make_clips.write_clip(clip_dir / "odd.mp4", make_clips.odd_resolution())
    frames = load_video_frames(path, 4)
    assert frames.shape == (4, 61, 97, 3)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError, match="file not found") as info:
        load_video_frames(tmp_path / "nope.mp4", 8)
    assert info.value.path.endswith("nope.mp4")


def test_corrupt_file(tmp_path: Path) -> None:
    full = make_clips.write_clip(tmp_path / "full.mp4", make_clips.moving_square(16))
    data = full.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) * 2 // 5])
    (tmp_path / "garbage.mp4").write_bytes(bytes(range(256)) * 16)
    for name in ("truncated.mp4", "garbage.mp4"):
        with pytest.raises(VideoDecodeError):
            load_video_frames(tmp_path / name, 8)


def test_zero_frames_empty_file_and_audio_only(tmp_path: Path) -> None:
    import av

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty file"):
        load_video_frames(empty, 8)
    # A video stream is declared, but not a single frame is written.
    zero = tmp_path / "zero.mp4"
    container = av.open(str(zero), mode="w")
    stream = container.add_stream("mpeg4", rate=8)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    container.start_encoding()
    container.close()
    assert zero.stat().st_size > 0
    with pytest.raises(VideoDecodeError):
        load_video_frames(zero, 8)
    # Audio only.
    audio = tmp_path / "audio.mka"
    container = av.open(str(audio), mode="w")
    astream = container.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    for packet in [*astream.encode(frame), *astream.encode()]:
        container.mux(packet)
    container.close()
    with pytest.raises(VideoDecodeError, match="no video stream"):
        load_video_frames(audio, 8)


def test_smoke_corrupt_clip_is_rejected(tmp_path: Path) -> None:
    folder = make_clips.ensure_clips(tmp_path / "clips")
    with pytest.raises(VideoDecodeError):
        load_video_frames(folder / make_clips.CORRUPT_CLIP, 8)
    for name in make_clips.CLIPS:
        assert load_video_frames(folder / name, 4).shape[0] == 4


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_frames_num"):
        load_video_frames(tmp_path / "x.mp4", 0)
    with pytest.raises(ValueError, match="video_decode_backend"):
        check_backend("opencv")


def test_decord_backend_missing_or_works(clip_dir: Path) -> None:
    path = clip_dir / "indexed_37.mp4"
    if not path.exists():
        make_clips.write_clip(path, _indexed_frames(37))
    if importlib.util.find_spec("decord") is None:
        with pytest.raises(ImportError, match="decord"):
            load_video_frames(path, 8, backend="decord")
    else:
        frames = load_video_frames(path, 8, backend="decord")
        assert _decoded_indices(frames) == np.linspace(0, 36, 8, dtype=int).tolist()
