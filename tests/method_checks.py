"""Checks every outer method passes through every model family (imported by the per-method test files).

`run_on_family` loads a tiny model of a family once per process, greedily decodes a few tokens of one video prompt
with a `HoliTomConfig` and checks that cached decoding equals the uncached recompute (one forward over prompt +
the tokens so far, same compression); it returns the prefill's `HoliTomStats`.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from conftest import make_frames

FAMILIES = ("tiny", "tiny-qwen2.5-vl", "tiny-qwen3-vl")
STEPS = 3
QUESTION = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what is in the video?"}]}]


@functools.cache
def tiny_family(name: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """(HoliTom model, processor outputs of an 8-frame video prompt) of the built-in tiny model ``name``."""
    from transformers import AutoProcessor

    from lmms_holitom.hf.models import model_class_for
    from lmms_holitom.testing import resolve_pretrained

    path = resolve_pretrained(name)
    processor = AutoProcessor.from_pretrained(path)
    model = model_class_for(path).from_pretrained(path).eval()
    prompt = processor.apply_chat_template(QUESTION, add_generation_prompt=True)
    extra: dict[str, Any] = {}
    if name == "tiny-qwen3-vl":
        extra = {"do_sample_frames": False,
                 "video_metadata": [{"fps": 2.0, "total_num_frames": 8, "frames_indices": list(range(8))}]}
    inputs = dict(processor(text=prompt, videos=[make_frames("aaabbcdd", size=112)], return_tensors="pt", **extra))
    return model, inputs


def run_on_family(name: str, cfg: Any) -> dict[str, Any]:
    """Generate with ``cfg`` on the tiny ``name``; assert cached decoding == uncached recompute; the stats."""
    model, inputs = tiny_family(name)
    return decode_and_recompute(model, inputs, cfg)


def decode_and_recompute(model: Any, inputs: dict[str, torch.Tensor], cfg: Any) -> dict[str, Any]:
    """Greedy `STEPS` tokens of ``inputs`` with ``cfg``; assert cached decoding == the uncached recompute (one
    forward over prompt + the tokens so far, same compression) at every step; the prefill's stats."""
    gen = {"max_new_tokens": STEPS, "do_sample": False, "return_dict_in_generate": True, "output_logits": True}
    with torch.no_grad():
        out = model.generate(**inputs, **gen, holitom=cfg)
    stats = dict(model.holitom_stats)
    prompt = inputs["input_ids"]
    p = prompt.shape[1]
    media = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    for t in range(STEPS):
        ids = torch.cat([prompt, out.sequences[:, p:p + t]], dim=1)
        extra = {}
        if "mm_token_type_ids" in media:
            extra["mm_token_type_ids"] = torch.cat([media["mm_token_type_ids"], torch.zeros_like(ids[:, p:])], dim=1)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), holitom=cfg, holitom_prompt_length=p,
                           use_cache=False, **{**media, **extra}).logits[0, -1]
        torch.testing.assert_close(logits, out.logits[t][0], atol=1e-4, rtol=0)
    return stats


def assert_outer_count_on_family(family: str, method: str, count: Any) -> None:
    """In the tiny ``family`` model: ``count(F, N, 0.3)`` visual tokens enter the LLM (plus LLaVA's newline), no
    inner step, and cached decoding equals the uncached recompute (`run_on_family`)."""
    from lmms_holitom.config import HoliTomConfig

    stats = run_on_family(family, HoliTomConfig(method=method, retain_ratio=0.3))
    frames, n = stats["frames"], stats["tokens_per_frame"]
    newline = 1 if family == "tiny" else 0
    assert stats["method"] == method and stats["outer_tokens"] == count(frames, n, 0.3) + newline
    assert stats["inner_tokens"] == stats["outer_tokens"]


def assert_entry_points(method: str, count: Any) -> None:
    """Model args / YAML (`from_dict`), the authors' env vars (``WRAPPER=<method>``), the cost model's count and the
    bench's settings all take ``method``."""
    from lmms_holitom.bench.settings import build_settings
    from lmms_holitom.config import HoliTomConfig
    from lmms_holitom.flops import paper_visual_tokens

    assert HoliTomConfig.from_dict({"method": method, "retain_ratio": "0.25"}) == HoliTomConfig(
        method=method, retain_ratio=0.25)
    assert HoliTomConfig.from_env({"WRAPPER": method, "RETAIN_RATIO": "0.15"}).retain_ratio == 0.15
    assert paper_visual_tokens(HoliTomConfig(method=method, retain_ratio=0.1), 32, 196) == count(32, 196, 0.1)
    names = [s.name for s in build_settings(["dense", method], [0.1, 0.25], 28)]
    assert names == ["dense", f"{method}@0.10", f"{method}@0.25"]
