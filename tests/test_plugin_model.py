"""The lmms-eval model class in-process: registration, model_args, env-var precedence, generation, stats.

Real tiny model, real video files, real lmms-eval `Instance` objects; the CLI runs are in
`test_plugin_cli.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from plugin_fixtures import ORIGINAL_ENV, ROOT, only_file

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.integrations.lmms_eval.llava import MODEL_ARGS, resolve_holitom_config
from lmms_holitom.integrations.lmms_eval.records import Evaluation, discover_output_dir, merge_rank_files, summarize
from lmms_holitom.integrations.lmms_eval.visuals import FAILED_ANSWER
from lmms_holitom.video import VideoDecodeError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def clean_env():
    with pytest.MonkeyPatch.context() as mp:
        for var in ORIGINAL_ENV:
            mp.delenv(var, raising=False)
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        yield mp


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "holitom_smoke_make_clips_model_test", ROOT / "task_overrides" / "holitom_smoke" / "make_clips.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ensure_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def lm(clean_env, tmp_path_factory):
    from lmms_holitom.integrations.lmms_eval.llava import LlavaOneVisionHoliTom

    stats = tmp_path_factory.mktemp("stats")
    return LlavaOneVisionHoliTom(
        pretrained="tiny", device="cpu", max_frames_num="4", method="holitom", retain_ratio="0.25",
        merge_layer="2", merge_ratio="0.5", stats_path=str(stats),
    )


def _request(context: str, doc_id: int, task: str = "t", padding: bool = False, doc_to_visual=None):
    from lmms_eval.api.instance import Instance

    doc_to_visual = doc_to_visual or (lambda doc: [doc["video"]])

    metadata = {"task": task, "doc_id": doc_id, "repeats": 1}
    if padding:
        metadata["__padding_only__"] = True
    gen_kwargs = {"max_new_tokens": 3, "temperature": 0, "do_sample": False, "until": ["\n\n"]}
    return Instance(
        request_type="generate_until",
        arguments=(context, gen_kwargs, doc_to_visual, doc_id, task, "test"),
        idx=0,
        metadata=metadata,
    )


# ---------------------------------------------------------------------------------------- registration
def test_entry_point_resolves() -> None:
    from lmms_eval.models import get_model

    from lmms_holitom.integrations.lmms_eval.llava import LlavaOneVisionHoliTom

    cls = get_model("llava_onevision_holitom")
    assert cls is LlavaOneVisionHoliTom
    assert cls.is_simple is True


# ------------------------------------------------------------------------------------ env precedence
FULL_ENV = {"WRAPPER": "holitom", "RETAIN_RATIO": "0.25", "T": "0.8", "HOLITOM_k": "2", "HOLITOM_r": "0.5"}


@pytest.mark.parametrize(
    ("env", "args", "expected", "source"),
    [
        ({}, {}, {"method": "holitom", "retain_ratio": 0.10, "merge_layer": 18}, "defaults"),
        ({}, {"retain_ratio": "0.2"}, {"method": "holitom", "retain_ratio": 0.2}, "model_args"),
        (FULL_ENV, {}, {"method": "holitom", "retain_ratio": 0.25, "tau": 0.8, "merge_layer": 2,
                        "merge_ratio": 0.5}, "environment"),
        # without WRAPPER the other variables are ignored (and named, for a warning)
        ({"RETAIN_RATIO": "0.25", "K": "3"}, {}, {"method": "holitom", "retain_ratio": 0.10, "knn_k": 7},
         "defaults; ignored RETAIN_RATIO, K because WRAPPER is not set"),
        ({"RETAIN_RATIO": "0.3"}, {"tau": "0.7"}, {"method": "holitom", "retain_ratio": 0.10, "tau": 0.7},
         "model_args; ignored RETAIN_RATIO"),
        ({"WRAPPER": "holitom", "RETAIN_RATIO": "0.25"}, {}, {"method": "holitom_wo_m", "retain_ratio": 0.25},
         "environment (WRAPPER, RETAIN_RATIO)"),
        ({"WRAPPER": "holitom", "RETAIN_RATIO": "0.25"}, {"retain_ratio": "0.5"},
         {"method": "holitom_wo_m", "retain_ratio": 0.5}, "overridden by model_args"),
        ({"WRAPPER": "fastv", "FASTV_k": "2", "FASTV_r": "0.25"}, {}, {"method": "fastv", "merge_layer": 2,
                                                                      "merge_ratio": 0.25}, "environment"),
        ({"WRAPPER": "dense"}, {"retain_ratio": "0.2"}, {"method": "dense", "retain_ratio": 0.2}, "overridden"),
        ({**FULL_ENV, "WRAPPER": "holitom"}, {"method": "visionzip"}, {"method": "visionzip", "retain_ratio": 0.25},
         "overridden"),
        ({"WRAPPER": "", "T": " "}, {}, {"method": "holitom", "tau": 0.8}, "defaults"),  # empty = unset
    ],
)
def test_env_and_model_args_precedence(env, args, expected, source) -> None:
    cfg, src = resolve_holitom_config(args, env)
    assert isinstance(cfg, HoliTomConfig)
    for name, value in expected.items():
        assert getattr(cfg, name) == pytest.approx(value) if isinstance(value, float) else getattr(cfg, name) == value
    assert source in src


# -------------------------------------------------------------------------------------------- model_args
def test_unknown_model_arg_lists_valid_ones(clean_env) -> None:
    from lmms_eval.models import get_model

    with pytest.raises(ValueError, match="unknown model_args bogus_arg") as info:
        get_model("llava_onevision_holitom").create_from_arg_string(
            "pretrained=tiny,bogus_arg=1", {"batch_size": 1, "device": "cpu"}
        )
    message = str(info.value)
    for name in ("pretrained", "max_frames_num", "on_video_error", *HoliTomConfig.field_names()):
        assert name in message


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": "4"}, "batch_size=1 only"),
        ({"mm_spatial_pool_stride": "4"}, "mm_spatial_pool_stride"),
        ({"token_strategy": "multiple"}, "token_strategy"),
        ({"conv_template": "vicuna_v1"}, "conv_template"),
        ({"on_video_error": "ignore"}, "on_video_error"),
        ({"video_decode_backend": "opencv"}, "video_decode_backend"),
        ({"use_cache": "false"}, "use_cache"),
        ({"retain_ratio": "1.5"}, "retain_ratio"),
    ],
)
def test_invalid_model_args(clean_env, kwargs, match) -> None:
    from lmms_holitom.integrations.lmms_eval.llava import LlavaOneVisionHoliTom

    with pytest.raises(ValueError, match=match):
        LlavaOneVisionHoliTom(pretrained="tiny", device="cpu", **kwargs)


def test_model_args_cover_lmms_eval_cli_extras() -> None:
    """lmms-eval's evaluator passes batch_size/max_batch_size/device on top of --model_args."""
    assert {"batch_size", "max_batch_size", "device"} <= set(MODEL_ARGS)


def test_merge_layer_default_fits_shallow_model_but_explicit_is_strict(clean_env) -> None:
    from lmms_holitom.integrations.lmms_eval.llava import LlavaOneVisionHoliTom

    lm_default = LlavaOneVisionHoliTom(pretrained="tiny", device="cpu")
    assert lm_default.holitom_config.method == "holitom"
    assert 1 <= lm_default.holitom_config.merge_layer < 4
    with pytest.raises(ValueError, match="merge_layer"):
        LlavaOneVisionHoliTom(pretrained="tiny", device="cpu", merge_layer="18")


# ---------------------------------------------------------------------------------------- generation
def test_lmms_eval_interface(lm) -> None:
    assert lm.rank == 0 and lm.world_size == 1 and lm.batch_size == 1
    assert str(lm.device) == "cpu"
    assert lm.accelerator is not None
    with pytest.raises(NotImplementedError, match="loglikelihood"):
        lm.loglikelihood([])


def test_prompt_matches_lmms_eval_qwen_1_5(lm) -> None:
    expected = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\nQ?"
                "<|im_end|>\n<|im_start|>assistant\n")
    assert lm._prompt("Q?", video=True, n_images=0) == expected
    assert lm._prompt("<image>\nQ?", video=True, n_images=0) == expected
    lm.conv_template = "chat_template"
    try:
        assert lm._prompt("Q?", video=True, n_images=0) == expected  # the tiny template is Qwen-1.5's
    finally:
        lm.conv_template = "qwen_1_5"


def test_generate_until_records_video_errors(lm, clips: Path) -> None:
    lm.task_dict = {"t": {"test": [
        {"video": str(clips / "moving_square.mp4")},
        {"video": str(clips / "corrupt.mp4")},
        {"video": str(clips / "does_not_exist.mp4")},
    ]}}
    requests = [_request("What moves?", 0), _request("What moves?", 1), _request("What moves?", 2),
                _request("What moves?", 0, padding=True)]
    answers = lm.generate_until(requests)
    assert len(answers) == 4
    assert answers[1] == FAILED_ANSWER and answers[2] == FAILED_ANSWER  # never answered from the text alone
    assert answers[3] == ""  # padding
    stats_dir = lm.stats_dir
    lines = [json.loads(x) for x in only_file(stats_dir, "*_holitom_stats.jsonl").read_text().splitlines()]
    assert [r["doc_id"] for r in lines] == [0, 1, 2]  # the padding request left no line
    good, corrupt, missing = lines
    assert good["error"] is None and good["frames"] == 4
    assert good["outer_tokens"] < good["dense_tokens"] == 4 * 196 + 1
    assert good["inner_tokens"] < good["outer_tokens"]
    assert good["tflops"] < good["tflops_dense"]
    assert good["timings_ms"]["ttft"] > 0 and "prefill" in good["timings_ms"]
    assert corrupt["error"].startswith("VideoDecodeError") and corrupt["outer_tokens"] is None
    assert "file not found" in missing["error"]
    summary = json.loads(only_file(stats_dir, "*_holitom_summary.json").read_text())["t"]
    assert summary["samples"] == 3 and summary["errors"] == 2 and summary["error_doc_ids"] == [1, 2]
    assert summary["mean_outer_tokens"] == good["outer_tokens"]


def test_on_video_error_raise(lm, clips: Path) -> None:
    lm.task_dict = {"t": {"test": [{"video": str(clips / "corrupt.mp4")}]}}
    lm.on_video_error = "raise"
    try:
        with pytest.raises(VideoDecodeError):
            lm.generate_until([_request("Q?", 0)])
    finally:
        lm.on_video_error = "record"


# --------------------------------------------------------------------------------------------- stats
def test_merge_rank_files_dedupes_sorts_and_reads_only_its_evaluation(tmp_path: Path) -> None:
    ours, other = Evaluation("20260101_000000", "11-1"), Evaluation("20260101_000000", "22-1")

    def write(evaluation: Evaluation, rank: int, rows: list[dict]) -> None:
        (tmp_path / evaluation.rank_file_name(rank)).write_text("".join(json.dumps(r) + "\n" for r in rows))

    write(ours, 0, [{"task": "b", "split": "test", "doc_id": 2}, {"task": "a", "split": "test", "doc_id": 0}])
    write(ours, 1, [{"task": "a", "split": "test", "doc_id": 1}, {"task": "a", "split": "test", "doc_id": 0}])
    write(ours, 2, [{"task": "a", "split": "test", "doc_id": 9}])  # beyond this evaluation's world size
    write(other, 0, [{"task": "a", "split": "test", "doc_id": 7}])  # another evaluation, same second
    merged, problems = merge_rank_files(tmp_path, ours, world_size=2)
    assert [(r["task"], r["doc_id"]) for r in merged] == [("a", 0), ("a", 1), ("b", 2)] and problems == []
    assert (tmp_path / "20260101_000000_holitom_stats.jsonl").read_text().count("\n") == 3


def test_summarize_counts_errors_and_averages_good_samples() -> None:
    rows = [
        {"task": "x", "method": "holitom", "dense_tokens": 100, "outer_tokens": 20, "inner_tokens": 10,
         "tflops": 1.0, "tflops_dense": 4.0, "timings_ms": {"prefill": 2.0, "ttft": 3.0}, "error": None},
        {"task": "x", "method": "holitom", "dense_tokens": 100, "outer_tokens": 30, "inner_tokens": 20,
         "tflops": 2.0, "tflops_dense": 4.0, "timings_ms": {"prefill": 4.0, "ttft": 5.0}, "error": None},
        {"task": "x", "doc_id": 7, "outer_tokens": None, "timings_ms": {}, "error": "VideoDecodeError: bad"},
    ]
    s = summarize(rows)["x"]
    assert (s["samples"], s["errors"], s["error_doc_ids"]) == (3, 1, [7])
    assert s["mean_outer_tokens"] == 25 and s["mean_inner_tokens"] == 15 and s["mean_dense_tokens"] == 100
    assert s["mean_tflops"] == 1.5 and s["mean_prefill_ms"] == 3.0 and s["mean_ttft_ms"] == 4.0


def test_output_dir_comes_from_lmms_evals_command_line() -> None:
    """``<--output_path>/<the subfolder lmms-eval names after the model>``: no call-stack walking, no private lmms-eval
    name (the subfolder equals what lmms-eval's public EvaluationTracker computes)."""
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    assert discover_output_dir() is None  # pytest's command line has no --output_path
    for model_args in ("pretrained=lmms-lab/llava-onevision-qwen2-7b-ov,method=holitom", "pretrained=tiny",
                       "method=dense,pretrained=/data/ckpt/Qwen/Qwen2.5-VL-7B-Instruct", "method=dense"):
        tracker = EvaluationTracker(output_path="/out")
        tracker.general_config_tracker.log_experiment_args("m", model_args, "", "", False)
        want = Path("/out") / tracker.general_config_tracker.model_name_sanitized
        argv = ["--model", "llava_onevision_holitom", "--model_args", model_args, "--output_path", "/out", "--x", "1"]
        assert discover_output_dir(argv) == want
        assert discover_output_dir([*argv[:4], "--output_path=/out"]) == want
    assert discover_output_dir(["--model_args", "pretrained=tiny"]) is None


# ------------------------------------------------------------------------- model_args through lmms-eval's loader
@contextmanager
def captured_log() -> Iterator[list[str]]:
    """Every loguru message logged inside the block (the plugin logs through loguru, as lmms-eval does)."""
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO", format="{level} {message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


@pytest.mark.parametrize(
    ("arg_string", "extras", "message"),
    [
        ("pretrained=tiny,retain_ratio=0.2,device=cpu,retain_ratio=0.3", {},
         "model_args key retain_ratio is given twice (retain_ratio=0.2 and retain_ratio=0.3); give each key once"),
        ("pretrained=tiny,method=holitom,method=dense", {}, "model_args key method is given twice"),
        ("pretrained=tiny,merge_layer=,merge_layer=2", {}, "model_args key merge_layer is given twice"),
        ("pretrained=tiny,fastv", {}, "model_args item 'fastv' is not key=value"),
        (f"system_prompt={'x' * 5000},system_prompt=y", {},  # a pasted prompt stays one short line
         f"model_args key system_prompt is given twice (system_prompt={'x' * 60}... (5000 characters) and "
         "system_prompt=y); give each key once"),
        ("pretrained=tiny,device=cpu", {"device": "cuda"},
         "device is given twice: --model_args device=cpu and --device cuda; give it once"),
        ({"pretrained": "tiny", "device": "cpu"}, {"device": "cuda"},  # simple_evaluate(model_args={...})
         "device is given twice: --model_args device=cpu and --device cuda; give it once"),
    ],
)
def test_model_args_given_twice_are_one_line_errors(clean_env, arg_string, extras, message) -> None:
    """lmms-eval's own loader (what its CLI and `simple_evaluate` call) turns ``a=1,a=2`` into ``{a: 2}``: the key
    given twice must be an error before that, naming the key."""
    from lmms_eval.models import get_model

    with pytest.raises(ValueError) as info:
        get_model("llava_onevision_holitom").create_from_arg_string(
            arg_string, {"batch_size": 1, "max_batch_size": None, **extras})
    assert str(info.value) == message or str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arg_string", [
    "pretrained=tiny,method=holitom",
    'system_prompt="You are, a=b helper",max_num_frames=8',
    'gen={"a": 1, "b": [1, 2]},x=\'q, r\',y=2',
])
def test_model_args_split_like_lmms_eval(arg_string) -> None:
    from lmms_eval.utils import simple_parse_args_string

    from lmms_holitom.integrations.lmms_eval.model_args import split_model_args

    keys = [item.partition("=")[0] for item in split_model_args(arg_string)]
    assert keys == list(simple_parse_args_string(arg_string))


def test_no_method_and_no_wrapper_runs_holitom_and_says_so(clean_env) -> None:
    """What the README promises: a ``..._holitom`` model given no method and no WRAPPER runs HoliTom with the
    default settings and logs that. Also: ``batch_size=1`` in model_args beside lmms-eval's ``--batch_size 1``
    loads (lmms-eval alone would raise 'got multiple values for keyword argument')."""
    from lmms_eval.models import get_model

    with captured_log() as log:
        lm = get_model("llava_onevision_holitom").create_from_arg_string(
            "pretrained=tiny,device=cpu,batch_size=1", {"batch_size": 1, "max_batch_size": None, "device": None})
    assert lm.holitom_config.method == "holitom"
    assert lm.holitom_config.retain_ratio == pytest.approx(0.10) and lm.holitom_config.merge_ratio == 0.5
    config_lines = [line for line in log if "effective HoliTom config" in line]
    assert len(config_lines) == 1
    assert ("(from defaults; method holitom with the default settings since neither method= nor WRAPPER is set)"
            in config_lines[0])
    assert "'method': 'holitom'" in config_lines[0]


#: What ``accelerate launch --num_processes 2 --cpu script.py`` (accelerate 1.16, this machine) put into the
#: environment of the one process it started (recorded from a real launch; ACCELERATE_DYNAMO_* left out).
ACCELERATE_ONE_OF_TWO = {"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_USE_CPU": "True",
                         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize(("env", "expected"), [
    (ACCELERATE_ONE_OF_TWO, True),
    ({**ACCELERATE_ONE_OF_TWO, "ACCELERATE_USE_CPU": "False"}, True),  # the same without --cpu on a GPU-less host
    ({k: v for k, v in ACCELERATE_ONE_OF_TWO.items() if not k.startswith("MASTER")}, False),  # --num_processes 1
    ({**ACCELERATE_ONE_OF_TWO, "WORLD_SIZE": "2", "RANK": "0"}, False),  # torchrun / the multi-GPU launcher
    ({}, False),  # python -m lmms_eval
])
def test_accelerate_single_process_launch_is_detected(env, expected) -> None:
    from lmms_holitom.integrations.lmms_eval.runtime import lost_processes

    note = lost_processes(env, world_size=1)
    assert (note is not None) == expected
    if expected:
        assert "started one" in note and "torchrun --nproc_per_node N -m lmms_eval" in note
    assert lost_processes(env, world_size=2) is None


def test_accelerate_single_process_launch_is_logged_by_the_model(clean_env, monkeypatch) -> None:
    from lmms_holitom.integrations.lmms_eval.llava import LlavaOneVisionHoliTom

    for name, value in ACCELERATE_ONE_OF_TWO.items():
        monkeypatch.setenv(name, value)
    with captured_log() as log:
        lm = LlavaOneVisionHoliTom(pretrained="tiny", device="cpu", method="dense")
    assert lm.world_size == 1
    warnings = [line for line in log if line.startswith("WARNING") and "accelerate launch" in line]
    assert len(warnings) == 1 and "torchrun --nproc_per_node N -m lmms_eval" in warnings[0]


# ---------------------------------------------------------------------------------------- multi-video documents
@pytest.mark.parametrize("model,args", [
    ("llava_onevision_holitom", "pretrained=tiny,max_frames_num=4"),
    ("qwen2_5_vl_holitom", "pretrained=tiny-qwen2.5-vl,max_num_frames=4,min_pixels=3136,max_pixels=12544"),
])
def test_multi_video_document_is_one_counted_failure(clean_env, tmp_path, clips: Path, model, args) -> None:
    """A document with two videos (or a missing second one) is answered `FAILED_ANSWER` and counted as a video
    error naming its files — never answered from its first video alone; a one-video document still works."""
    from lmms_eval.models import get_model

    lm = get_model(model).create_from_arg_string(
        f"{args},device=cpu,method=dense,stats_path={tmp_path},max_new_tokens=2",
        {"batch_size": 1, "max_batch_size": None})
    first, second, missing = (str(clips / name) for name in ("moving_square.mp4", "static.mp4", "nope.mp4"))
    lm.task_dict = {"m": {"test": [{"videos": [first, second]}, {"videos": [first, missing]}, {"videos": [first]}]}}
    # this task's doc_to_visual returns the document's list of videos
    requests = [_request("What moves?", doc_id, "m", doc_to_visual=lambda doc: doc["videos"]) for doc_id in range(3)]
    with captured_log() as log:
        answers = lm.generate_until(requests)
    assert answers[:2] == [FAILED_ANSWER, FAILED_ANSWER] and answers[2] != FAILED_ANSWER
    records = [json.loads(x) for x in only_file(tmp_path, "*_holitom_stats.jsonl").read_text().splitlines()]
    errors = {r["doc_id"]: r for r in records if r["error"] is not None}
    assert sorted(errors) == [0, 1]
    assert errors[0]["error"] == (f"2 videos in one document ({first}, {second}); the model takes one video per "
                                  "prompt") and errors[0]["video"] == first
    assert f"{missing} (missing)" in errors[1]["error"] and errors[1]["video"] == missing
    assert errors[0]["outer_tokens"] is None and errors[0]["frames"] is None
    summary = json.loads(only_file(tmp_path, "*_holitom_summary.json").read_text())["m"]
    assert (summary["samples"], summary["errors"], summary["error_doc_ids"]) == (3, 2, [0, 1])
    assert sum("2 videos in one document" in line and line.startswith("ERROR") for line in log) == 2


def test_a_setting_error_is_one_line_and_exit_1_only_under_lmms_evals_command_line(clean_env, monkeypatch) -> None:
    """Python callers of lmms-eval get the ValueError; its command line (which would print a traceback and exit 0
    for any Exception) gets `ModelArgsExit`: one line, status 1 (the real CLI: test_plugin_cli.py)."""
    from lmms_eval.models import get_model

    from lmms_holitom.integrations.lmms_eval.model_args import ModelArgsExit, running_lmms_eval_cli

    cls = get_model("llava_onevision_holitom")
    with pytest.raises(ValueError, match="retain_ratio must be in"):
        cls.create_from_arg_string("pretrained=tiny,retain_ratio=2", {"batch_size": 1, "device": "cpu"})
    assert running_lmms_eval_cli() is False
    assert running_lmms_eval_cli("/venv/bin/lmms-eval") is True
    monkeypatch.setattr("sys.argv", ["/venv/bin/lmms-eval", "--model", "llava_onevision_holitom"])
    with pytest.raises(ModelArgsExit) as err:
        cls.create_from_arg_string("pretrained=tiny,retain_ratio=2", {"batch_size": 1, "device": "cpu"})
    assert err.value.code == "llava_onevision_holitom: error: retain_ratio must be in (0, 1], got 2.0"
    assert err.value.__cause__ is None and err.value.__suppress_context__
