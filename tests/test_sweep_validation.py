"""One validation for sweep and report: every bad value at once, truncated results, pending-scoring egoschema,
video errors beside the scores."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from sweep_helpers import EGOSCHEMA_OFFLINE, fake_study, write_module

from lmms_holitom.cli import main
from lmms_holitom.sweep.config import ConfigError, load_config, parse_config
from lmms_holitom.sweep.report import build_report, to_csv, to_markdown
from lmms_holitom.sweep.results import check_run
from lmms_holitom.sweep.runner import SweepRunner

MODEL = {"pretrained": "llava-hf/llava-onevision-qwen2-7b-ov-hf", "max_frames_num": 32}


def test_every_bad_value_of_every_run_is_reported():
    with pytest.raises(ConfigError) as info:
        parse_config({"name": "s", "model": MODEL, "tasks": ["mvbench"], "runs": [
            {"name": "a", "method": "holitom", "retain_ratio": 1.5, "tau": float("nan"), "merge_layer": -1},
            {"name": "b", "method": "visionzip", "knn_k": 0, "beta_merge": ""},
        ]})
    problems = info.value.problems
    assert problems == [
        "runs[0] 'a': retain_ratio must be in (0, 1], got 1.5",
        "runs[0] 'a': tau must be a finite number, got nan",
        "runs[0] 'a': merge_layer must be an integer in [1, 1024] (a decoder layer index) or none, got -1",
        "runs[1] 'b': beta_merge must be a boolean (true/false), got ''",
        "runs[1] 'b': knn_k must be an integer in [1, 1000000], got 0",
    ]


def test_egoschema_is_announced_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cfg = parse_config({"name": "s", "model": MODEL, "tasks": ["egoschema", "mvbench"]})
    assert len(cfg.notices) == 1 and "egoschema is scored by a remote server" in cfg.notices[0]
    assert "use egoschema_subset offline" in cfg.notices[0] and "mvbench of the same run" in cfg.notices[0]
    assert parse_config({"name": "s", "model": MODEL, "tasks": ["egoschema_subset"]}).notices == ()
    study = fake_study(tmp_path, tasks=["egoschema"])
    assert main(["sweep", str(study), "--dry-run", "--no-task-check", "-o", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "holitom sweep: note: egoschema is scored by a remote server" in err


def test_offline_egoschema_run_is_pending_scoring_not_failed(tmp_path: Path):
    mods = tmp_path / "mods"
    write_module(mods, "ego_offline", EGOSCHEMA_OFFLINE)
    study = fake_study(tmp_path, tasks=["egoschema"], runs=[{"name": "dense", "method": "dense"}],
                       launcher={"type": "python", "module": "ego_offline", "python": sys.executable,
                                 "env": {"PYTHONPATH": str(mods)}})
    cfg, out = load_config(study), tmp_path / "out"
    buf = io.StringIO()
    outcome = SweepRunner(cfg, out, out=buf).run(list(cfg.runs))
    assert outcome.exit_code == 0, buf.getvalue()
    assert [o.status for o in outcome.outcomes] == ["pending-scoring"]
    manifest = json.loads((out / "dense" / "run.json").read_text())
    answers = "lmms_eval/submissions/inference_results_egoschema_MC_2026-01-01-00-00-00.json"
    assert manifest["status"] == "pending-scoring" and manifest["pending_scoring"] == {"egoschema": answers}
    assert "1 pending-scoring" in buf.getvalue() and "PENDING-SCORING dense" in buf.getvalue()
    again = SweepRunner(cfg, out, out=io.StringIO()).run(list(cfg.runs))  # not rerun
    assert [o.status for o in again.outcomes] == ["skipped"] and not (out / "dense" / "attempt-1").exists()
    row = build_report(out).rows[0]
    assert row.status == "pending-scoring" and row.scores == {}
    listing = SweepRunner(cfg, out, out=io.StringIO()).describe(list(cfg.runs))
    assert "# [1/1] dense: pending-scoring (would be skipped)" in listing
    text = to_markdown(build_report(out))
    assert "| pending-scoring |" in text and "dense: pending-scoring — answers saved" in text


def test_egoschema_beside_other_tasks_without_results_fails_and_says_why(tmp_path: Path):
    (tmp_path / "lmms_eval" / "submissions").mkdir(parents=True)
    (tmp_path / "lmms_eval" / "submissions" / "inference_results_egoschema_MC_x.json").write_text("{}")
    check = check_run(tmp_path, ["egoschema", "mvbench"])
    assert check.state == "incomplete" and "which stops lmms-eval from writing the results of mvbench" in check.reason


def _results(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "20260101_000000_results.json").write_text(text)


def test_report_validates_like_the_sweep(tmp_path: Path):
    args = "pretrained=org/m,max_frames_num=8,method=dense"
    good = {"results": {"faketask": {"accuracy,none": 0.5}}, "n-samples": {"faketask": {"original": 4,
            "effective": 4}}, "config": {"model_args": args}, "group_subtasks": {"faketask": []}}
    for name, text in (("truncated", json.dumps(good)[:40]), ("short", json.dumps(
            {**good, "n-samples": {"faketask": {"original": 4, "effective": 3}}})), ("ok", json.dumps(good))):
        _results(tmp_path / name / "lmms_eval" / "org__m", text)
        (tmp_path / name / "run.json").write_text(json.dumps({"status": "done", "model_args": args,
                                                              "tasks": ["faketask"], "limit": None}))
    rows = {r.name: r for r in build_report(tmp_path).rows}
    assert rows["ok"].status == "done" and rows["ok"].scores == {"faketask": 0.5}
    assert rows["truncated"].status == "invalid" and rows["truncated"].scores == {}
    assert rows["short"].status == "invalid" and rows["short"].scores == {}
    text = to_markdown(build_report(tmp_path))
    assert "truncated: invalid — results file" in text and "is unreadable" in text
    assert "short: invalid — task faketask: 3 of 4 samples evaluated" in text


def test_video_errors_beside_the_scores_and_not_comparable(tmp_path: Path):
    args = "pretrained=org/m,max_frames_num=8,method=dense"
    for name, errors in (("clean", 0), ("broken", 3)):
        data = {"results": {"videomme": {"videomme_perception_score,none": 50.0}, "faketask": {"accuracy,none": 1}},
                "n-samples": {t: {"original": 4, "effective": 4} for t in ("videomme", "faketask")},
                "config": {"model_args": args}}
        folder = tmp_path / name / "lmms_eval" / "org__m"
        _results(folder, json.dumps(data))
        summary = {"videomme": {"samples": 4, "errors": errors, "error_doc_ids": list(range(errors))},
                   "faketask": {"samples": 4, "errors": 0, "error_doc_ids": []}}
        (folder / "20260101_000000_holitom_summary.json").write_text(json.dumps(summary))
    report = build_report(tmp_path)
    lines = {line.split("|")[1].strip(): line for line in to_markdown(report).splitlines() if line.startswith("| ")}
    assert "video errors" in lines["run"]
    assert "| VMME 3 |" in lines["broken"] and lines["broken"].endswith("| done ⚑ not comparable |")
    assert "| 0 |" in lines["clean"] and "not comparable" not in lines["clean"]
    csv_text = to_csv(report)
    header = csv_text.splitlines()[0].split(",")
    broken = next(line for line in csv_text.splitlines() if ",broken," in line).split(",")
    assert broken[header.index("VMME_video_errors")] == "3" and broken[header.index("faketask_video_errors")] == "0"


def test_llava_video_study_asks_for_its_layout():
    from sweep_helpers import REPO

    cfg = load_config(REPO / "configs" / "llava_video7b.yaml")
    args = cfg.run("dense").model_args_dict()
    assert args["pretrained"] == "lmms-lab/LLaVA-Video-7B-Qwen2" and args["max_frames_num"] == 64
    assert (args["mm_spatial_pool_mode"], args["mm_newline_position"]) == ("average", "grid")
    for study in sorted((REPO / "configs").glob("*.yaml")):  # every shipped study is scored offline
        assert "egoschema" not in load_config(study).tasks, study
