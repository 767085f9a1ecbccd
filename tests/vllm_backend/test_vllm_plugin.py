"""The vLLM plugin equals the transformers backend (``tests/fixtures/vllm_backends.json``, recorded there) on the same
tiny model, video and prompt: prompt length, kept origins, decoder-input rows, first-step log-probabilities and the
greedy tokens; and bad settings are one clear line. Runs in the vLLM venv: ``make test-vllm``."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from backend_cases import CASES, FIXTURE_NAME, MAX_TOKENS, PROMPTS, video  # noqa: E402

FIXTURE = json.loads((HERE.parent / "fixtures" / FIXTURE_NAME).read_text())
ROOT = HERE.parents[1]
#: fp32 on both sides; the two backends' kernels differ (fused qkv, SDPA vs vLLM's CPU attention)
ATOL = 1e-3
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def _main_python() -> str:
    return os.environ.get("HOLITOM_MAIN_PYTHON", str(ROOT / ".venv" / "bin" / "python"))


@functools.cache
def built(name: str) -> tuple[str, str]:
    """(folder, weights digest) of the tiny model, built by the main venv (its builders need transformers >= 5.24)
    on first use."""
    code = (
        "from lmms_holitom.testing.tiny_vllm import ensure_tiny_vllm, weights_digest\n"
        f"p = ensure_tiny_vllm({name!r}); print(p); print(weights_digest(p))"
    )
    out = subprocess.run([_main_python(), "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    folder, digest = out.stdout.strip().splitlines()[-2:]
    return folder, digest


def model_dir(name: str) -> str:
    return built(name)[0]


class Engine:
    """One in-process engine per case, built once and kept for the session (an in-process engine's teardown resets
    vLLM's process-wide parallel state, which the next engine in the process would then miss)."""

    engines: ClassVar[dict[str, object]] = {}

    @classmethod
    def get(cls, case: str, name: str, settings: dict):
        if case in cls.engines:
            return cls.engines[case]
        from vllm import LLM

        llm = LLM(model_dir(name), distributed_executor_backend="uni", max_model_len=4096, dtype="float32",
                  enforce_eager=True, limit_mm_per_prompt={"video": 1, "image": 0}, seed=0, max_logprobs=-1,
                  hf_overrides={"holitom": settings})
        cls.engines[case] = llm
        return llm


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Each case through vLLM once: the request's output and the plugin's record of the video."""
    from vllm import SamplingParams

    results = {}
    for case, name, settings in CASES:
        folder = tmp_path_factory.mktemp(case)
        os.environ["LMMS_HOLITOM_VLLM_RECORD"] = str(folder)
        try:
            llm = Engine.get(case, name, settings)
            params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, logprobs=-1)
            out = llm.generate({"prompt": PROMPTS[name], "multi_modal_data": {"video": video()}}, params)[0]
        finally:
            del os.environ["LMMS_HOLITOM_VLLM_RECORD"]
        records = [torch.load(p) for p in sorted(folder.glob("*.pt"))]
        results[case] = (out, records)
    return results


IDS = [case for case, _, _ in CASES]


@pytest.mark.parametrize("case", IDS)
def test_same_model_file(case: str) -> None:
    assert built(FIXTURE[case]["model"])[1] == FIXTURE[case]["weights"]


@pytest.mark.parametrize("case", IDS)
def test_prompt_length(case: str, runs: dict) -> None:
    out, _ = runs[case]
    assert len(out.prompt_token_ids) == FIXTURE[case]["prompt_tokens"]


@pytest.mark.parametrize("case", IDS)
def test_origins_and_rows(case: str, runs: dict) -> None:
    _, records = runs[case]
    want = FIXTURE[case]
    if want["settings"]["method"] == "dense":
        assert records == []  # dense is vLLM's own path: nothing recorded, nothing changed
        return
    (record,) = records
    origins = [*record["origins"].tolist(), [-1, -1]]  # the newline row closes the video
    assert origins == want["origins"]
    rows = record["rows"]
    torch.testing.assert_close(rows.sum(-1), torch.tensor(want["row_sums"]), atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(rows.norm(dim=-1), torch.tensor(want["row_norms"]), atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("case", IDS)
def test_first_step_logprobs_and_tokens(case: str, runs: dict) -> None:
    out, _ = runs[case]
    want = FIXTURE[case]
    first = out.outputs[0].logprobs[0]
    got = torch.tensor([first[i].logprob for i in range(len(want["logprobs"]))])
    torch.testing.assert_close(got, torch.tensor(want["logprobs"]), atol=ATOL, rtol=0)
    assert want["margin"] > 2 * ATOL, "the reference's top-2 margin is within tolerance: pick another case"
    assert list(out.outputs[0].token_ids) == want["tokens"]


def test_tensor_parallel_two_ranks_equal_one(tmp_path) -> None:
    """TP = 2 on CPU (gloo, one core per rank; the vision tower's heads split across ranks, so the probe's head sums
    are all-reduced): the same kept origins on every rank, prompt length and tokens as the transformers fixture."""
    case = "llava-ov-holitom_wo_m"
    want = FIXTURE[case]
    job = {"model": model_dir(want["model"]), "settings": want["settings"], "prompt": PROMPTS[want["model"]],
           "engine": {"tensor_parallel_size": 2, "distributed_executor_backend": "mp"}, "out": str(tmp_path / "o.json")}
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1", "VLLM_CPU_OMP_THREADS_BIND": "0|1",
           "LMMS_HOLITOM_VLLM_RECORD": str(tmp_path / "records")}
    done = subprocess.run([sys.executable, str(HERE / "run_engine.py"), json.dumps(job)], env=env, timeout=420,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads((tmp_path / "o.json").read_text())
    assert (got["prompt_tokens"], got["tokens"]) == (want["prompt_tokens"], want["tokens"])
    records = [torch.load(p) for p in sorted((tmp_path / "records").glob("*.pt"))]
    assert len(records) >= 2  # every rank encodes the video
    for record in records:
        assert [*record["origins"].tolist(), [-1, -1]] == want["origins"]
