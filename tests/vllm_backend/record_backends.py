"""Record what the transformers backend feeds and answers on the cross-backend cases (`backend_cases.CASES`).

Runs in the MAIN venv (transformers >= 5.24): ``make vllm-record`` writes ``tests/fixtures/vllm_backends.json``,
which the vLLM suite (``tests/vllm_backend/test_vllm_plugin.py``) compares vLLM with, and which the main suite
(``tests/test_vllm_backends_fixture.py``) keeps current. Per case: the tiny model's weights digest, the prompt length,
the visual rows' origins (``[frame, index]``, ``[-1, -1]`` for the newline), each visual row's sum and L2 norm,
the first step's log-probabilities over the vocabulary, their top-2 margin, and the greedy tokens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from backend_cases import CASES, FIXTURE_NAME, MAX_TOKENS, PROMPTS, video  # noqa: E402

FIXTURE = HERE.parent / "fixtures" / FIXTURE_NAME


def record_case(name: str, settings: dict) -> dict:
    """The transformers backend's record of one case (fp32, greedy)."""
    import torch
    from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

    from lmms_holitom.hf.models.llava_onevision import HoliTomLlavaOnevisionForConditionalGeneration
    from lmms_holitom.integrations.vllm.settings import vllm_settings
    from lmms_holitom.testing.tiny_vllm import ensure_tiny_vllm, weights_digest

    path = ensure_tiny_vllm(name)
    model = HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    inputs = AutoProcessor.from_pretrained(path)(text=PROMPTS[name], videos=[video()], return_tensors="pt")
    model.holitom_trace = True
    config = vllm_settings(SimpleNamespace(holitom=settings))  # what the plugin runs for these hf_overrides
    out = model.generate(
        **inputs, holitom=config, max_new_tokens=MAX_TOKENS, do_sample=False,
        output_logits=True, return_dict_in_generate=True,
    )
    trace = model.holitom_last_trace
    if trace is None:  # dense: the stock prefill, every token in place
        stock = LlavaOnevisionForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
        embeds = stock(**inputs, output_hidden_states=True).hidden_states[0][0]
        rows = embeds[inputs["input_ids"][0] == model.config.video_token_index].float()
        frames = inputs["pixel_values_videos"].shape[1]
        per_frame = (rows.shape[0] - 1) // frames
        origins = [[f, n] for f in range(frames) for n in range(per_frame)] + [[-1, -1]]
        prompt_tokens = int(embeds.shape[0])
    else:
        rows = trace.inputs_embeds[0][trace.visual_mask].float()
        origins, prompt_tokens = trace.origins.tolist(), int(trace.inputs_embeds.shape[1])
    logprobs = torch.log_softmax(out.logits[0][0].float(), dim=-1)
    top2 = logprobs.topk(2).values
    return {
        "weights": weights_digest(path),
        "prompt_tokens": prompt_tokens,
        "origins": origins,
        "row_sums": rows.sum(-1).tolist(),
        "row_norms": rows.norm(dim=-1).tolist(),
        "logprobs": logprobs.tolist(),
        "margin": float(top2[0] - top2[1]),
        "tokens": out.sequences[0, inputs["input_ids"].shape[1]:].tolist(),
    }


def record() -> dict:
    return {case: {"model": name, "settings": settings, **record_case(name, settings)}
            for case, name, settings in CASES}


if __name__ == "__main__":
    FIXTURE.write_text(json.dumps(record(), indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {FIXTURE}")
