"""The cases both backends run for the transformers == vLLM checks (numpy only: imported by both venvs).

`video()` is 8 frames of 384² with two static stretches (frames 0–3 and 4–7 repeat one image each, with a few
changed patches), so HoliTom's temporal merge, its static tokens and the exact budget's restore path all occur.
Qwen models take it with `VIDEO_METADATA` (2 fps, every frame kept): 4 temporal groups of 8×8 tokens, one group per
second, so the M-RoPE time index steps by 2 (``tokens_per_second`` 2) and the 56-px windows really reorder.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CASES", "FIXTURE_NAME", "MAX_TOKENS", "MROPE_MODELS", "PROMPTS", "VIDEO_METADATA", "model_of", "video", "video_of",
]

FIXTURE_NAME = "vllm_backends.json"
MAX_TOKENS = 4
QWEN25 = "tiny-vllm-qwen2.5-vl"
#: a long text prefix before the video (the M-RoPE offset of every visual row moves; vLLM's Qwen3-VL EVS offset
#: breaks on a SHORT one, so both ends are covered: the plain prompt has 3 tokens before the video)
_LONG_PREFIX = "the video is in the answer and what is in the option of the video " * 24
PROMPTS = {
    "tiny-vllm-llava-ov": "<|im_start|>user\n<video>\nwhat is in the video?<|im_end|>\n<|im_start|>assistant\n",
    QWEN25: "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>what is in the video?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "tiny-vllm-qwen2.5-vl-long": f"<|im_start|>user\n{_LONG_PREFIX}<|vision_start|><|video_pad|><|vision_end|>"
    "what is in the video?<|im_end|>\n<|im_start|>assistant\n",
}
#: prompt key -> tiny model (a prompt key names its model unless listed here)
PROMPT_MODELS = {"tiny-vllm-qwen2.5-vl-long": QWEN25}
#: prompt key -> `video` seed (0 unless listed): another video, so vLLM's encoder cache cannot serve it from an
#: earlier case of the same engine and the plugin encodes (and records) it
VIDEO_SEEDS = {"tiny-vllm-qwen2.5-vl-long": 1}
#: the tiny models with M-RoPE (videos go in with `VIDEO_METADATA`; visual rows' (t, h, w) positions are compared)
MROPE_MODELS = (QWEN25,)
#: what vLLM's Qwen parsers take with the frames (and transformers' `VideoMetadata`, without ``do_sample_frames``)
VIDEO_METADATA = {"total_num_frames": 8, "fps": 2.0, "duration": 4.0, "frames_indices": list(range(8)),
                  "video_backend": "pyav", "do_sample_frames": False}
#: (case id, tiny model, HoliTom settings as hf_overrides / HoliTomConfig fields)
CASES: list[tuple[str, str, dict]] = [
    ("llava-ov-dense", "tiny-vllm-llava-ov", {"method": "dense"}),
    ("llava-ov-visionzip", "tiny-vllm-llava-ov", {"method": "visionzip", "retain_ratio": 0.25}),
    ("llava-ov-holitom_wo_m", "tiny-vllm-llava-ov", {"method": "holitom_wo_m", "retain_ratio": 0.25}),
    ("llava-ov-holitom_wo_m-r0.1", "tiny-vllm-llava-ov", {"method": "holitom_wo_m", "retain_ratio": 0.1}),
    ("qwen2.5-vl-dense", QWEN25, {"method": "dense"}),
    ("qwen2.5-vl-visionzip", QWEN25, {"method": "visionzip", "retain_ratio": 0.25}),
    ("qwen2.5-vl-holitom_wo_m", QWEN25, {"method": "holitom_wo_m", "retain_ratio": 0.25}),
    ("qwen2.5-vl-evs", QWEN25, {"method": "evs", "retain_ratio": 0.25}),
    ("qwen2.5-vl-vidcom2", QWEN25, {"method": "vidcom2", "retain_ratio": 0.25}),
    ("qwen2.5-vl-holitom_wo_m-long", "tiny-vllm-qwen2.5-vl-long", {"method": "holitom_wo_m", "retain_ratio": 0.25}),
]


def video_of(prompt: str) -> np.ndarray:
    """The video a case's prompt key runs on."""
    return video(seed=VIDEO_SEEDS.get(prompt, 0))


def model_of(prompt: str) -> str:
    """The tiny model a case's prompt key runs on."""
    return PROMPT_MODELS.get(prompt, prompt)


def video(frames: int = 8, side: int = 384, seed: int = 0) -> np.ndarray:
    """(frames, side, side, 3) uint8: two images, each repeated for half the frames, a few 28-px blocks changed."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (2, side, side, 3), dtype=np.uint8)
    out = np.repeat(images, frames // 2, axis=0)
    for f in range(frames):
        y, x = rng.integers(0, side - 28, 2)
        out[f, y : y + 28, x : x + 28] = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    return out
