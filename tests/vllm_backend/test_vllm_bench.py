"""``holitom bench --backend vllm`` through the CLI, in the vLLM venv: a tiny shape, one repeat, concurrency 1 and 2,
every method at 10 %: the JSON has every figure for every setting and concurrency, and each request's prompt has the
method's exact token count (no timing is asserted). Runs in the vLLM venv: ``make test-vllm``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMES, PER_FRAME, RETAIN = 4, 196, 0.1
FIGURES = ("requests_per_s", "ttft_p50_ms", "ttft_p90_ms", "output_tok_s", "peak_rss_mb", "rss_rise_mb")


def _holitom(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "lmms_holitom.cli", "bench", "--backend", "vllm", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "vllm.json"
    done = _holitom("--shape", "tiny", "--frames", str(FRAMES), "--repeats", "1", "--warmup", "0", "--concurrency",
                    "1,2", "--retain-ratios", str(RETAIN), "--new-tokens", "2", "--json", str(out), "--quiet",
                    "--step-tokens", "prompt",
                    "--plot", str(out.with_suffix(".png")))
    assert done.returncode == 0, done.stderr[-3000:]
    # the vLLM venv's lock has matplotlib: the plot is written (its content: tests/test_bench_vllm.py)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "concurrency 2:" in done.stdout and "targets (issue 18):" in done.stdout
    return json.loads(out.read_text())


def test_every_method_every_figure(result: dict) -> None:
    names = [r["name"] for r in result["settings"]]
    assert names == ["dense", *(f"{m}@0.10" for m in ("holitom_wo_m", "visionzip", "evs", "vidcom2"))]
    assert [r["label"] for r in result["settings"]][-2:] == ["evs (ours)@0.10", "vidcom2 (ours)@0.10"]
    assert result["meta"]["concurrency"] == [1, 2] and result["meta"]["versions"]["vllm"]
    for rec in result["settings"]:
        assert set(rec["by_concurrency"]) == {"1", "2"} and set(rec["ratios"]) == {"1", "2"}
        for figures in rec["by_concurrency"].values():
            assert set(figures) == set(FIGURES)
            for name in FIGURES:
                assert len(figures[name]["values"]) == 1 and math.isfinite(figures[name]["median"]), name
            assert figures["requests_per_s"]["median"] > 0 and figures["ttft_p50_ms"]["median"] > 0
        assert set(rec["pruning_ms"]) == {"vision", "probe", "merge", "probe_merge_share_of_vision"}
        assert rec["pruning_ms"]["vision"]["median"] > 0
        assert len(rec["pruning_ms"]["vision"]["values"]) == 5  # `PRUNING_REPEATS`, above the 1 repeat asked for
        if rec["method"] not in ("holitom_wo_m", "visionzip"):  # no saliency probe: nothing to time
            assert rec["pruning_ms"]["probe"]["values"] == [0.0] * 5, rec["name"]
    dense = result["settings"][0]
    assert dense["ratios"]["1"]["requests_per_s"] == 1.0


def test_prompt_tokens_follow_the_budget(result: dict) -> None:
    """Every request's prompt: the text, then the method's count of visual tokens and one newline; HoliTom w/o M and
    VisionZip at the exact budget F * ceil(r * N)."""
    from lmms_holitom.config import HoliTomConfig

    (dense,) = result["settings"][0]["prompt_tokens"]
    text = dense - (FRAMES * PER_FRAME + 1)
    exact = FRAMES * math.ceil(RETAIN * PER_FRAME)
    for rec in result["settings"][1:]:
        budget = HoliTomConfig(method=rec["method"], retain_ratio=RETAIN).visual_budget(FRAMES, PER_FRAME)
        if rec["method"] in ("holitom_wo_m", "visionzip"):
            assert budget == exact
        assert rec["prompt_tokens"] == [text + budget + 1], rec["name"]
        assert rec["visual_tokens"] == budget + 1


def test_each_engine_took_its_own_prompt_as_step_budget(result: dict) -> None:
    """``--step-tokens prompt``: vLLM's scheduler config of each engine holds its visual tokens + newline + the text
    margin (64) + one decode token per request of the largest batch (2)."""
    assert result["meta"]["step_tokens"] == "prompt"
    for rec in result["settings"]:
        assert rec["max_num_batched_tokens"] == rec["visual_tokens"] + 64 + 2, rec["name"]
        assert rec["prompt_tokens"][0] <= rec["max_num_batched_tokens"] < 2 * rec["visual_tokens"], rec["name"]


def test_transformers_only_flags_are_one_line_errors(tmp_path) -> None:
    for args, named in ((["--budget", "exact"], "--budget"), (["--methods", "holitom"], "--methods holitom"),
                        (["--shape", "7b"], "--shape"), (["--concurrency", "0"], "--concurrency"),
                        (["--step-tokens", "0"], "--step-tokens"),
                        (["--plot", str(tmp_path)], "--plot")):
        done = _holitom(*args, timeout=60)
        assert done.returncode == 2, (args, done.stderr[-2000:])
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], (args, done.stderr[-2000:])


def test_a_video_longer_than_the_default_step_budget_runs(tmp_path) -> None:
    """24 frames x 196 tokens (4,704 + the text) exceed vLLM's default step budget on a CPU runner (4,096 tokens),
    which also sizes its encoder cache: the bench raises the budget to the prompt instead of failing each request."""
    out = tmp_path / "long.json"
    done = _holitom("--shape", "tiny", "--frames", "24", "--repeats", "1", "--warmup", "0", "--concurrency", "1",
                    "--methods", "holitom_wo_m", "--retain-ratios", str(RETAIN), "--new-tokens", "1", "--json",
                    str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    settings = json.loads(out.read_text())["settings"]
    assert [r["name"] for r in settings] == ["dense", "holitom_wo_m@0.10"]
    (dense,) = settings[0]["prompt_tokens"]
    budget = 24 * math.ceil(RETAIN * PER_FRAME)
    assert dense > 4096 and settings[1]["prompt_tokens"] == [dense - 24 * PER_FRAME + budget]
    # the default policy: every engine's step budget is the longest prompt's max_len (vLLM's scheduler config)
    assert [r["max_num_batched_tokens"] for r in settings] == [24 * PER_FRAME + 64 + 1] * 2
