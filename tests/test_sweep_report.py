"""``holitom report``: the paper's table from results JSONs crafted in lmms-eval 0.7.3's layout."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import REPO

from lmms_holitom.sweep.report import build_report, to_csv, to_markdown, write_report

PRETRAINED = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
SUBTASKS = [f"mvbench_sub{i:02d}" for i in range(20)]
PNG = b"\x89PNG\r\n\x1a\n"


def make_run(root: Path, name: str, params: str, *, mvb: tuple[float, float], ego: float, lvb: float, vmme: float,
             extra: dict[str, float] | None = None, summary: dict | str | None = None, frames: int = 32) -> None:
    """A run folder as the sweep leaves it: run.json + lmms_eval/<model>/<date>_results.json + the plugin's
    <date>_holitom_summary.json (``summary``: entries over a clean one; ``"none"``: no summary file).

    ``mvb``: half the MVBench subtasks score the first value, half the second.
    """
    model_args = f"pretrained={PRETRAINED},max_frames_num={frames},{params}"
    results = {"mvbench": {"alias": "mvbench"}}
    for i, t in enumerate(SUBTASKS):
        results[t] = {"alias": f" - {t}", "mvbench_accuracy,none": mvb[i % 2], "mvbench_accuracy_stderr,none": "N/A"}
    results["egoschema_subset"] = {"alias": "egoschema_subset", "score,none": ego, "score_stderr,none": 0.02}
    results["longvideobench_val_v"] = {"alias": "longvideobench_val_v", "lvb_acc,none": lvb}
    results["videomme"] = {"alias": "videomme", "videomme_perception_score,none": vmme}
    for task, value in (extra or {}).items():
        results[task] = {"alias": task, "accuracy,none": value, "accuracy_stderr,none": 0.1}
    leaves = [*SUBTASKS, "egoschema_subset", "longvideobench_val_v", "videomme", *(extra or {})]
    data = {
        "results": results,
        "group_subtasks": {"mvbench": SUBTASKS, **{t: [] for t in leaves if t not in SUBTASKS}},
        "n-samples": {t: {"original": 10, "effective": 10} for t in leaves},
        "config": {"model": "llava_onevision_holitom", "model_args": model_args},
    }
    folder = root / name / "lmms_eval" / "llava-hf__llava-onevision-qwen2-7b-ov-hf"
    folder.mkdir(parents=True)
    (folder / "20250101_120000_results.json").write_text(json.dumps(data))
    if isinstance(summary, dict) or summary is None:  # the plugin's statistics; tasks left out: clean
        summary = {**{t: {"samples": 10, "errors": 0} for t in leaves}, **(summary or {})}
    if summary != "none":
        (folder / "20250101_120000_holitom_summary.json").write_text(json.dumps(summary))
    (root / name / "run.json").write_text(json.dumps({"status": "done", "model_args": model_args}))


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    root = tmp_path / "ov7b"
    make_run(root, "dense", "method=dense", mvb=(58.0, 58.6), ego=0.604, lvb=0.564, vmme=58.6)
    make_run(root, "holitom-r0.15-t0.80-k18-m0.5",
             "method=holitom,retain_ratio=0.15,tau=0.8,merge_layer=18,merge_ratio=0.5",
             mvb=(58.0, 58.2), ego=0.612, lvb=0.564, vmme=57.3, extra={"holitom_smoke": 0.5},
             summary={"videomme": {"samples": 10, "errors": 0, "mean_tflops": 4.0, "mean_outer_tokens": 900.0,
                                   "mean_inner_tokens": 450.0, "mean_ttft_ms": 100.0},
                      "mvbench_sub00": {"samples": 32, "errors": 2, "mean_tflops": 5.0, "mean_outer_tokens": 1000.0,
                                        "mean_inner_tokens": 500.0, "mean_ttft_ms": 200.0}})
    make_run(root, "holitom-r0.10-t0.65-k18-m0.5",
             "method=holitom,retain_ratio=0.1,tau=0.65,merge_layer=18,merge_ratio=0.5",
             mvb=(57.0, 57.6), ego=0.61, lvb=0.56, vmme=56.0)
    make_run(root, "holitom-r0.15-t0.65-k18-m0.5",  # an ablation point: no published row
             "method=holitom,retain_ratio=0.15,tau=0.65,merge_layer=18,merge_ratio=0.5",
             mvb=(57.0, 57.0), ego=0.60, lvb=0.55, vmme=57.0)
    make_run(root, "fastv-k2-m0.8", "method=fastv,merge_layer=2,merge_ratio=0.8",
             mvb=(55.0, 56.0), ego=0.57, lvb=0.567, vmme=56.1)
    make_run(root, "visionzip-r0.15-s30", "method=visionzip,retain_ratio=0.15,spatial_tokens=30",
             mvb=(56.0, 57.0), ego=0.598, lvb=0.544, vmme=56.1)
    failed = root / "holitom_wo_m-r0.15-t0.80"
    failed.mkdir()
    (failed / "run.json").write_text(json.dumps({
        "status": "failed", "reason": "no lmms-eval results file",
        "model_args": f"pretrained={PRETRAINED},max_frames_num=32,method=holitom_wo_m,retain_ratio=0.15,tau=0.8"}))
    return root


def md_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def test_markdown_table_values(sweep_dir: Path):
    report = build_report(sweep_dir)
    rows = md_rows(to_markdown(report))
    names = [r["run"].strip("*") for r in rows]
    # the paper's order: dense, FastV, then per budget (high to low) VisionZip, HoliTom w/o M, HoliTom
    assert names == ["dense", "↳ paper", "fastv-k2-m0.8", "↳ paper", "visionzip-r0.15-s30", "↳ paper",
                     "holitom_wo_m-r0.15-t0.80", "↳ paper", "holitom-r0.15-t0.65-k18-m0.5",
                     "holitom-r0.15-t0.80-k18-m0.5", "↳ paper", "holitom-r0.10-t0.65-k18-m0.5", "↳ paper"]
    dense, dense_paper = rows[0], rows[1]
    assert {k: dense[k] for k in ("method", "retain", "frames", "MVB", "Ego", "LVB", "VMME", "Avg", "% of dense")} == {
        "method": "dense", "retain": "100 %", "frames": "32", "MVB": "58.3", "Ego": "60.4", "LVB": "56.4",
        "VMME": "58.6", "Avg": "58.4", "% of dense": "100.0"}
    assert dense["TFLOPs"] == "≈40.8"  # no summary: the paper's cost model
    assert (dense_paper["MVB"], dense_paper["TFLOPs"], dense_paper["status"]) == ("*58.3*", "*40.8*", "*published*")

    ours = rows[names.index("holitom-r0.15-t0.80-k18-m0.5")]
    # MVB 58.1, Ego 61.2, LVB 56.4, VMME 57.3 -> Avg 58.25; dense Avg 58.425
    assert (ours["MVB"], ours["Ego"], ours["LVB"], ours["VMME"]) == ("58.1", "61.2", "56.4", "57.3")
    assert ours["Avg"] == "58.2" and ours["% of dense"] == f"{100 * 58.25 / 58.425:.1f}"
    # summary path: sample-weighted over error-free samples: (10*4 + 30*5) / 40 = 4.75 TFLOPs
    assert ours["TFLOPs"] == "4.8" and ours["visual tokens"] == "975→488" and ours["TTFT ms"] == "175"
    assert ours["holitom_smoke"] == "0.5" and ours["T"] == "0.80" and ours["K"] == "18" and ours["r"] == "0.5"
    paper = rows[names.index("holitom-r0.15-t0.80-k18-m0.5") + 1]
    assert (paper["MVB"], paper["Avg"], paper["% of dense"], paper["TFLOPs"]) == ("*58.1*", "*58.2*", "*99.7*", "*4.3*")

    fastv = rows[names.index("fastv-k2-m0.8")]
    assert fastv["retain"] == "LLM" and fastv["TFLOPs"] == "≈9.3"
    assert rows[names.index("visionzip-r0.15-s30")]["TFLOPs"] == "≈5.2"
    failed = rows[names.index("holitom_wo_m-r0.15-t0.80")]
    assert failed["status"] == "failed" and failed["MVB"] == "" and failed["TFLOPs"] == "≈5.2"
    assert names[names.index("holitom-r0.15-t0.65-k18-m0.5") + 1] != "↳ paper"  # T differs from the paper
    text = to_markdown(report)
    assert "holitom_wo_m-r0.15-t0.80: failed — no lmms-eval results file" in text


def test_csv_parses_back(sweep_dir: Path):
    report = build_report(sweep_dir)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert list(rows[0])[:9] == ["source", "run", "method", "retain_ratio", "tau", "merge_layer", "merge_ratio",
                                 "frames", "pretrained"]
    ours = next(r for r in rows if r["run"] == "holitom-r0.15-t0.80-k18-m0.5")
    assert ours["source"] == "ours" and ours["method"] == "holitom"
    assert float(ours["MVB"]) == pytest.approx(58.1)
    assert float(ours["Ego"]) == pytest.approx(61.2)
    assert float(ours["avg"]) == pytest.approx(58.25)
    assert float(ours["pct_of_dense"]) == pytest.approx(100 * 58.25 / 58.425)
    assert float(ours["tflops"]) == pytest.approx(4.75) and ours["tflops_source"] == "measured"
    assert float(ours["visual_tokens"]) == pytest.approx(975.0) and float(ours["ttft_ms"]) == pytest.approx(175.0)
    assert float(ours["holitom_smoke"]) == 0.5
    assert ours["results_file"] == ("holitom-r0.15-t0.80-k18-m0.5/lmms_eval/llava-hf__llava-onevision-qwen2-7b-ov-hf/"
                                    "20250101_120000_results.json")
    paper = [r for r in rows if r["source"] == "paper"]
    assert len(paper) == 6  # the failed run's published row is shown too
    assert {r["run"]: float(r["avg"]) for r in paper}["fastv-k2-m0.8 (paper)"] == 56.5
    fastv = next(r for r in rows if r["run"] == "fastv-k2-m0.8")
    assert float(fastv["tflops"]) == pytest.approx(9.307, abs=1e-3) and fastv["tflops_source"] == "theoretical"


def test_plots_are_written(sweep_dir: Path, tmp_path: Path):
    _, written = write_report(sweep_dir, tmp_path / "rep")
    names = {p.name for p in written}
    assert {"report.md", "report.csv", "accuracy_vs_retain_ratio.png", "accuracy_vs_tflops.png",
            "ablation_tau.png"} <= names
    assert "ablation_merge_layer.png" not in names  # K is not varied
    for p in written:
        if p.suffix == ".png":
            data = p.read_bytes()
            assert data.startswith(PNG) and len(data) > 15_000, p


def test_plots_need_matplotlib(sweep_dir: Path, monkeypatch: pytest.MonkeyPatch):
    from lmms_holitom.sweep.plots import PlotsUnavailable

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotsUnavailable, match="pip install matplotlib"):
        write_report(sweep_dir, sweep_dir / "x")
    write_report(sweep_dir, sweep_dir / "y", plots=False)  # tables still work


def test_report_cli(sweep_dir: Path):
    res = subprocess.run([sys.executable, "-m", "lmms_holitom.cli", "report", str(sweep_dir), "--no-plots"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "| holitom-r0.15-t0.80-k18-m0.5 | HoliTom | 15 % |" in res.stdout
    assert (sweep_dir / "report.md").is_file() and (sweep_dir / "report.csv").is_file()
    empty = sweep_dir.parent / "empty"
    empty.mkdir()
    res = subprocess.run([sys.executable, "-m", "lmms_holitom.cli", "report", str(empty), "--no-plots"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 1 and "no runs found" in res.stderr


def test_paper_data_matches_published_table():
    from lmms_holitom.sweep.paper import PAPER_ROWS, match_paper

    ov7 = [r for r in PAPER_ROWS if r.model == "ov-7b"]
    assert len(ov7) == 14
    for r in ov7:  # each published Avg is the mean of its four columns (to the rounding of the table)
        assert sum(r.scores.values()) / 4 == pytest.approx(r.avg, abs=0.051), r
    row = match_paper("ov-72b", "holitom_wo_m", 0.15, 32, {"tau": 0.8})
    assert row is not None and row.tflops == 51.6 and "without the inner merge" in row.note
    assert match_paper("ov-7b", "holitom", 0.15, 64, {"tau": 0.8, "merge_layer": 18, "merge_ratio": 0.5}) is None


def test_every_registry_method_is_reported_and_plotted(tmp_path: Path):
    """EVS and VidCom2 (methods the report code never names) get their label, retain ratio, cost-model TFLOPs (their
    own exact counts) and their curve in the retain plot, from the registry alone."""
    from lmms_holitom.config import HoliTomConfig
    from lmms_holitom.flops import setting_flops

    root = tmp_path / "methods"
    make_run(root, "dense", "method=dense", mvb=(58.0, 58.6), ego=0.604, lvb=0.564, vmme=58.6)
    for method in ("evs", "vidcom2"):
        for ratio, score in ((0.25, 57.0), (0.10, 55.0)):
            make_run(root, f"{method}-r{ratio:.2f}", f"method={method},retain_ratio={ratio}",
                     mvb=(score, score), ego=0.6, lvb=0.55, vmme=score)
    report, written = write_report(root, tmp_path / "rep")
    rows = {r["run"]: r for r in md_rows(to_markdown(report))}
    for method, label in (("evs", "EVS"), ("vidcom2", "VidCom2")):
        row = rows[f"{method}-r0.10"]
        assert (row["method"], row["retain"]) == (label, "10 %")
        want = setting_flops(HoliTomConfig(method=method, retain_ratio=0.1), "llava-onevision-7b", 32) / 1e12
        assert row["TFLOPs"] == f"≈{want:.1f}" and want < 3.4  # 627 tokens, fewer than HoliTom's counted 640
    retain_plot = next(p for p in written if p.name == "accuracy_vs_retain_ratio.png")
    assert retain_plot.read_bytes().startswith(PNG)


def test_percent_of_dense_names_why_it_is_missing(tmp_path: Path) -> None:
    """`% of dense` is a number or ``n/a (why)`` — never blank: dense scored 0 (random weights), no dense run for that
    checkpoint and frame count."""
    from test_plots_sweep import smoke_run

    root = tmp_path / "zero"
    smoke_run(root, "dense", "method=dense", score=0.0, tflops=1e-3)
    smoke_run(root, "holitom", "method=holitom,retain_ratio=0.25", score=0.5, tflops=1e-4)
    rows = {r.name: r for r in build_report(root).rows}
    assert rows["holitom"].pct_dense is None and rows["holitom"].pct_dense_reason == "dense scored 0"
    assert "| n/a (dense scored 0) |" in to_markdown(build_report(root))

    lonely = tmp_path / "lonely"
    smoke_run(lonely, "holitom-r0.1", "method=holitom,retain_ratio=0.1", score=0.5, tflops=1e-4)
    (row,) = build_report(lonely).rows
    assert (row.pct_dense, row.pct_dense_reason) == (None, "no dense run")
    assert "| n/a (no dense run) |" in to_markdown(build_report(lonely))
