"""The real lmms-eval CLI with ``--model llava_onevision_holitom`` on the smoke tasks (tiny model, real mp4s).

Each CLI run costs ~10 s of imports, so the runs are module-scoped fixtures shared by several assertions:
one single-process HoliTom run, the same setting on two processes (torchrun, gloo, CPUs), a run configured
only through the authors' environment variables on the task with a corrupt and a missing clip, a run with
an unknown model arg, and the demo.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from plugin_fixtures import FRAMES, HOLITOM_ARGS, ROOT, CliRun, cli_env, only_file, read_jsonl, run_lmms_eval

from lmms_holitom.integrations.lmms_eval.records import stats_files
from lmms_holitom.integrations.lmms_eval.visuals import FAILED_ANSWER
from lmms_holitom.sweep.results import parse_model_args

pytestmark = pytest.mark.slow

SMOKE_DOCS = 6
COMMON = f"pretrained=tiny,max_frames_num={FRAMES},device=cpu"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smoke_clips")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, clips) -> tuple[subprocess.CompletedProcess, Path]:
    """``python -m lmms_holitom.demo`` (what ``make demo`` runs) at FRAMES frames: its HoliTom run is the
    single-process lmms-eval run of these tests (the same model_args), so that run is not made twice."""
    out = tmp_path_factory.mktemp("demo")
    cmd = [sys.executable, "-m", "lmms_holitom.demo", "--output", str(out), "--frames", str(FRAMES)]
    # One thread in every process: the 2-process run must produce bit-identical greedy answers.
    proc = subprocess.run(cmd, cwd=ROOT, env=cli_env(clips, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=400, check=False)
    return proc, out


@pytest.fixture(scope="module")
def single(demo) -> CliRun:
    """The demo's ``method=holitom`` run: lmms-eval's output is its log, its output path ``<demo>/holitom``."""
    proc, out = demo
    log = out / "holitom.log"
    output = log.read_text() if log.is_file() else proc.stdout + proc.stderr
    return CliRun(proc.returncode, output, out / "holitom", 0.0)


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory, clips) -> CliRun:
    # --limit 5 over 2 ranks: rank 0 gets docs 0,2,4 and rank 1 gets 1,3 plus one padding request.
    from lmms_holitom.testing import resolve_pretrained

    resolve_pretrained("tiny")  # built here first: on a fresh cache the two ranks would both build it at once
    return run_lmms_eval(tmp_path_factory.mktemp("two"), f"{COMMON},{HOLITOM_ARGS}", env=cli_env(clips),
                         processes=2, extra=("--limit", "5"))


@pytest.fixture(scope="module")
def env_corrupt(tmp_path_factory, clips) -> CliRun:
    env = cli_env(clips, WRAPPER="holitom", RETAIN_RATIO="0.25", T="0.8", HOLITOM_k="2", HOLITOM_r="0.5")
    return run_lmms_eval(tmp_path_factory.mktemp("env"), COMMON, "holitom_smoke_corrupt", env=env)


def _ok(run: CliRun) -> None:
    assert run.returncode == 0, run.output[-4000:]
    assert "Error during evaluation" not in run.output, run.output[-4000:]
    assert run.results() is not None, f"no results file under {run.model_dir}:\n{run.output[-4000:]}"


# ------------------------------------------------------------------------------------ single process
def test_single_run_results(single: CliRun) -> None:
    _ok(single)
    results = single.results()
    assert results["config"]["model_args"] == f"{COMMON},{HOLITOM_ARGS}"
    assert results["n-samples"]["holitom_smoke"]["effective"] == SMOKE_DOCS
    assert "accuracy,none" in results["results"]["holitom_smoke"]
    assert sorted(s["doc_id"] for s in single.samples("holitom_smoke")) == list(range(SMOKE_DOCS))


def test_single_run_stats(single: CliRun) -> None:
    _ok(single)
    stats = single.stats()
    assert [r["doc_id"] for r in stats] == list(range(SMOKE_DOCS))
    dense = FRAMES * 196 + 1
    for r in stats:
        assert r["task"] == "holitom_smoke" and r["method"] == "holitom" and r["error"] is None
        assert r["frames"] == FRAMES and r["dense_tokens"] == dense
        assert 0 < r["outer_tokens"] < r["dense_tokens"]
        assert 0 < r["inner_tokens"] < r["outer_tokens"]
        assert r["merge_layer"] == 2 and r["segments"] >= 1
        assert 0 < r["tflops"] < r["tflops_dense"]
        assert {"decode_video", "preprocess", "prefill", "ttft", "generate"} <= set(r["timings_ms"])
    summary = single.summary()["holitom_smoke"]
    assert summary["samples"] == SMOKE_DOCS and summary["errors"] == 0
    assert summary["mean_outer_tokens"] < summary["mean_dense_tokens"] == dense
    assert only_file(single.model_dir, "*_holitom_stats.*.rank0.jsonl").is_file()
    assert f"[holitom] holitom_smoke: {SMOKE_DOCS} samples, 0 video errors" in single.output


# ------------------------------------------------------------------------------------- two processes
def test_two_processes_cover_every_document_once(two_procs: CliRun) -> None:
    _ok(two_procs)
    assert two_procs.results()["n-samples"]["holitom_smoke"]["effective"] == 5
    assert sorted(s["doc_id"] for s in two_procs.samples("holitom_smoke")) == list(range(5))
    stats = two_procs.stats()
    assert [r["doc_id"] for r in stats] == list(range(5))  # the padding request left no line
    assert {r["rank"] for r in stats} == {0, 1}
    assert {r["doc_id"] for r in stats if r["rank"] == 1} == {1, 3}
    for rank in (0, 1):
        assert only_file(two_procs.model_dir, f"*_holitom_stats.*.rank{rank}.jsonl").is_file()
    assert two_procs.summary()["holitom_smoke"]["samples"] == 5
    assert "2 processes (data parallel" in two_procs.output


def test_two_processes_match_single_process(single: CliRun, two_procs: CliRun) -> None:
    _ok(single)
    _ok(two_procs)
    one = {s["doc_id"]: s["filtered_resps"] for s in single.samples("holitom_smoke")}
    two = {s["doc_id"]: s["filtered_resps"] for s in two_procs.samples("holitom_smoke")}
    assert two == {d: one[d] for d in two}
    tokens_one = {r["doc_id"]: (r["outer_tokens"], r["inner_tokens"]) for r in single.stats()}
    assert {r["doc_id"]: (r["outer_tokens"], r["inner_tokens"]) for r in two_procs.stats()} == {
        d: tokens_one[d] for d in range(5)
    }


# ------------------------------------------------------------ several evaluations into one --output_path
def test_concurrent_and_successive_evaluations_keep_their_own_statistics(single: CliRun, tmp_path: Path,
                                                                       clips: Path) -> None:
    """Two lmms-eval runs into one --output_path at once, into a folder that already holds an earlier run:
    three results files, each paired (by lmms-eval's stamp) with complete statistics of its own evaluation."""
    _ok(single)
    shutil.copytree(single.model_dir, tmp_path / "tiny")  # the earlier evaluation (the demo's HoliTom run)
    earlier = {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()}
    # lmms-eval names results by the second in --timezone: two timezones keep the names apart even when both
    # runs start in the same second (lmms-eval itself would then write both results into one file)
    settings = {"holitom": (f"{COMMON},{HOLITOM_ARGS}", 3, "UTC"), "dense": (f"{COMMON},method=dense", 2, "Asia/Tokyo")}
    runs: dict[str, CliRun] = {}

    def run(name: str) -> None:
        args, limit, timezone = settings[name]
        runs[name] = run_lmms_eval(tmp_path, args, env=cli_env(clips), extra=("--limit", str(limit), "--timezone",
                                                                               timezone))

    threads = [threading.Thread(target=run, args=(name,)) for name in settings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, run_ in runs.items():
        assert run_.returncode == 0 and "Traceback" not in run_.output, f"{name}:\n{run_.output[-4000:]}"
    results = sorted((tmp_path / "tiny").glob("*_results.json"))
    assert len(results) == 3, [p.name for p in results]
    assert all((tmp_path / "tiny" / name).read_bytes() == data for name, data in earlier.items())  # untouched
    seen = []
    for path in results:
        data = json.loads(path.read_text())
        lines = read_jsonl(stats_files(path)[0])
        summary = json.loads(stats_files(path)[1].read_text())
        task = data["results"]["holitom_smoke"]
        n = data["n-samples"]["holitom_smoke"]["effective"]
        method = parse_model_args(data["config"]["model_args"])["method"]
        assert [r["doc_id"] for r in lines] == list(range(n)) and {r["method"] for r in lines} == {method}
        assert summary == {"holitom_smoke": summary["holitom_smoke"]} and summary["holitom_smoke"]["samples"] == n
        assert "accuracy,none" in task
        seen.append((method, n))
    assert sorted(seen) == [("dense", 2), ("holitom", 3), ("holitom", SMOKE_DOCS)]


# ------------------------------------------------------------------- env vars + corrupt clip reporting
def test_original_env_vars_configure_holitom(env_corrupt: CliRun) -> None:
    _ok(env_corrupt)
    out = env_corrupt.output
    assert "effective HoliTom config (from environment (WRAPPER, RETAIN_RATIO, T, HOLITOM_k, HOLITOM_r))" in out
    assert "'method': 'holitom', 'retain_ratio': 0.25, 'tau': 0.8, 'merge_layer': 2, 'merge_ratio': 0.5" in out
    good = env_corrupt.stats()[0]
    assert good["doc_id"] == 0 and good["error"] is None and good["method"] == "holitom"
    assert good["inner_tokens"] < good["outer_tokens"] < good["dense_tokens"]


def test_corrupt_and_missing_clips_are_reported(env_corrupt: CliRun) -> None:
    _ok(env_corrupt)
    assert env_corrupt.results()["n-samples"]["holitom_smoke_corrupt"]["effective"] == 3
    stats = {r["doc_id"]: r for r in env_corrupt.stats()}
    assert stats[1]["error"].startswith("VideoDecodeError") and "corrupt.mp4" in stats[1]["error"]
    assert stats[2]["error"].startswith("VideoDecodeError") and "file not found" in stats[2]["error"]
    assert stats[1]["outer_tokens"] is None and stats[1]["frames"] is None
    answers = {s["doc_id"]: s["filtered_resps"] for s in env_corrupt.samples("holitom_smoke_corrupt")}
    assert answers[1] == FAILED_ANSWER and answers[2] == FAILED_ANSWER  # not answered from the text alone
    summary = env_corrupt.summary()["holitom_smoke_corrupt"]
    assert (summary["samples"], summary["errors"], summary["error_doc_ids"]) == (3, 2, [1, 2])
    assert "holitom_smoke_corrupt: 3 samples, 2 video errors" in env_corrupt.output
    assert "failed doc ids: [1, 2]" in env_corrupt.output


# ------------------------------------------------------------------------------------------ bad args
def test_unknown_model_arg_is_a_clear_error(tmp_path: Path, clips: Path) -> None:
    run = run_lmms_eval(tmp_path, f"{COMMON},bogus_arg=1", env=cli_env(clips))
    assert "unknown model_args bogus_arg" in run.output
    assert "retain_ratio" in run.output  # the valid ones are listed
    # one line and a failing exit status (lmms-eval catches a ValueError, prints its traceback and exits 0)
    assert run.returncode == 1 and "Traceback" not in run.output, run.output[-3000:]
    errors = [line for line in run.output.splitlines() if "error:" in line]
    assert errors == [line for line in run.output.splitlines() if line.startswith("llava_onevision_holitom: error: "
                                                                                   "unknown model_args bogus_arg.")]
    assert len(errors) == 1 and run.results() is None


# ----------------------------------------------------------------------------------------------- demo
def test_demo(demo: tuple[subprocess.CompletedProcess, Path]) -> None:
    proc, out = demo
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for label in ("accuracy (random weights: meaningless)", "visual tokens into the LLM (outer)",
                  "visual tokens after layer K (inner)", "LLM TFLOPs, this method", "wall time of the run (s)"):
        assert label in proc.stdout
    for run in ("dense", "holitom"):
        assert only_file(out / run / "tiny", "*_holitom_summary.json").is_file()
