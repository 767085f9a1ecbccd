"""``--model vllm_holitom``: the real lmms-eval CLI evaluates the smoke tasks through an in-process vLLM engine with the
HoliTom plugin (tiny LLaVA-OneVision, real mp4s, offline). Two CLI runs in all (dense; holitom_wo_m on the smoke task
and the one with a corrupt and a missing clip), plus load-time checks that start no engine. Runs in the vLLM venv:
``make test-vllm``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from backend_cases import PROMPTS  # noqa: E402
from plugin_fixtures import TASKS, CliRun, cli_env, run_lmms_eval, write_clip  # noqa: E402
from test_vllm_plugin import FIXTURE, model_dir  # noqa: E402

from lmms_holitom.integrations.lmms_eval.prompts import build_prompt  # noqa: E402
from lmms_holitom.integrations.lmms_eval.visuals import FAILED_ANSWER  # noqa: E402

MODEL = "tiny-vllm-llava-ov"
FRAMES, PER_FRAME = 8, 196  # the tiny model: SigLIP 384/14, pooled to 14 x 14
ENGINE = "max_model_len=4096,dtype=float32,enforce_eager=true,max_num_seqs=4"
#: how vLLM logs the engine arguments it was given (``non-default args: {...}``)
ENGINE_LOGGED = ("'dtype': 'float32'", "'max_model_len': 4096", "'enforce_eager': True", "'max_num_seqs': 4")
SMOKE_DOCS = 6


class VllmRun(CliRun):
    """A CLI run whose results folder is named after the tiny vLLM model's path (lmms-eval's rule)."""

    @property
    def model_dir(self) -> Path:
        folders = [p for p in self.out_dir.iterdir() if p.is_dir()] if self.out_dir.is_dir() else []
        return folders[0] if len(folders) == 1 else self.out_dir / "none"


def _run(out: Path, clips: Path, args: str, tasks: str, extra: tuple[str, ...] = ()) -> VllmRun:
    env = cli_env(clips, VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1")
    run = run_lmms_eval(out, f"pretrained={model_dir(MODEL)},max_frames_num={FRAMES},{ENGINE},{args}", tasks,
                        env=env, model="vllm_holitom", timeout=480, extra=extra)
    return VllmRun(run.returncode, run.output, run.out_dir, run.seconds)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smoke_clips")


@pytest.fixture(scope="module")
def dense(tmp_path_factory, clips) -> VllmRun:
    return _run(tmp_path_factory.mktemp("dense"), clips, "method=dense", "holitom_smoke")


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, clips) -> VllmRun:
    # --batch_size 3: three requests per generate call, a failed video among them in the corrupt task
    return _run(tmp_path_factory.mktemp("pruned"), clips, "method=holitom_wo_m,retain_ratio=0.25",
                "holitom_smoke,holitom_smoke_corrupt", ("--batch_size", "3"))


def _ok(run: VllmRun) -> None:
    assert run.returncode == 0, run.output[-4000:]
    assert "Error during evaluation" not in run.output, run.output[-4000:]
    assert run.results() is not None, f"no results under {run.out_dir}:\n{run.output[-4000:]}"


def _text_tokens(task: str) -> dict[int, int]:
    """doc id -> tokens of the prompt ``vllm_holitom`` builds (LLaVA's ``qwen_1_5`` template), the ``<video>``
    placeholder counted as one; read with the checkpoint's own tokenizer, not from vLLM."""
    from transformers import AutoTokenizer

    sys.path.insert(0, str(TASKS / "holitom_smoke"))
    import utils  # the task's own doc_to_text

    tokenizer = AutoTokenizer.from_pretrained(model_dir(MODEL))
    name = "data.jsonl" if task == "holitom_smoke" else "data_corrupt.jsonl"
    docs = [json.loads(line) for line in (TASKS / "holitom_smoke" / name).read_text().splitlines() if line.strip()]
    kwargs = {"pre_prompt": "", "post_prompt": utils.POST_PROMPT}
    return {i: len(tokenizer(build_prompt(utils.doc_to_text(d, kwargs), True, 0, "qwen_1_5", None)).input_ids)
            for i, d in enumerate(docs)}


def test_count_rule_matches_the_transformers_fixture() -> None:
    """The rule the records are checked against, on the backends fixture's prompt: text tokens + kept tokens + the
    newline equals the prompt length the transformers backend recorded, dense and at the exact budget."""
    from transformers import AutoTokenizer

    text = len(AutoTokenizer.from_pretrained(model_dir(MODEL))(PROMPTS[MODEL]).input_ids) - 1  # <video> aside
    assert text + FRAMES * PER_FRAME + 1 == FIXTURE["llava-ov-dense"]["prompt_tokens"]
    assert text + FRAMES * math.ceil(0.25 * PER_FRAME) + 1 == FIXTURE["llava-ov-holitom_wo_m"]["prompt_tokens"]


def test_dense_run_results_and_records(dense: VllmRun) -> None:
    _ok(dense)
    for logged in (*ENGINE_LOGGED, "'hf_overrides': {'holitom': {'method': 'dense'}}"):
        assert logged in dense.output, logged  # engine arguments and the method reached vLLM
    assert dense.results()["n-samples"]["holitom_smoke"]["effective"] == SMOKE_DOCS
    text = _text_tokens("holitom_smoke")
    stats = {r["doc_id"]: r for r in dense.stats()}
    assert sorted(stats) == list(range(SMOKE_DOCS))
    for doc_id, r in stats.items():
        assert (r["method"], r["modality"], r["error"]) == ("dense", "video", None)
        assert (r["frames"], r["tokens_per_frame"], r["dense_tokens"]) == (FRAMES, PER_FRAME, FRAMES * PER_FRAME)
        assert r["outer_tokens"] == FRAMES * PER_FRAME
        assert r["prompt_tokens"] == r["prompt_tokens_dense"] == text[doc_id] + FRAMES * PER_FRAME
        assert r["inner_tokens"] is None and r["segments"] is None  # vLLM does not report them


def test_holitom_wo_m_run_keeps_the_exact_budget(pruned: VllmRun, dense: VllmRun) -> None:
    _ok(pruned)
    assert "'hf_overrides': {'holitom': {'method': 'holitom_wo_m', 'retain_ratio': 0.25}}" in pruned.output
    results = pruned.results()
    assert results["n-samples"]["holitom_smoke"]["effective"] == SMOKE_DOCS
    budget = FRAMES * math.ceil(0.25 * PER_FRAME)
    text = _text_tokens("holitom_smoke")
    dense_prompt = {r["doc_id"]: r["prompt_tokens"] for r in dense.stats()}
    records = [r for r in pruned.stats() if r["task"] == "holitom_smoke"]
    assert sorted(r["doc_id"] for r in records) == list(range(SMOKE_DOCS))
    for r in records:
        assert (r["method"], r["error"], r["settings"]["budget"]) == ("holitom_wo_m", None, "exact")
        assert r["settings"]["retain_ratio"] == 0.25
        assert (r["frames"], r["outer_tokens"], r["dense_tokens"]) == (FRAMES, budget, FRAMES * PER_FRAME)
        assert r["prompt_tokens"] == text[r["doc_id"]] + budget
        assert r["prompt_tokens_dense"] == dense_prompt[r["doc_id"]]
    summary = pruned.summary()["holitom_smoke"]
    assert (summary["samples"], summary["errors"], summary["mean_outer_tokens"]) == (SMOKE_DOCS, 0, budget)


def test_corrupt_and_missing_videos_fail_loudly_and_are_counted(pruned: VllmRun) -> None:
    _ok(pruned)
    assert pruned.results()["n-samples"]["holitom_smoke_corrupt"]["effective"] == 3
    stats = {r["doc_id"]: r for r in pruned.stats() if r["task"] == "holitom_smoke_corrupt"}
    assert stats[0]["error"] is None and stats[0]["outer_tokens"] == FRAMES * math.ceil(0.25 * PER_FRAME)
    assert stats[1]["error"].startswith("VideoDecodeError") and "corrupt.mp4" in stats[1]["error"]
    assert stats[2]["error"].startswith("VideoDecodeError") and "file not found" in stats[2]["error"]
    assert stats[1]["prompt_tokens"] is None and stats[2]["frames"] is None
    answers = {s["doc_id"]: s["filtered_resps"] for s in pruned.samples("holitom_smoke_corrupt")}
    assert answers[1] == FAILED_ANSWER and answers[2] == FAILED_ANSWER
    summary = pruned.summary()["holitom_smoke_corrupt"]
    assert (summary["samples"], summary["errors"], summary["error_doc_ids"]) == (3, 2, [1, 2])
    assert "holitom_smoke_corrupt: 3 samples, 2 video errors" in pruned.output


@pytest.mark.parametrize(("args", "message"), [
    ("retain_ratio=2", "retain_ratio"),
    ("method=holitom", "cannot run in vLLM"),
    ("method=fastv", "cannot run in vLLM"),
    ("tensor_parallel_size=0", "tensor_parallel_size must be an integer >= 1"),
    ("gpu_memory_utilization=1.5", "gpu_memory_utilization must be a number in (0, 1]"),
    ("max_frames_num=0", "max_frames_num"),
    ("engine_kwargs={\"hf_overrides\": {}}", "engine_kwargs may not set hf_overrides"),
    ("bogus=1", "unknown model_args bogus"),
])
def test_bad_settings_are_one_line_errors_before_any_engine(args: str, message: str) -> None:
    """What lmms-eval calls for ``--model vllm_holitom --model_args ...`` (the registered name, resolved through our
    entry point): a ValueError of one line, raised before the engine starts."""
    from lmms_eval.models import get_model

    cls = get_model("vllm_holitom")
    with pytest.raises(ValueError) as info:
        cls.create_from_arg_string(f"pretrained={model_dir(MODEL)},{args}")
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_several_processes_are_refused_in_one_line(monkeypatch) -> None:
    """``torchrun``/``accelerate launch`` with several processes would start one engine per process on one device."""
    from lmms_eval.models import get_model

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="use tensor_parallel_size for several devices"):
        get_model("vllm_holitom").create_from_arg_string(f"pretrained={model_dir(MODEL)}")


def test_checkpoint_vllm_holitom_cannot_run_is_one_line(tmp_path: Path) -> None:
    from lmms_eval.models import get_model

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    for pretrained, message in ((tmp_path / "nowhere", "has no readable config.json"),
                                (other, "is a Qwen2ForCausalLM; supported: LlavaOnevisionForConditionalGeneration")):
        with pytest.raises(ValueError) as info:
            get_model("vllm_holitom").create_from_arg_string(f"pretrained={pretrained}")
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_video_goes_to_vllm_as_one_video(tmp_path: Path) -> None:
    """The request of one document: the ``<video>`` placeholder once in lmms-eval's prompt, and the sampled frames
    (F, H, W, 3) uint8 as one video item (lmms-eval's own ``vllm`` model sends them as separate images)."""
    from lmms_holitom.integrations.lmms_eval.vllm_families import FAMILIES, architecture_of

    family = FAMILIES[architecture_of(model_dir(MODEL))]({"max_frames_num": 5, "video_decode_backend": "pyav",
                                                          "conv_template": "qwen_1_5"})
    clip = write_clip(tmp_path / "c.mp4", frames=3)
    visuals = family.visuals([str(clip)])
    request = family.request("What moves?", visuals, model_dir(MODEL))
    assert request["prompt"].count("<video>") == 1 and request["prompt"].endswith("<|im_start|>assistant\n")
    video = request["multi_modal_data"]["video"]
    assert isinstance(video, np.ndarray) and video.dtype == np.uint8 and video.shape == (5, 48, 64, 3)
    assert list(request["multi_modal_data"]) == ["video"]


def test_task_generation_kwargs_become_sampling_params() -> None:
    from lmms_holitom.integrations.lmms_eval.vllm_args import sampling_kwargs

    greedy = {"max_new_tokens": 8, "temperature": 0, "do_sample": False, "until": ["\n"]}
    assert sampling_kwargs(greedy, 1024) == {"max_tokens": 8, "temperature": 0.0}
    assert sampling_kwargs({"do_sample": True, "temperature": 0.7, "top_p": 0.9}, 16) == \
        {"max_tokens": 16, "temperature": 0.7, "top_p": 0.9}
    with pytest.raises(ValueError, match="num_beams=4 is not supported"):
        sampling_kwargs({"num_beams": 4}, 16)
