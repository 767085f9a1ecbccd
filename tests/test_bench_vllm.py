"""``holitom bench --backend vllm`` outside the vLLM environment, and its report: the missing vLLM is one line naming
the environment to use; repeats that disagree are marked and warned; ``--concurrency`` and ``--step-tokens`` belong to
the vLLM backend; the step budget policies.
(The run itself is checked in the vLLM venv: ``tests/vllm_backend/test_vllm_bench.py``.)"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys

import pytest

from lmms_holitom.bench.summary import DISAGREE_RATIO
from lmms_holitom.bench.vllm_engine import FIGURES, _add, _ratios, _record, _summaries, _warnings
from lmms_holitom.bench.vllm_measure import PROMPT_MARGIN, BatchResult, step_budget
from lmms_holitom.bench.vllm_options import VllmBenchOptions, vllm_bench_settings
from lmms_holitom.bench.vllm_report import format_vllm_table
from lmms_holitom.cli import main

NO_VLLM = importlib.util.find_spec("vllm") is None


@pytest.mark.skipif(not NO_VLLM, reason="this environment has vLLM: the vLLM suite runs the bench")
def test_without_vllm_one_line_naming_the_venv() -> None:
    done = subprocess.run([sys.executable, "-m", "lmms_holitom.cli", "bench", "--backend", "vllm"],
                          capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("holitom bench: error: --backend vllm needs vLLM") and ".venv-vllm" in lines[0]
    assert "make venv-vllm" in lines[0]


@pytest.mark.parametrize(("flag", "value"), [("--concurrency", "1,4"), ("--step-tokens", "prompt")])
def test_vllm_flags_are_for_vllm_only(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"holitom bench: error: {flag} applies to --backend vllm only"]


def test_step_budget_policies() -> None:
    """default: vLLM's own (None) unless the dense prompt is longer; prompt: the engine's own prompt, its text margin
    and a decode token per running request (one new video per step); an integer: that budget."""
    assert step_budget("default", video_tokens=190, max_len=1700, max_batch=8) is None
    assert step_budget("default", video_tokens=190, max_len=6353, max_batch=8) == 6353
    assert step_budget("prompt", video_tokens=640, max_len=6353, max_batch=8) == 640 + 1 + PROMPT_MARGIN + 8
    assert step_budget("prompt", video_tokens=6272, max_len=6353, max_batch=1) == 6272 + 1 + PROMPT_MARGIN + 1
    assert step_budget("2048", video_tokens=640, max_len=6353, max_batch=8) == 2048


@pytest.mark.parametrize("value", ["", "0", "-3", "prompts", "1.5", "2000000"])
def test_step_tokens_out_of_range_names_the_flag(value: str) -> None:
    with pytest.raises(ValueError, match=r"--step-tokens must be default, prompt or an integer in \[1, 1048576\]"):
        VllmBenchOptions(step_tokens=value)


def _batch(wall: float, c: int) -> BatchResult:
    return BatchResult(wall_s=wall, ttft_s=tuple(wall / 2 for _ in range(c)), prompt_tokens=(100,) * c,
                       output_tokens=(4,) * c, peak_rss_mb=1000.0, rss_rise_mb=10.0)


def _result(walls: dict[str, list[float]]) -> dict:
    """A result of the engine's own bookkeeping (records, summaries, ratios, warnings) over given batch times."""
    opts = VllmBenchOptions(shape="tiny", frames=4, methods=("holitom_wo_m",), retain_ratios=(0.1,),
                            concurrency=(2,), repeats=2)
    settings = vllm_bench_settings(opts)
    records = [_record(opts, s) for s in settings]
    for rec in records:
        for wall in walls[rec["name"]]:
            _add(rec, 2, _batch(wall, 2))
        _summaries(rec)
        rec["pruning_ms"] = {k: {"median": 1.0} for k in ("vision", "probe", "merge")}
        rec["pruning_ms"]["probe_merge_share_of_vision"] = {"median": 2.0}
    _ratios(records, "median")
    meta = {"shape": "tiny", "shape_text": "t", "frames": 4, "tokens_per_frame": 196, "frame_size": 384,
            "dtype": "bf16", "new_tokens": 4, "repeats": 2, "stat": "median", "versions": {"vllm": "x"},
            "date": "d", "machine": "m", "cpus": 2, "concurrency": [2]}
    return {"meta": meta, "settings": records, "warnings": _warnings(records), "targets": []}


def test_disagreeing_repeats_are_marked_and_warned() -> None:
    slow = 0.1 * (DISAGREE_RATIO + 0.5)
    result = _result({"dense": [1.0, 1.1], "holitom_wo_m@0.10": [0.1, slow]})
    assert set(result["settings"][0]["by_concurrency"]["2"]) == set(FIGURES)
    assert result["warnings"] and all(w.startswith("holitom_wo_m@0.10 at concurrency 2") for w in result["warnings"])
    table = format_vllm_table(result)
    assert "warning: repeats disagree" in table
    row = next(line for line in table.splitlines() if line.strip().startswith("holitom_wo_m@0.10"))
    assert "!" in row
    dense_row = next(line for line in table.splitlines() if line.strip().startswith("dense"))
    assert "!" not in dense_row
    rates = result["settings"][1]["ratios"]["2"]["requests_per_s"]
    # the medians of the repeats' rates, side by side
    assert rates == pytest.approx(statistics.median([2 / 0.1, 2 / slow]) / statistics.median([2 / 1.0, 2 / 1.1]))


def test_figure_one_panel_per_figure_one_bar_per_setting_and_concurrency() -> None:
    pytest.importorskip("matplotlib")  # an optional dependency of the package (the plot extra)
    from lmms_holitom.bench.vllm_report import vllm_figure

    result = _result({"dense": [1.0, 1.1], "holitom_wo_m@0.10": [0.2, 0.25]})
    fig = vllm_figure(result)
    assert [ax.get_title() for ax in fig.axes] == ["TTFT p50 (ms)", "requests/s", "output tokens/s"]
    rates = [bar.get_height() for bar in fig.axes[1].patches]
    assert rates == pytest.approx([r["by_concurrency"]["2"]["requests_per_s"]["median"] for r in result["settings"]])
