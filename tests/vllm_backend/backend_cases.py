"""The cases both backends run for the transformers == vLLM checks (numpy only: imported by both venvs).

`video()` is 8 frames of 384² with two static stretches (frames 0–3 and 4–7 repeat one image each, with a few
changed patches), so HoliTom's temporal merge, its static tokens and the exact budget's restore path all occur.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CASES", "FIXTURE_NAME", "MAX_TOKENS", "PROMPTS", "video"]

FIXTURE_NAME = "vllm_backends.json"
MAX_TOKENS = 4
PROMPTS = {
    "tiny-vllm-llava-ov": "<|im_start|>user\n<video>\nwhat is in the video?<|im_end|>\n<|im_start|>assistant\n",
}
#: (case id, tiny model, HoliTom settings as hf_overrides / HoliTomConfig fields)
CASES: list[tuple[str, str, dict]] = [
    ("llava-ov-dense", "tiny-vllm-llava-ov", {"method": "dense"}),
    ("llava-ov-visionzip", "tiny-vllm-llava-ov", {"method": "visionzip", "retain_ratio": 0.25}),
    ("llava-ov-holitom_wo_m", "tiny-vllm-llava-ov", {"method": "holitom_wo_m", "retain_ratio": 0.25}),
    ("llava-ov-holitom_wo_m-r0.1", "tiny-vllm-llava-ov", {"method": "holitom_wo_m", "retain_ratio": 0.1}),
]


def video(frames: int = 8, side: int = 384, seed: int = 0) -> np.ndarray:
    """(frames, side, side, 3) uint8: two images, each repeated for half the frames, a few 28-px blocks changed."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (2, side, side, 3), dtype=np.uint8)
    out = np.repeat(images, frames // 2, axis=0)
    for f in range(frames):
        y, x = rng.integers(0, side - 28, 2)
        out[f, y : y + 28, x : x + 28] = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    return out
