"""``--model vllm_holitom``: the real lmms-eval CLI evaluates the smoke tasks through an in-process vLLM engine with the
HoliTom plugin (tiny LLaVA-OneVision and Qwen2.5-VL, real mp4s, offline). Three CLI runs in all (LLaVA dense, through
a real ``holitom sweep`` of a ``backend: vllm`` study; LLaVA and Qwen2.5-VL holitom_wo_m on the smoke task and the one
with a corrupt and a missing clip); per-request errors
through the model class with an in-process engine; load-time checks that start no engine. Runs in the vLLM venv:
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
from test_vllm_plugin import FIXTURE, Engine, model_dir  # noqa: E402

from lmms_holitom.integrations.lmms_eval.prompts import build_prompt  # noqa: E402
from lmms_holitom.integrations.lmms_eval.visuals import FAILED_ANSWER, VisualError, Visuals  # noqa: E402

MODEL = "tiny-vllm-llava-ov"
QWEN = "tiny-vllm-qwen2.5-vl"
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


def _run(out: Path, clips: Path, args: str, tasks: str, extra: tuple[str, ...] = (),
         model: str = f"{MODEL},max_frames_num={FRAMES}") -> VllmRun:
    name, _, family_args = model.partition(",")
    env = cli_env(clips, VLLM_ENABLE_V1_MULTIPROCESSING="0", VLLM_CPU_KVCACHE_SPACE="1")
    run = run_lmms_eval(out, f"pretrained={model_dir(name)},{family_args},{ENGINE},{args}", tasks,
                        env=env, model="vllm_holitom", timeout=480, extra=extra)
    return VllmRun(run.returncode, run.output, run.out_dir, run.seconds)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smoke_clips")


#: the dense run is a real ``holitom sweep`` of a ``backend: vllm`` study (its one run, the dense baseline)
SWEEP_STUDY = {
    "name": "vllm-smoke", "backend": "vllm", "tasks": ["holitom_smoke"], "include_path": str(TASKS),
    "model": {"pretrained": None, "max_frames_num": FRAMES, "dtype": "float32"},
    "engine": {"max_model_len": 4096, "enforce_eager": True, "max_num_seqs": 4},
    "launcher": {"env": {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}},
}


@pytest.fixture(scope="module")
def dense(tmp_path_factory, clips) -> VllmRun:
    """``holitom sweep`` with ``backend: vllm``, the vLLM python from ``HOLITOM_VLLM_PYTHON`` (this one); its
    output is the sweep's and the run's log."""
    import subprocess
    import time

    import yaml

    folder = tmp_path_factory.mktemp("dense")
    study = folder / "study.yaml"
    study.write_text(yaml.safe_dump({**SWEEP_STUDY, "model": {**SWEEP_STUDY["model"], "pretrained": model_dir(MODEL)}}))
    env = cli_env(clips, HOLITOM_VLLM_PYTHON=sys.executable)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lmms_holitom.cli", "sweep", str(study), "--output",
                           str(folder / "out"), "--no-task-check"], env=env, capture_output=True, text=True,
                          timeout=480, check=False)
    log = folder / "out" / "dense" / "log.txt"
    output = proc.stdout + proc.stderr + (log.read_text() if log.is_file() else "")
    return VllmRun(proc.returncode, output, folder / "out" / "dense" / "lmms_eval", time.perf_counter() - t0)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, clips) -> VllmRun:
    # --batch_size 3: three requests per generate call, a failed video among them in the corrupt task
    return _run(tmp_path_factory.mktemp("pruned"), clips, "method=holitom_wo_m,retain_ratio=0.25",
                "holitom_smoke,holitom_smoke_corrupt", ("--batch_size", "3"))


@pytest.fixture(scope="module")
def qwen(tmp_path_factory, clips) -> VllmRun:
    return _run(tmp_path_factory.mktemp("qwen"), clips, "method=holitom_wo_m,retain_ratio=0.25",
                "holitom_smoke,holitom_smoke_corrupt", ("--batch_size", "3"), model=f"{QWEN},max_num_frames={FRAMES}")


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
    """The ``backend: vllm`` sweep ran lmms-eval once with ``vllm_holitom`` in the vLLM python, no accelerate, and
    judged the run done; its records are dense's."""
    _ok(dense)
    manifest = json.loads((dense.out_dir.parent / "run.json").read_text())
    assert (manifest["status"], manifest["backend"], manifest["lmms_eval_model"]) == ("done", "vllm", "vllm_holitom")
    assert manifest["command"][:5] == [sys.executable, "-m", "lmms_eval", "--model", "vllm_holitom"]
    assert manifest["launcher"] == "python"
    assert "1/1 done (0 were already done)" in dense.output and "[1/1] dense: done in" in dense.output, \
        dense.output[-3000:]
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


def test_without_the_plugin_vllm_holitom_refuses_to_run_unpruned() -> None:
    """``VLLM_PLUGINS`` leaving out ours: stock vLLM would serve the checkpoint and prune nothing; the model refuses
    in one line before its engine starts (a fresh process: plugins load once per process)."""
    import os
    import subprocess

    code = ("from lmms_eval.models import get_model\n"
            f"get_model('vllm_holitom').create_from_arg_string('pretrained={model_dir(MODEL)}')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "VLLM_PLUGINS": "none", "PYTHONPATH": str(HERE.parents[1])})
    assert proc.returncode == 1 and "Starting" not in proc.stderr.split("Traceback")[0], proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "ValueError: vllm_holitom: the lmms-holitom vLLM plugin is not loaded (VLLM_PLUGINS='none' leaves out "
        "'holitom'?), so vLLM would run LlavaOnevisionForConditionalGeneration unpruned; "
        "LlavaOnevisionForConditionalGeneration is served by "
        "vllm.model_executor.models.llava_onevision:LlavaOnevisionForConditionalGeneration")


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


# ------------------------------------------------------------------------------------------------ Qwen2.5-VL
def _qwen_family():
    from lmms_holitom.integrations.lmms_eval.vllm_families import FAMILIES, architecture_of

    cls = FAMILIES[architecture_of(model_dir(QWEN))]
    return cls({**cls.ARGS, "max_num_frames": FRAMES})


def _qwen_prompt_tokens(task: str, clips: Path) -> dict[int, tuple[int, int, int] | None]:
    """doc id -> (text tokens of ``qwen2_5_vl_holitom``'s prompt without the ``<|video_pad|>``, temporal groups,
    tokens per group) of its clip, or None where the clip cannot give Qwen frames (the single-frame clip: fewer
    frames than qwen_vl_utils samples, a failed sample in both backends)."""
    from transformers import AutoTokenizer

    sys.path.insert(0, str(TASKS / "holitom_smoke"))
    import utils

    family, tokenizer = _qwen_family(), AutoTokenizer.from_pretrained(model_dir(QWEN))
    name = "data.jsonl" if task == "holitom_smoke" else "data_corrupt.jsonl"
    docs = [json.loads(line) for line in (TASKS / "holitom_smoke" / name).read_text().splitlines() if line.strip()]
    out: dict[int, tuple[int, int, int] | None] = {}
    for i, doc in enumerate(docs):
        clip = clips / doc["video"]
        context = utils.doc_to_text(doc, {"pre_prompt": "", "post_prompt": utils.POST_PROMPT})
        prompt = family.request(context, Visuals(), model_dir(QWEN))["prompt"]  # the same prompt without the video
        text = len(tokenizer(prompt).input_ids) + 2  # <|vision_start|>, <|vision_end|>
        try:
            frames = family.visuals([str(clip)]).video
        except VisualError:
            out[i] = None
            continue
        out[i] = (text, math.ceil(len(frames) / 2), frames.shape[1] * frames.shape[2] // (28 * 28))
    return out


def test_qwen_run_sends_videos_with_metadata_and_keeps_the_exact_budget(qwen: VllmRun, clips: Path) -> None:
    """Qwen2.5-VL through ``--model vllm_holitom`` (the family chosen by the checkpoint): each record's prompt is
    ``qwen2_5_vl_holitom``'s chat prompt with ``t·ceil(0.25·N)`` video tokens, t the temporal groups of the frames
    it samples (4 of 8 frames) and N the tokens per group of their size; the single-frame clip fails as it does in
    the transformers model; the corrupt and missing clips fail and are counted."""
    _ok(qwen)
    assert "'hf_overrides': {'holitom': {'method': 'holitom_wo_m', 'retain_ratio': 0.25}}" in qwen.output
    assert "(Qwen2.5-VL) in vLLM" in qwen.output
    for task, docs, broken in (("holitom_smoke", SMOKE_DOCS, {3}), ("holitom_smoke_corrupt", 3, {1, 2})):
        expected = _qwen_prompt_tokens(task, clips)
        records = {r["doc_id"]: r for r in qwen.stats() if r["task"] == task}
        assert sorted(records) == list(range(docs)) and qwen.results()["n-samples"][task]["effective"] == docs
        for doc_id, r in records.items():
            if doc_id in broken:
                assert r["error"].startswith("VideoDecodeError") and r["prompt_tokens"] is None, r
                continue
            text, groups, per_group = expected[doc_id]
            budget = groups * math.ceil(0.25 * per_group)
            assert (r["error"], r["method"], r["modality"]) == (None, "holitom_wo_m", "video")
            assert (r["frames"], r["tokens_per_frame"], r["outer_tokens"]) == (groups, per_group, budget), r
            assert r["prompt_tokens"] == text + budget and r["prompt_tokens_dense"] == text + groups * per_group
        summary = qwen.summary()[task]
        assert (summary["samples"], summary["errors"], summary["error_doc_ids"]) == (docs, len(broken), sorted(broken))
    assert expected[0] is not None and expected[0][1] == FRAMES // 2


# ------------------------------------------------------------------------------------------- per-request errors
ERROR_ENGINE = "max_model_len=1024,dtype=float32,enforce_eager=true,max_num_seqs=8,seed=0"


def _instances(docs: list[dict], contexts: list[str]) -> list:
    from lmms_eval.api.instance import Instance

    gen = {"max_new_tokens": 4, "temperature": 0, "do_sample": False}
    return [Instance("generate_until", (context, gen, lambda doc: doc["visual"], i, "errs", "test"), i,
                     {"task": "errs", "doc_id": i, "repeats": 1})
            for i, context in enumerate(contexts)]


@pytest.fixture(scope="module")
def qwen_model(tmp_path_factory):
    """``vllm_holitom`` on the tiny Qwen2.5-VL, built as lmms-eval builds it; kept for the session (`Engine`)."""
    from lmms_eval.models import get_model

    key = f"vllm_holitom:{QWEN}:{ERROR_ENGINE}"
    if key not in Engine.engines:
        Engine.engines[key] = get_model("vllm_holitom").create_from_arg_string(
            f"pretrained={model_dir(QWEN)},max_num_frames=4,method=holitom_wo_m,retain_ratio=0.25,batch_size=8,"
            f"stats_path={tmp_path_factory.mktemp('stats')},{ERROR_ENGINE}")
    return Engine.engines[key]


def test_a_bad_request_fails_its_sample_not_the_call(qwen_model, tmp_path: Path) -> None:
    """One ``generate_until`` call (one batch of 6) with a good video, a prompt longer than ``max_model_len``, a
    corrupt and a missing video, an image-only and a text-only document: the four bad samples are answered
    `FAILED_ANSWER` and recorded with their error; the good video and the text-only document are answered by the
    engine, the video pruned to the exact budget."""
    from PIL import Image

    from lmms_holitom.integrations.lmms_eval.records import SUMMARY_SUFFIX

    good = write_clip(tmp_path / "good.mp4", frames=16, size=(128, 96))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    docs = [{"visual": [str(good)]}, {"visual": [str(good)]}, {"visual": [str(corrupt)]},
            {"visual": [str(tmp_path / "missing.mp4")]}, {"visual": [Image.new("RGB", (64, 48))]}, {"visual": []}]
    contexts = ["What moves?", "what " * 1500, "What moves?", "What moves?", "What is shown?", "Say yes."]
    qwen_model.task_dict = {"errs": {"test": docs}}
    answers = qwen_model.generate_until(_instances(docs, contexts))
    assert [a == FAILED_ANSWER for a in answers] == [False, True, True, True, True, False], answers
    stats_dir = qwen_model._stats_dir
    records = {r["doc_id"]: r for r in (json.loads(line) for f in stats_dir.glob("*.jsonl")
                                           for line in f.read_text().splitlines() if line.strip())}
    assert records[1]["error"].startswith("vLLM rejected the request: VLLMValidationError: ")
    assert "maximum context length is 1024 tokens" in records[1]["error"] and records[1]["video"] == str(good)
    assert records[2]["error"].startswith("VideoDecodeError") and records[2]["video"] == str(corrupt)
    assert "file not found" in records[3]["error"]
    assert "1 image input(s)" in records[4]["error"] and records[4]["video"] is None
    assert (records[5]["error"], records[5]["modality"]) == (None, "text")
    groups, per_group = 2, (392 // 28) * (532 // 28)  # 4 frames of 96x128, resized as qwen_vl_utils resizes them
    assert (records[0]["error"], records[0]["frames"], records[0]["tokens_per_frame"]) == (None, groups, per_group)
    assert records[0]["outer_tokens"] == groups * math.ceil(0.25 * per_group)
    summary = json.loads(next(stats_dir.glob(f"*{SUMMARY_SUFFIX}")).read_text())["errs"]
    assert (summary["samples"], summary["errors"], summary["error_doc_ids"]) == (6, 4, [1, 2, 3, 4])


# ------------------------------------------------------------------------------------------------ Qwen3-VL
QWEN3 = "tiny-vllm-qwen3-vl"


@pytest.fixture(scope="module")
def qwen3_model(tmp_path_factory):
    """``vllm_holitom`` on the tiny Qwen3-VL, built as lmms-eval builds it; kept for the session (`Engine`)."""
    from lmms_eval.models import get_model

    key = f"vllm_holitom:{QWEN3}:{ERROR_ENGINE}"
    if key not in Engine.engines:
        Engine.engines[key] = get_model("vllm_holitom").create_from_arg_string(
            f"pretrained={model_dir(QWEN3)},max_num_frames=4,method=holitom_wo_m,retain_ratio=0.25,"
            f"stats_path={tmp_path_factory.mktemp('stats3')},{ERROR_ENGINE}")
    return Engine.engines[key]


def test_qwen3_vl_sends_its_real_video_timing_and_keeps_the_exact_budget(qwen3_model, tmp_path: Path) -> None:
    """Qwen3-VL through ``vllm_holitom`` (no CLI run: the lmms-eval-built model's ``generate_until``): a 10 s clip at
    4 fps, 4 frames sampled at indices 0, 13, 26, 39 as ``qwen3_vl_holitom`` samples them, goes in with its real
    timing, so vLLM's prompt carries the timestamps ``<1.6 seconds>`` and ``<8.1 seconds>`` (pair means of
    index / fps), not those of an assumed frame rate; the record counts vLLM's prompt: the chat prompt with the
    template's outer vision pair kept (2 tokens more than transformers 5.25's), each group's timestamp and markers,
    and ``2·ceil(0.25·221)`` pads (2 groups of 416 x 544 frames, 221 tokens each)."""
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    clip = write_clip(tmp_path / "c.mp4", frames=40, size=(128, 96))
    docs, context = [{"visual": [str(clip)]}], "What moves?"
    qwen3_model.task_dict = {"errs": {"test": docs}}
    answers = qwen3_model.generate_until(_instances(docs, [context]))
    assert answers[0] != FAILED_ANSWER
    record = next(json.loads(line) for f in qwen3_model._stats_dir.glob("*.jsonl")
                  for line in f.read_text().splitlines() if line.strip())
    groups, per_group, budget = 2, (416 // 32) * (544 // 32), 2 * math.ceil(0.25 * 221)
    assert (record["error"], record["frames"], record["tokens_per_frame"], record["outer_tokens"]) == \
        (None, groups, per_group, budget), record

    family, checkpoint = qwen3_model.family, model_dir(QWEN3)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    stamps = [tokenizer.encode(s, add_special_tokens=False) for s in ("<1.6 seconds>", "<8.1 seconds>")]
    text = len(tokenizer(family.prompt(context, True, checkpoint)).input_ids)  # holds the outer pair + 1 pad
    expected = text - 1 + sum(map(len, stamps)) + 2 * groups + budget
    assert record["prompt_tokens"] == expected and record["prompt_tokens_dense"] == expected - budget + 2 * per_group

    request = family.request(context, family.visuals([str(clip)]), checkpoint)
    ids = qwen3_model._llm.generate([request], SamplingParams(max_tokens=1), use_tqdm=False)[0].prompt_token_ids
    config = qwen3_model._config
    assert len(ids) == expected and ids.count(config.video_token_id) == budget
    assert ids.count(config.vision_start_token_id) == groups + 1  # the template's outer one, kept by vLLM
    joined = " ".join(map(str, ids))
    assert all(" ".join(map(str, s)) in joined for s in stamps), tokenizer.decode(ids)
