"""The measurements of ``holitom bench --backend vllm``, on in-process vLLM engines (one per setting).

* `start_engine` — an in-process engine (``uni`` executor) for one setting: the plugin's ``hf_overrides`` entry,
  no prefix caching and no multimodal processor cache (every request encodes its own video), a KV cache sized for
  the largest batch, stats on (``RequestOutput.metrics``);
* `run_batch` — ``c`` concurrent requests to one engine (``LLM.generate`` with a list: all are queued, then vLLM
  batches them continuously): wall time, each request's TTFT (``metrics.first_token_latency``: first token minus
  arrival, vLLM's own figure), prompt and output tokens, and the process RSS sampled meanwhile;
* `pruning_times` — the pruning's own cost, timed outside the engine loop on the engine's model
  (``LLM.apply_model``) with the same frames: the vision path alone (tower + projector + pooling), the same under
  the saliency probe, and the plugin's ``merge_video`` (`core.outer.compress_video` on one CPU thread);
  probe = (vision with probe) − vision.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lmms_holitom.bench.inputs import synthetic_video
from lmms_holitom.bench.meters import MB, RssSampler
from lmms_holitom.bench.settings import Setting
from lmms_holitom.bench.vllm_model import VllmShape

__all__ = ["PROMPT", "PROMPT_MARGIN", "BatchResult", "pruning_times", "run_batch", "start_engine", "step_budget",
           "video_batch"]

PROMPT = "<|im_start|>user\n<video>\nwhat is in the video?<|im_end|>\n<|im_start|>assistant\n"


@dataclass(frozen=True)
class BatchResult:
    """One batch of concurrent requests to one engine."""

    wall_s: float
    ttft_s: tuple[float, ...]
    prompt_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]
    peak_rss_mb: float | None
    rss_rise_mb: float | None

    def figures(self) -> dict[str, float | None]:
        """requests/s, TTFT p50/p90 (ms), output tokens/s, peak RSS and its rise over the batch start (MB)."""
        ttft = sorted(self.ttft_s)
        return {"requests_per_s": len(ttft) / self.wall_s, "ttft_p50_ms": 1e3 * statistics.median(ttft),
                "ttft_p90_ms": 1e3 * _quantile(ttft, 0.9), "output_tok_s": sum(self.output_tokens) / self.wall_s,
                "peak_rss_mb": self.peak_rss_mb, "rss_rise_mb": self.rss_rise_mb}


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted ``values``."""
    pos = q * (len(values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def video_batch(count: int, frames: int, *, scenes: int, seed: int) -> list[np.ndarray]:
    """``count`` distinct videos (F, 384, 384, 3) uint8 (`inputs.synthetic_video`, seeds ``seed .. seed+count-1``)."""
    out = []
    for i in range(count):
        video = synthetic_video(frames, size=384, scenes=scenes, seed=seed + i)[0]  # (F, 3, H, W) in [-1, 1]
        out.append(((video.permute(0, 2, 3, 1) + 1.0) * 127.5).round().to(torch.uint8).numpy())
    return out


#: vLLM 0.32's default token budget of one engine step (LLM class, CPU runner, one rank), kept unless a prompt needs
#: more
_STEP_TOKENS = 4096
#: room in a prompt (and in ``max_len``) for its text around the video: the bench prompt has 29 text tokens
PROMPT_MARGIN = 64


def step_budget(policy: str, *, video_tokens: int, max_len: int, max_batch: int) -> int | None:
    """``max_num_batched_tokens`` of one engine (None: vLLM's default) under a ``--step-tokens`` policy.

    vLLM's scheduler fills a step with prompt tokens up to this budget, and encodes every video whose placeholders
    fall in the step first (its encoder budget is the same number of *placeholder* tokens): the first tokens of
    the step's requests all wait for all of its encodes. So a method that shrinks a video's placeholders also lets
    more videos into one step, which raises throughput and the median TTFT of a burst together.

    * ``default`` — vLLM's default (4,096 on a CPU runner), or ``max_len`` when a dense prompt needs more (a
      32-frame video: 6,273 placeholders), for every engine alike;
    * ``prompt`` — the engine's own prompt (``video_tokens`` placeholders and newline, ``PROMPT_MARGIN`` of text)
      plus one decode token per running request: every step takes at most one new video, the policy the
      ``default`` one leaves dense with at 32 frames, applied to every engine;
    * an integer — that budget for every engine.
    """
    if policy == "default":
        return max_len if max_len > _STEP_TOKENS else None
    if policy == "prompt":
        return video_tokens + 1 + PROMPT_MARGIN + max_batch
    return int(policy)


def _kv_bytes(shape: VllmShape, tokens: int, dtype: str) -> int:
    per_token = 2 * shape.text_layers * shape.text_kv_heads * (shape.text_width // shape.text_heads)
    return per_token * tokens * (2 if dtype == "bf16" else 4)


def start_engine(model: str, setting: Setting, shape: VllmShape, *, frames: int, max_len: int, max_batch: int,
                 dtype: str, seed: int, step_tokens: int | None = None) -> Any:
    """An in-process engine running ``setting`` through the plugin (``dense``: no ``holitom`` entry, stock vLLM)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: apply_model and one clock
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # vLLM logs to stdout, where the table goes
    from vllm import LLM

    overrides = {} if setting.config.method == "dense" else {"hf_overrides": {"holitom": setting.config.given_dict()}}
    kv = max(64 * 2**20, int(1.25 * _kv_bytes(shape, max_len * max_batch, dtype)))
    step = {} if step_tokens is None else {"max_num_batched_tokens": step_tokens}  # `step_budget`
    return LLM(model, distributed_executor_backend="uni", max_model_len=max_len, seed=seed, enforce_eager=True,
               **step,
               dtype="bfloat16" if dtype == "bf16" else "float32", kv_cache_memory_bytes=kv,
               limit_mm_per_prompt={"video": {"count": 1, "num_frames": frames, "width": 384, "height": 384},
                                    "image": 0},
               disable_log_stats=False, enable_prefix_caching=False, mm_processor_cache_gb=0, skip_mm_profiling=True,
               **overrides)


def run_batch(llm: Any, videos: list[np.ndarray], new_tokens: int) -> BatchResult:
    """All ``videos`` as concurrent requests (the same prompt, ``new_tokens`` greedy tokens each, EOS ignored)."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True, temperature=0.0)
    requests = [{"prompt": PROMPT, "multi_modal_data": {"video": v}} for v in videos]
    with RssSampler(interval=0.01) as rss:
        start = time.perf_counter()
        outs = llm.generate(requests, params, use_tqdm=False)
        wall = time.perf_counter() - start
    return BatchResult(
        wall_s=wall,
        ttft_s=tuple(float(o.metrics.first_token_latency) for o in outs),
        prompt_tokens=tuple(len(o.prompt_token_ids) for o in outs),
        output_tokens=tuple(len(o.outputs[0].token_ids) for o in outs),
        peak_rss_mb=rss.peak / MB if rss.delta_mb is not None else None,
        rss_rise_mb=rss.delta_mb,
    )


def pruning_times(llm: Any, video: np.ndarray, repeats: int) -> dict[str, list[float]]:
    """ms per repeat of ``vision`` (tower + projector + pooling), ``probe`` (the saliency probe's extra time) and
    ``merge`` (the plugin's ``merge_video``) on the engine's own model and the frames of ``video`` (F, H, W, 3)
    uint8."""

    def measure(model: Any) -> dict[str, list[float]]:
        from lmms_holitom.integrations.vllm.llava_onevision import HoliTomLlavaOnevisionForConditionalGeneration

        dtype = next(model.parameters()).dtype
        frames = (torch.from_numpy(video).permute(0, 3, 1, 2).float() / 127.5 - 1.0).to(dtype)  # SigLIP's 0.5/0.5
        ours = isinstance(model, HoliTomLlavaOnevisionForConditionalGeneration)  # else the plugin is not registered
        config = model.holitom_config if ours else None
        out: dict[str, list[float]] = {"vision": [], "probe": [], "merge": []}
        with torch.inference_mode():
            for _ in range(repeats + 1):  # the first is a warm-up
                t0 = time.perf_counter()
                features = model._video_pixels_to_features(model.vision_tower, frames)
                t1 = time.perf_counter()
                attention = keys = None
                if config is not None and config.spec.saliency:
                    features, attention, keys = model._features_and_saliency(frames)
                t2 = time.perf_counter()
                if config is not None and config.spec.outer is not None:
                    model.merge_video(features, attention, keys)  # the plugin's merge, as the engine runs it
                t3 = time.perf_counter()
                for name, ms in (("vision", t1 - t0), ("probe", max(0.0, (t2 - t1) - (t1 - t0)) if attention
                                 is not None else 0.0), ("merge", t3 - t2)):
                    out[name].append(1e3 * ms)
        return {k: v[1:] for k, v in out.items()}

    return llm.apply_model(measure)[0]
