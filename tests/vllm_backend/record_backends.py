"""Record what the transformers backend feeds and answers on the cross-backend cases (`backend_cases.CASES`).

Runs in the MAIN venv (transformers >= 5.24): ``make vllm-record`` writes ``tests/fixtures/vllm_backends.json``,
which the vLLM suite (``tests/vllm_backend/test_vllm_plugin.py``) compares vLLM with, and which the main suite
(``tests/test_vllm_backends_fixture.py``) keeps current. Per case: the tiny model's weights digest, the prompt length,
the visual rows' origins (``[frame, index]``, ``[-1, -1]`` for the newline), each visual row's sum and L2 norm,
the first step's log-probabilities over the vocabulary, their top-2 margin, and the greedy tokens; for M-RoPE models
(Qwen2.5-VL, Qwen3-VL) also ``positions``: the (t, h, w) M-RoPE position ids of the visual rows as the decoder saw them
(``HoliTomTrace.position_ids``; the stock ``get_rope_index`` for dense), else None; for Qwen3-VL (`BLOCK_MODELS`)
also ``prompt_positions`` (every row's, (3, L)) and each compressed deepstack stream's row sums and norms
(``deepstack_sums`` / ``deepstack_norms``; None for dense, vLLM's own path), else None.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from backend_cases import (  # noqa: E402
    BLOCK_MODELS,
    CASES,
    FIXTURE_NAME,
    MAX_TOKENS,
    MROPE_MODELS,
    PROMPTS,
    QWEN3,
    QWEN3_MOE,
    QWEN25,
    QWEN35,
    QWEN35_MOE,
    VIDEO_METADATA,
    dtype_of,
    model_of,
    video_of,
)

FIXTURE = HERE.parent / "fixtures" / FIXTURE_NAME


def _families(model: str) -> tuple[type, type]:
    """(our transformers class, the stock class) of a tiny model."""
    import transformers

    if model == QWEN25:
        from lmms_holitom.hf.models.qwen2_5_vl import HoliTomQwen2_5_VLForConditionalGeneration

        return HoliTomQwen2_5_VLForConditionalGeneration, transformers.Qwen2_5_VLForConditionalGeneration
    if model in (QWEN3, QWEN3_MOE):
        from lmms_holitom.hf.models import qwen3_vl

        if model == QWEN3:
            return qwen3_vl.HoliTomQwen3VLForConditionalGeneration, transformers.Qwen3VLForConditionalGeneration
        return qwen3_vl.HoliTomQwen3VLMoeForConditionalGeneration, transformers.Qwen3VLMoeForConditionalGeneration
    if model in (QWEN35, QWEN35_MOE):
        from lmms_holitom.hf.models import qwen3_5

        if model == QWEN35:
            return qwen3_5.HoliTomQwen3_5ForConditionalGeneration, transformers.Qwen3_5ForConditionalGeneration
        return qwen3_5.HoliTomQwen3_5MoeForConditionalGeneration, transformers.Qwen3_5MoeForConditionalGeneration
    from lmms_holitom.hf.models.llava_onevision import HoliTomLlavaOnevisionForConditionalGeneration

    return HoliTomLlavaOnevisionForConditionalGeneration, transformers.LlavaOnevisionForConditionalGeneration


def _inputs(model: str, prompt: str, path: Path) -> dict:
    from transformers import AutoProcessor
    from transformers.video_utils import VideoMetadata

    extra = {}
    if model in MROPE_MODELS:
        meta = {k: v for k, v in VIDEO_METADATA.items() if k != "do_sample_frames"}
        extra = {"video_metadata": [VideoMetadata(**meta)], "do_sample_frames": False}
    processor = AutoProcessor.from_pretrained(path)
    return processor(text=PROMPTS[prompt], videos=[video_of(prompt)], return_tensors="pt", **extra)


def _dense(model: str, path: Path, inputs: dict, video_token: int) -> tuple:
    """(visual rows, origins, prompt tokens, every row's positions (3, L) or None) of the stock prefill."""
    import torch

    stock = _families(model)[1].from_pretrained(path, dtype=getattr(torch, dtype_of(model))).eval()
    embeds = stock(**inputs, output_hidden_states=True).hidden_states[0][0]
    mask = inputs["input_ids"][0] == video_token
    rows = embeds[mask].float()
    if model in MROPE_MODELS:
        grid = inputs["video_grid_thw"][0].tolist()
        per_group = grid[1] * grid[2] // 4
        origins = [[t, n] for t in range(grid[0]) for n in range(per_group)]
        types = torch.zeros_like(inputs["input_ids"], dtype=torch.int)
        types[inputs["input_ids"] == video_token] = 2
        extra = {"second_per_grid_ts": inputs["second_per_grid_ts"]} if "second_per_grid_ts" in inputs else {}
        dense, _ = stock.model.get_rope_index(
            inputs["input_ids"], types, video_grid_thw=inputs["video_grid_thw"],
            attention_mask=inputs["attention_mask"], **extra,
        )
        return rows, origins, int(embeds.shape[0]), dense[:, 0]
    frames = inputs["pixel_values_videos"].shape[1]
    per_frame = (rows.shape[0] - 1) // frames
    origins = [[f, n] for f in range(frames) for n in range(per_frame)] + [[-1, -1]]
    return rows, origins, int(embeds.shape[0]), None


def record_case(name: str, settings: dict) -> dict:
    """The transformers backend's record of one case (greedy, in the model's `dtype_of`: fp32 but Qwen3.5's and
    Qwen3.5-MoE's bf16); ``name`` is the case's prompt key."""
    import torch

    from lmms_holitom.integrations.vllm.settings import vllm_settings
    from lmms_holitom.testing.tiny_vllm import ensure_tiny_vllm, weights_digest

    model_name = model_of(name)
    path = ensure_tiny_vllm(model_name)
    ours = _families(model_name)[0]
    model = ours.from_pretrained(path, dtype=getattr(torch, dtype_of(model_name))).eval()
    inputs = _inputs(model_name, name, path)
    model.holitom_trace = True
    config = vllm_settings(SimpleNamespace(holitom=settings))  # what the plugin runs for these hf_overrides
    out = model.generate(
        **inputs, holitom=config, max_new_tokens=MAX_TOKENS, do_sample=False,
        output_logits=True, return_dict_in_generate=True,
    )
    trace = model.holitom_last_trace
    video_token = getattr(model.config, "video_token_id", None) or model.config.video_token_index
    deepstack = None
    if trace is None:  # dense: the stock prefill, every token in place
        rows, origins, prompt_tokens, every = _dense(model_name, path, inputs, video_token)
        visual = inputs["input_ids"][0] == video_token
    else:
        rows = trace.inputs_embeds[0][trace.visual_mask].float()
        origins, prompt_tokens = trace.origins.tolist(), int(trace.inputs_embeds.shape[1])
        every = trace.position_ids[:, 0] if trace.position_ids.dim() == 3 else None
        visual, deepstack = trace.visual_mask, trace.deepstack
    positions = every[:, visual].tolist() if every is not None else None
    block = model_name in BLOCK_MODELS
    logprobs = torch.log_softmax(out.logits[0][0].float(), dim=-1)
    top2 = logprobs.topk(2).values
    return {
        "weights": weights_digest(path),
        "prompt_tokens": prompt_tokens,
        "origins": origins,
        "positions": positions,
        "prompt_positions": every.tolist() if block else None,
        "deepstack_sums": [s.float().sum(-1).tolist() for s in deepstack] if block and deepstack else None,
        "deepstack_norms": [s.float().norm(dim=-1).tolist() for s in deepstack] if block and deepstack else None,
        "row_sums": rows.sum(-1).tolist(),
        "row_norms": rows.norm(dim=-1).tolist(),
        "logprobs": logprobs.tolist(),
        "margin": float(top2[0] - top2[1]),
        "tokens": out.sequences[0, inputs["input_ids"].shape[1]:].tolist(),
    }


def record() -> dict:
    return {case: {"model": model_of(name), "prompt": name, "settings": settings, **record_case(name, settings)}
            for case, name, settings in CASES}


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(record(), indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {FIXTURE}")
