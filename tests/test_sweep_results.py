"""Result validation: when does a run count as done (crafted lmms-eval 0.7.3 results files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmms_holitom.sweep.results import check_run, expected_effective, find_results_file, score_metric

MVB = [f"mvbench_{s}" for s in ("action_sequence", "moving_count", "action_prediction")]
ARGS = "pretrained=lmms-lab/llava-onevision-qwen2-7b-ov,method=holitom,retain_ratio=0.15"


def write_results(run_dir: Path, *, tasks: dict[str, tuple[int, int]], groups: dict[str, list[str]] | None = None,
                  model_args: str = ARGS, stamp: str = "20250101_000000", summary: dict | None = None) -> Path:
    """``tasks``: leaf -> (original, effective), in lmms-eval's layout under run_dir/lmms_eval/<model>/."""
    folder = run_dir / "lmms_eval" / "lmms-lab__llava-onevision-qwen2-7b-ov"
    folder.mkdir(parents=True, exist_ok=True)
    groups = groups or {}
    results = {g: {"alias": g} for g in groups}
    for t in tasks:  # each task's own score metric, half its scale
        metric, scale = score_metric(t) or ("acc", 100.0)
        results[t] = {"alias": t, f"{metric},none": scale / 2, f"{metric}_stderr,none": 1.0}
    data = {
        "results": results,
        "group_subtasks": {**{g: m for g, m in groups.items()},
                           **{t: [] for t in tasks if not any(t in m for m in groups.values())}},
        "n-samples": {t: {"original": o, "effective": e} for t, (o, e) in tasks.items()},
        "config": {"model": "llava_onevision_holitom", "model_args": model_args},
    }
    path = folder / f"{stamp}_results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    if summary is not None:
        (folder / f"{stamp}_holitom_summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return path


def test_done_full_run_with_group(tmp_path: Path):
    write_results(tmp_path, tasks={**{t: (200, 200) for t in MVB}, "videomme": (2700, 2700)},
                  groups={"mvbench": MVB})
    check = check_run(tmp_path, ["mvbench", "videomme"], model_args=ARGS)
    assert check.done, check.reason
    assert check.leaves == {"mvbench": MVB, "videomme": ["videomme"]}
    assert check.model_errors is None


def test_missing_file(tmp_path: Path):
    check = check_run(tmp_path, ["videomme"])
    assert not check.done and "no lmms-eval results file" in check.reason


def test_missing_task_and_missing_subtask(tmp_path: Path):
    write_results(tmp_path, tasks={t: (200, 200) for t in MVB[:2]}, groups={"mvbench": MVB[:2]})
    check = check_run(tmp_path, ["mvbench", "videomme"], groups={"mvbench": MVB})
    assert not check.done
    assert f"task {MVB[2]} (of mvbench) has no metrics in results" in check.reason
    assert "task videomme has no metrics in results" in check.reason


def test_wrong_n_samples(tmp_path: Path):
    write_results(tmp_path, tasks={"videomme": (2700, 2699)})
    check = check_run(tmp_path, ["videomme"])
    assert not check.done
    assert "2699 of 2700 samples evaluated (a run without --limit must evaluate all)" in check.reason


def test_limit(tmp_path: Path):
    write_results(tmp_path, tasks={"videomme": (2700, 5), "small": (3, 3)})
    assert check_run(tmp_path, ["videomme", "small"], limit=5).done
    check = check_run(tmp_path, ["videomme"], limit=10)
    assert not check.done and "5 samples evaluated, expected 10 (limit 10, 2700 in the task)" in check.reason
    assert not check_run(tmp_path, ["videomme"]).done  # a limited result is not a full run
    assert expected_effective(10, 0.5) == 5


def test_results_of_other_model_args_are_not_done(tmp_path: Path):
    write_results(tmp_path, tasks={"videomme": (10, 10)})
    other = ARGS.replace("retain_ratio=0.15", "retain_ratio=0.2")
    check = check_run(tmp_path, ["videomme"], model_args=other)
    assert not check.done
    assert "other model_args: retain_ratio: 0.15 (expected 0.2)" in check.reason
    # same arguments in another order are the same run
    reordered = ",".join(reversed(ARGS.split(",")))
    assert check_run(tmp_path, ["videomme"], model_args=reordered).done


def test_truncated_file_and_newest_wins(tmp_path: Path):
    write_results(tmp_path, tasks={"videomme": (10, 10)}, stamp="20250101_000000")
    newer = write_results(tmp_path, tasks={"videomme": (10, 10)}, stamp="20250102_000000")
    assert find_results_file(tmp_path / "lmms_eval") == newer
    newer.write_text('{"results": {"vid', encoding="utf-8")
    check = check_run(tmp_path, ["videomme"])
    assert not check.done and "unreadable" in check.reason


def test_model_errors_are_counted_but_run_is_done(tmp_path: Path):
    summary = {"videomme": {"samples": 10, "errors": 2}, "x": {"samples": 5, "errors": 1}}
    write_results(tmp_path, tasks={"videomme": (10, 10)}, summary=summary)
    check = check_run(tmp_path, ["videomme"])
    assert check.done and check.model_errors == 3


@pytest.mark.parametrize("entry", [None, {"alias": "videomme"}])
def test_task_without_metrics(tmp_path: Path, entry):
    path = write_results(tmp_path, tasks={"videomme": (10, 10)})
    data = json.loads(path.read_text())
    if entry is None:
        del data["results"]["videomme"]
    else:
        data["results"]["videomme"] = entry
    path.write_text(json.dumps(data))
    assert not check_run(tmp_path, ["videomme"]).done
