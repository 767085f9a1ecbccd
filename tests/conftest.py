"""Shared test fixtures: offline environment, the tiny LLaVA-OneVision, small videos.

Everything runs offline (no hub access): ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` are set before anything
imports transformers, and the tiny model is built (about a second) into a per-session cache folder
(``LMMS_HOLITOM_CACHE``), never into the user's home.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Before collection imports anything that might build or look up the tiny model; removed at session end.
_SESSION_CACHE = tempfile.TemporaryDirectory(prefix="lmms-holitom-test-cache-")
os.environ["LMMS_HOLITOM_CACHE"] = _SESSION_CACHE.name


def _has_vllm() -> bool:
    spec = importlib.util.find_spec("vllm")
    return spec is not None and spec.origin is not None  # a real package, not a folder of that name


#: tests/vllm_backend run in the vLLM venv (``make test-vllm``); the main venv has no vLLM
collect_ignore = [] if _has_vllm() else ["vllm_backend"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION_CACHE.cleanup()


# ---------------------------------------------------------------------------------------------- tiny model
@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """Folder of the tiny offline LLaVA-OneVision (`lmms_holitom.testing`), built once per session."""
    from lmms_holitom.testing import ensure_tiny_model

    return ensure_tiny_model()


@pytest.fixture(scope="session")
def tiny_processor(tiny_model_path: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_path)


@pytest.fixture(scope="session")
def stock_model(tiny_model_path: Path):
    """transformers' own LlavaOnevisionForConditionalGeneration (fp32, sdpa, eval) — the reference."""
    from transformers import LlavaOnevisionForConditionalGeneration

    return LlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_path).eval()


@pytest.fixture(scope="session")
def holitom_model(tiny_model_path: Path):
    """The HoliTom subclass on the same weights (fp32, sdpa, eval). Tests switch methods per call
    (``generate(..., holitom=cfg)`` / ``forward(..., holitom=cfg)``) and must not leave another config set."""
    from lmms_holitom.config import HoliTomConfig
    from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration

    return HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(
        tiny_model_path, holitom=HoliTomConfig(method="dense")
    ).eval()


# ---------------------------------------------------------------------------------------------- videos
def make_frames(pattern: str = "aaabbc", size: int = 64, seed: int = 0) -> np.ndarray:
    """(F, size, size, 3) uint8 frames; equal letters are identical frames (static tokens for HoliTom)."""
    rng = np.random.RandomState(seed)
    images = {ch: rng.randint(0, 256, (size, size, 3), dtype=np.uint8) for ch in dict.fromkeys(pattern)}
    return np.stack([images[ch] for ch in pattern])


def video_inputs(processor, frames: np.ndarray, question: str = "what is in the video?") -> dict:
    """Processor outputs (``input_ids``, ``attention_mask``, ``pixel_values_videos``) of one video prompt."""
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    return dict(processor(text=prompt, videos=[frames], return_tensors="pt"))


@pytest.fixture(scope="session")
def make_video_inputs(tiny_processor):
    """``make_video_inputs(pattern="aaabbc", question=..., seed=0)`` -> processor outputs of one video prompt
    for the tiny model (see `make_frames` for the pattern)."""

    def make(pattern: str = "aaabbc", question: str = "what is in the video?", seed: int = 0) -> dict:
        return video_inputs(tiny_processor, make_frames(pattern, seed=seed), question)

    return make


@pytest.fixture(scope="session")
def tiny_video_inputs(make_video_inputs) -> dict:
    """One 6-frame video prompt (frames a a a b b c: two static segments and a single frame)."""
    return make_video_inputs("aaabbc")


@pytest.fixture
def mp4_clip(tmp_path: Path) -> Iterator[Path]:
    """A small real mp4 (16 frames, 64×48, half static) written with PyAV."""
    import av

    path = tmp_path / "clip.mp4"
    rng = np.random.RandomState(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(16):
            image = np.full((48, 64, 3), i * 10, np.uint8)
            image[:, :32] = rng.randint(0, 256, (48, 32, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    yield path
