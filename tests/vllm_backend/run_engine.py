"""One vLLM engine in its own process (a tensor-parallel engine cannot share the test process): reads a JSON job
from argv — ``{"model", "settings", "prompt", "engine": {extra LLM arguments}, "out"}`` — runs the cases' video once,
greedy (with `VIDEO_METADATA` when ``"mrope"`` is true), and writes ``{"prompt_tokens", "tokens", "logprobs",
"modules"}`` to ``out``: the first step's log-probability of every vocabulary id when ``"logprobs"`` is true, and
the ``lmms_holitom`` modules the process imported. ``"settings": null`` passes no ``holitom`` entry at all.
``LMMS_HOLITOM_VLLM_RECORD`` is honoured as usual.

Or ``{"cases": [{"case", "model", "settings", "prompt" (a `PROMPTS` key), "records" (a folder)}], "engine", "out"}``:
an in-process engine per case, one after the other, each case's request as the cross-backend tests send it (its
video and metadata, greedy, every log-probability), its records in its folder; ``out`` gets, per case,
``{"prompt_tokens": ids, "tokens": ids, "logprobs": first step's, by token id}``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_cases import MAX_TOKENS, MROPE_MODELS, PROMPTS, VIDEO_METADATA, dtype_of, model_of, video, video_of


def cases(job: dict) -> None:
    import os

    from vllm import LLM, SamplingParams

    answers, engines = {}, []  # every engine kept: a torn-down in-process engine resets the parallel state
    for case in job["cases"]:
        dtype = dtype_of(model_of(case["prompt"]))  # the tiny model's dtype of both backends
        llm = LLM(case["model"], max_model_len=4096, dtype=dtype, enforce_eager=True, seed=0, max_logprobs=-1,
                  limit_mm_per_prompt={"video": 1, "image": 0}, hf_overrides={"holitom": case["settings"]},
                  **job.get("engine", {}))
        engines.append(llm)
        frames = video_of(case["prompt"])
        media = (frames, VIDEO_METADATA) if model_of(case["prompt"]) in MROPE_MODELS else frames
        os.environ["LMMS_HOLITOM_VLLM_RECORD"] = case["records"]
        out = llm.generate({"prompt": PROMPTS[case["prompt"]], "multi_modal_data": {"video": media}},
                           SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, logprobs=-1))[0]
        del os.environ["LMMS_HOLITOM_VLLM_RECORD"]
        first = out.outputs[0].logprobs[0]
        answers[case["case"]] = {"prompt_tokens": list(out.prompt_token_ids), "tokens": list(out.outputs[0].token_ids),
                                 "logprobs": [first[i].logprob for i in range(len(first))]}
    Path(job["out"]).write_text(json.dumps(answers))


def main() -> None:
    job = json.loads(sys.argv[1])
    if "cases" in job:
        cases(job)
        return
    from vllm import LLM, SamplingParams

    overrides = None if job["settings"] is None else {"holitom": job["settings"]}
    logprobs = bool(job.get("logprobs"))
    llm = LLM(job["model"], max_model_len=4096, dtype="float32", enforce_eager=True, seed=0,
              limit_mm_per_prompt={"video": 1, "image": 0}, hf_overrides=overrides,
              **({"max_logprobs": -1} if logprobs else {}), **job.get("engine", {}))
    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, logprobs=-1 if logprobs else None)
    media = (video(), VIDEO_METADATA) if job.get("mrope") else video()
    out = llm.generate({"prompt": job["prompt"], "multi_modal_data": {"video": media}}, params)[0]
    first = out.outputs[0].logprobs[0] if logprobs else {}
    Path(job["out"]).write_text(json.dumps({
        "prompt_tokens": len(out.prompt_token_ids), "tokens": list(out.outputs[0].token_ids),
        "logprobs": [first[i].logprob for i in range(len(first))],
        "modules": sorted(name for name in sys.modules if name.startswith("lmms_holitom")),
    }))

if __name__ == "__main__":
    main()
