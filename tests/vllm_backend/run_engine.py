"""One vLLM engine in its own process (a tensor-parallel engine cannot share the test process): reads a JSON job
from argv — ``{"model", "settings", "prompt", "engine": {extra LLM arguments}, "out"}`` — runs the cases' video once,
greedy (with `VIDEO_METADATA` when ``"mrope"`` is true), and writes ``{"prompt_tokens", "tokens", "logprobs",
"modules"}`` to ``out``: the first step's log-probability of every vocabulary id when ``"logprobs"`` is true, and
the ``lmms_holitom`` modules the process imported. ``"settings": null`` passes no ``holitom`` entry at all.
``LMMS_HOLITOM_VLLM_RECORD`` is honoured as usual."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_cases import MAX_TOKENS, VIDEO_METADATA, video


def main() -> None:
    job = json.loads(sys.argv[1])
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
