"""The figures of ``holitom report``, read through their matplotlib objects (no pixels): what a researcher sees.

`sweep_figures` is what `write_report` (the ``holitom report`` command) saves; each test builds a sweep folder in
lmms-eval 0.7.3's layout, runs `build_report` on it as the command does, and reads the Figure's axes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_sweep_report import PNG, make_run

from lmms_holitom.integrations.lmms_eval.records import stats_files
from lmms_holitom.sweep.plots import ALL_EQUAL, sweep_figures
from lmms_holitom.sweep.report import build_report, write_report

pytest.importorskip("matplotlib")


def smoke_run(root: Path, name: str, params: str, *, score: float, tflops: float | None) -> None:
    """A run of configs/smoke.yaml as the sweep leaves it: the local task ``holitom_smoke`` only (accuracy on a
    0–1 scale), on the tiny model, with the plugin's summary (cost-model TFLOPs of the measured tokens)."""
    model_args = f"pretrained=tiny,max_frames_num=8,dtype=float32,{params}"
    data = {"results": {"holitom_smoke": {"alias": "holitom_smoke", "accuracy,none": score,
                                          "accuracy_stderr,none": 0.0}},
            "group_subtasks": {"holitom_smoke": []},
            "n-samples": {"holitom_smoke": {"original": 6, "effective": 6}},
            "config": {"model": "llava_onevision_holitom", "model_args": model_args}}
    folder = root / name / "lmms_eval" / "tiny"
    folder.mkdir(parents=True)
    results = folder / "20261206_115545_results.json"
    results.write_text(json.dumps(data))
    summary = {"holitom_smoke": {"samples": 6, "errors": 0, "mean_tflops": tflops, "mean_outer_tokens": 230.0,
                                 "mean_inner_tokens": 114.0, "mean_ttft_ms": 400.0}}
    stats_files(results)[1].write_text(json.dumps(summary))  # the evaluation's own summary
    (root / name / "run.json").write_text(json.dumps({"status": "done", "model_args": model_args}))


def _legend(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def _notes(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_smoke_sweep_tflops_plot_is_readable(tmp_path: Path) -> None:
    """The smoke sweep with random weights: every score 0. The axis spans the metric's 0–1 range (not ±0.05), the
    plot says all scores are equal, the Pareto front (one point: no line) has no legend entry, the x axis says
    what the TFLOPs are, the y axis names the task's metric."""
    root = tmp_path / "smoke"
    smoke_run(root, "dense", "method=dense", score=0.0, tflops=1.47e-3)
    smoke_run(root, "holitom-r0.25", "method=holitom,retain_ratio=0.25,tau=0.8,merge_layer=2,merge_ratio=0.5",
              score=0.0, tflops=4.1e-5)
    smoke_run(root, "holitom_wo_m-r0.25", "method=holitom_wo_m,retain_ratio=0.25,tau=0.8", score=0.0, tflops=6e-5)
    figures = sweep_figures(build_report(root))
    assert list(figures) == ["accuracy_vs_tflops.png"]
    ax = figures["accuracy_vs_tflops.png"].axes[0]
    assert ax.get_ylim() == pytest.approx((-0.04, 1.04))
    assert ALL_EQUAL.format(n=3, v=0.0) in _notes(ax) and "all 3 scores equal (0)" in ALL_EQUAL.format(n=3, v=0.0)
    assert sorted(_legend(ax)) == ["HoliTom", "HoliTom w/o M", "dense"]
    assert ax.get_xlabel() == ("LLM prefill TFLOPs per sample (paper's cost model on the visual tokens,\n"
                               "measured token counts)")
    assert ax.get_xscale() == "log"  # 4.1e-5 .. 1.47e-3
    assert ax.get_ylabel() == "holitom_smoke: accuracy (as lmms-eval reports it)"


def test_all_equal_percent_scores_span_0_to_100(tmp_path: Path) -> None:
    """The paper's benchmark columns all 0: the ablation plot spans 0–100 % and says so (dense line included)."""
    root = tmp_path / "zero"
    zero = {"mvb": (0.0, 0.0), "ego": 0.0, "lvb": 0.0, "vmme": 0.0}
    make_run(root, "dense", "method=dense", **zero)
    for tau in (0.7, 0.9):
        make_run(root, f"holitom-t{tau}", f"method=holitom,retain_ratio=0.25,tau={tau},merge_layer=18,"
                 "merge_ratio=0.5", **zero)
    ax = sweep_figures(build_report(root))["ablation_tau.png"].axes[0]
    assert ax.get_ylim() == pytest.approx((-4.0, 104.0))
    assert _notes(ax) == [ALL_EQUAL.format(n=3, v=0.0)]
    assert ax.get_ylabel() == "Avg accuracy over MVB/Ego/LVB/VMME (%)"


def test_distinct_scores_keep_their_axis_and_draw_the_front(tmp_path: Path) -> None:
    """Scores that differ: matplotlib's own limits around them, no note, a Pareto front of two or more points with
    its legend entry; measured and cost-model TFLOPs mixed: hollow markers for the budget, and the label says so."""
    root = tmp_path / "ov7b"
    measured = {"videomme": {"samples": 10, "errors": 0, "mean_tflops": 30.0, "mean_outer_tokens": 6272.0}}
    make_run(root, "dense", "method=dense", mvb=(58.0, 58.6), ego=0.604, lvb=0.564, vmme=58.6, summary=measured)
    make_run(root, "holitom-r0.10", "method=holitom,retain_ratio=0.1,tau=0.65,merge_layer=18,merge_ratio=0.5",
             mvb=(57.0, 57.6), ego=0.61, lvb=0.56, vmme=56.0)  # no summary: the cost model on the budget
    report = build_report(root)
    ax = sweep_figures(report)["accuracy_vs_tflops.png"].axes[0]
    low, high = ax.get_ylim()
    avgs = sorted(r.avg for r in report.rows)
    assert avgs == pytest.approx([57.575, 58.425])
    assert low < avgs[0] < avgs[1] < high and high - low < 1.0  # around the scores, not 0–100
    assert _notes(ax) == ["10%"]  # the retain ratio beside its point; no "all scores equal"
    assert "Pareto front" in _legend(ax)
    front = next(line for line in ax.get_lines() if line.get_label() == "Pareto front")
    assert len(front.get_xdata()) == 2
    assert ax.get_xlabel().endswith("filled: measured token counts, hollow: the setting's token budget")
    filled = {round(float(c.get_offsets()[0][0]), 1): len(c.get_facecolors()) > 0 for c in ax.collections}
    assert len(filled) == 2 and filled.pop(30.0) is True and list(filled.values()) == [False]  # dense measured


def test_report_writes_each_figure_it_builds(tmp_path: Path) -> None:
    """`write_report` (the command) saves exactly the figures `sweep_figures` builds, as complete PNGs."""
    root = tmp_path / "smoke"
    smoke_run(root, "dense", "method=dense", score=0.5, tflops=1.0)
    smoke_run(root, "holitom-r0.25", "method=holitom,retain_ratio=0.25,tau=0.8,merge_layer=2,merge_ratio=0.5",
              score=0.25, tflops=0.2)
    _report, written = write_report(root, tmp_path / "out")
    pngs = sorted(p.name for p in written if p.suffix == ".png")
    assert pngs == sorted(sweep_figures(build_report(root))) == ["accuracy_vs_tflops.png"]
    assert (tmp_path / "out" / "plots" / pngs[0]).read_bytes().startswith(PNG)
    assert not list((tmp_path / "out" / "plots").glob(".*.tmp"))  # written atomically, nothing left behind
