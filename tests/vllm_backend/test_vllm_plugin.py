"""The vLLM plugin equals the transformers backend (``tests/fixtures/vllm_backends.json``, recorded there) on the same
tiny model, video and prompt: prompt length, kept origins, the kept rows' M-RoPE positions (Qwen2.5-VL, exactly, as the
decoder received them), decoder-input rows, first-step log-probabilities and the greedy tokens; and bad settings are
one clear line. Runs in the vLLM venv: ``make test-vllm``."""

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

from backend_cases import (  # noqa: E402
    CASES,
    FIXTURE_NAME,
    MAX_TOKENS,
    MROPE_MODELS,
    PROMPTS,
    VIDEO_METADATA,
    model_of,
    video_of,
)

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
    """One in-process engine per (model, settings, dtype), built once and kept for the session (an in-process engine's
    teardown resets vLLM's process-wide parallel state, which the next engine in the process would then miss)."""

    engines: ClassVar[dict[str, object]] = {}

    @classmethod
    def get(cls, name: str, settings: dict, dtype: str = "float32"):
        key = json.dumps([name, settings, dtype], sort_keys=True)
        if key in cls.engines:
            return cls.engines[key]
        from vllm import LLM

        llm = LLM(model_dir(name), distributed_executor_backend="uni", max_model_len=4096, dtype=dtype,
                  enforce_eager=True, limit_mm_per_prompt={"video": 1, "image": 0}, seed=0, max_logprobs=-1,
                  hf_overrides={"holitom": settings})
        cls.engines[key] = llm
        return llm


def request(prompt: str) -> dict:
    """The vLLM request of a case's prompt key: Qwen videos go in as (frames, metadata)."""
    frames = video_of(prompt)
    media = (frames, VIDEO_METADATA) if model_of(prompt) in MROPE_MODELS else frames
    return {"prompt": PROMPTS[prompt], "multi_modal_data": {"video": media}}


def generate(name: str, settings: dict, prompt: str, folder: Path, dtype: str = "float32") -> tuple:
    """(request output, the plugin's records in write order) of one request."""
    from vllm import SamplingParams

    os.environ["LMMS_HOLITOM_VLLM_RECORD"] = str(folder)
    try:
        llm = Engine.get(name, settings, dtype)
        params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, logprobs=-1)
        out = llm.generate(request(prompt), params)[0]
    finally:
        del os.environ["LMMS_HOLITOM_VLLM_RECORD"]
    return out, [torch.load(p) for p in sorted(folder.glob("*.pt"))]


def kind(records: list[dict], name: str) -> list[dict]:
    """The records of one kind: ``video`` (one per encoded video) or ``positions`` (one per prefill step)."""
    return [r for r in records if r.get("kind", "video") == name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Each case through vLLM once: the request's output and the plugin's records."""
    return {case: generate(model_of(name), settings, name, tmp_path_factory.mktemp(case))
            for case, name, settings in CASES}


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
    (record,) = kind(records, "video")
    origins = record["origins"].tolist()
    if want["positions"] is None:  # LLaVA-OneVision: the newline row closes the video
        origins.append([-1, -1])
    assert origins == want["origins"]
    rows = record["rows"]
    torch.testing.assert_close(rows.sum(-1), torch.tensor(want["row_sums"]), atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(rows.norm(dim=-1), torch.tensor(want["row_norms"]), atol=ATOL, rtol=1e-4)


MROPE_IDS = [case for case, name, _ in CASES if model_of(name) in MROPE_MODELS]


@pytest.mark.parametrize("case", MROPE_IDS)
def test_mrope_positions(case: str, runs: dict) -> None:
    """The (t, h, w) positions the decoder received at the kept rows are the transformers backend's, exactly (dense:
    vLLM's own positions, nothing rewritten)."""
    _, records = runs[case]
    want = FIXTURE[case]
    got = kind(records, "positions")
    if want["settings"]["method"] == "dense":
        assert got == []
        return
    assert torch.cat([r["positions"] for r in got], dim=1).tolist() == want["positions"]


@pytest.mark.parametrize("case", IDS)
def test_first_step_logprobs_and_tokens(case: str, runs: dict) -> None:
    out, _ = runs[case]
    want = FIXTURE[case]
    first = out.outputs[0].logprobs[0]
    got = torch.tensor([first[i].logprob for i in range(len(want["logprobs"]))])
    torch.testing.assert_close(got, torch.tensor(want["logprobs"]), atol=ATOL, rtol=0)
    assert want["margin"] > 2 * ATOL, "the reference's top-2 margin is within tolerance: pick another case"
    assert list(out.outputs[0].token_ids) == want["tokens"]


@pytest.mark.parametrize("encoder_tp", ["weights", "data"])
@pytest.mark.parametrize("case", ["llava-ov-holitom_wo_m", "qwen2.5-vl-holitom_wo_m"])
def test_tensor_parallel_two_ranks_equal_one(case: str, encoder_tp: str, tmp_path) -> None:
    """TP = 2 on CPU (gloo, one core per rank), in both encoder TP modes: ``weights`` splits the vision tower's heads
    across ranks (the probe's head sums are all-reduced), ``data`` replicates the tower (each rank's probe sees every
    head; vLLM 0.32 has no data mode for LLaVA-OneVision and runs it as ``weights``): the same kept origins (and
    M-RoPE positions) on every rank, prompt length and tokens as the transformers fixture."""
    want = FIXTURE[case]
    mrope = want["model"] in MROPE_MODELS
    job = {"model": model_dir(want["model"]), "settings": want["settings"], "prompt": PROMPTS[want["prompt"]],
           "engine": {"tensor_parallel_size": 2, "distributed_executor_backend": "mp",
                      "mm_encoder_tp_mode": encoder_tp}, "out": str(tmp_path / "o.json"),
           "mrope": mrope}
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1", "VLLM_CPU_OMP_THREADS_BIND": "0|1",
           "LMMS_HOLITOM_VLLM_RECORD": str(tmp_path / "records")}
    done = subprocess.run([sys.executable, str(HERE / "run_engine.py"), json.dumps(job)], env=env, timeout=420,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads((tmp_path / "o.json").read_text())
    assert (got["prompt_tokens"], got["tokens"]) == (want["prompt_tokens"], want["tokens"])
    records = [torch.load(p) for p in sorted((tmp_path / "records").glob("*.pt"))]
    videos = kind(records, "video")
    assert len(videos) >= 2  # every rank encodes the video
    for record in videos:
        origins = record["origins"].tolist()
        assert (origins if mrope else [*origins, [-1, -1]]) == want["origins"]
    if mrope:
        positions = kind(records, "positions")
        assert len(positions) >= 2
        assert all(r["positions"].tolist() == want["positions"] for r in positions)


def test_bf16_positions_exact_beyond_256(tmp_path) -> None:
    """A bf16 engine and a 749-token text prefix: the kept rows' positions are past 256, where bf16 cannot hold every
    integer (vLLM's EVS carries positions in bf16 embedding channels and rounds them), yet the decoder receives
    exactly the video's dense base (the fp32 fixture's, data-independent) plus each kept token's (⌊2t⌋, h, w), for
    the tokens this bf16 run kept."""
    case = "qwen2.5-vl-holitom_wo_m-long"
    want = FIXTURE[case]
    out, records = generate(want["model"], want["settings"], want["prompt"], tmp_path, dtype="bfloat16")
    assert len(out.prompt_token_ids) == want["prompt_tokens"]
    (record,) = kind(records, "video")
    width = record["grid_width"]
    t0, h0, w0 = (want["positions"][axis][0] for axis in range(3))
    frame, index = want["origins"][0]
    base = t0 - int(frame * record["time_scale"])
    assert (h0 - index // width, w0 - index % width) == (base, base)
    expected = [[base + int(f * record["time_scale"]) for f, _ in record["origins"].tolist()],
                [base + n // width for _, n in record["origins"].tolist()],
                [base + n % width for _, n in record["origins"].tolist()]]
    got = torch.cat([r["positions"] for r in kind(records, "positions")], dim=1)
    assert got.tolist() == expected
    rounded = got.to(torch.bfloat16).long()
    assert (rounded != got).any(), "every position is a bf16 integer: the case cannot catch rounding"


def test_holitom_and_vllms_own_evs_together_are_refused_in_one_line(tmp_path) -> None:
    """A ``holitom`` entry with vLLM's ``video_pruning_rate`` (its EVS) on Qwen2.5-VL: the engine refuses to start,
    naming both, instead of pruning twice or with positions from the wrong method."""
    job = {"model": model_dir("tiny-vllm-qwen2.5-vl"), "settings": {"method": "holitom_wo_m"},
           "prompt": PROMPTS["tiny-vllm-qwen2.5-vl"], "engine": {"video_pruning_rate": 0.5,
                                                                "distributed_executor_backend": "uni"},
           "out": str(tmp_path / "o.json"), "mrope": True}
    done = subprocess.run([sys.executable, str(HERE / "run_engine.py"), json.dumps(job)], timeout=300,
                          env={**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}, capture_output=True, text=True)
    assert done.returncode != 0
    assert "hf_overrides.holitom and video_pruning_rate (vLLM's EVS) cannot both be set" in done.stderr
    assert not (tmp_path / "o.json").exists()


def test_cached_video_after_another_prefix_gets_that_prompts_positions(runs: dict, tmp_path) -> None:
    """The video of ``qwen2.5-vl-holitom_wo_m`` again, on the same engine, after the 749-token prefix: vLLM may serve
    its encoding from the encoder cache (the rows carry positions relative to the video), and the decoder receives
    the kept rows' positions moved by exactly the prefix's shift (the video's dense base, 726 instead of 6)."""
    short, long = FIXTURE["qwen2.5-vl-holitom_wo_m"], FIXTURE["qwen2.5-vl-holitom_wo_m-long"]
    shift = long["positions"][0][0] - short["positions"][0][0] + short["origins"][0][0] * 2 - long["origins"][0][0] * 2
    assert shift == 720
    from vllm import SamplingParams

    os.environ["LMMS_HOLITOM_VLLM_RECORD"] = str(tmp_path)
    try:
        llm = Engine.get(short["model"], short["settings"])
        media = (video_of(short["prompt"]), VIDEO_METADATA)
        out = llm.generate({"prompt": PROMPTS[long["prompt"]], "multi_modal_data": {"video": media}},
                           SamplingParams(max_tokens=1, temperature=0.0))[0]
    finally:
        del os.environ["LMMS_HOLITOM_VLLM_RECORD"]
    assert len(out.prompt_token_ids) == long["prompt_tokens"]
    records = [torch.load(p) for p in sorted(tmp_path.glob("*.pt"))]
    got = torch.cat([r["positions"] for r in kind(records, "positions")], dim=1)
    assert got.tolist() == [[p + shift for p in axis] for axis in short["positions"]]


@pytest.mark.parametrize(("mode", "chunked_mm", "refused"), [
    ("NONE", True, None),
    ("FULL", False, "cudagraph_mode=FULL replays prefill batches"),
    ("FULL_AND_PIECEWISE", True, "pass --disable-chunked-mm-input"),
    ("FULL_DECODE_ONLY", True, "pass --disable-chunked-mm-input"),
    ("FULL_AND_PIECEWISE", False, None),
    ("PIECEWISE", True, None),
])
def test_cuda_graph_modes_that_would_skip_the_positions_are_refused(mode, chunked_mm, refused) -> None:
    """GPU-only configs (not runnable here), checked on vLLM's own config objects: a CUDA graph that replays the whole
    model would skip the forward that sets the kept tokens' positions, so the engine refuses it in one line."""
    from vllm.config import CompilationConfig, SchedulerConfig

    from lmms_holitom.integrations.vllm.qwen2_5_vl import cuda_graph_refusal

    scheduler = SchedulerConfig(max_model_len=4096, is_encoder_decoder=False, disable_chunked_mm_input=not chunked_mm)
    got = cuda_graph_refusal(CompilationConfig(cudagraph_mode=mode), scheduler)
    assert got == refused if refused is None else refused in got
