"""Every row of ``holitom report`` and every state of ``holitom sweep --list`` is a validated score or a named
reason: impossible metrics, missing or broken statistics and a broken ``run.json``, through the CLI entry points.

A study of two runs is swept once with the fake lmms-eval (tests/fake_lmms_eval.py: lmms-eval's file layout, a
``holitom_smoke`` ``accuracy`` of 0.5 and the plugin's ``<stamp>_holitom_summary.json``); each test breaks one
file of the ``holitom`` run and checks that the ``dense`` run is untouched.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import fake_study

from lmms_holitom.cli import main

RUNS = [{"name": "dense", "method": "dense"},
        {"name": "holitom", "method": "holitom", "retain_ratio": 0.15, "tau": 0.8}]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(study file, sweep output) after one sweep of both runs."""
    root = tmp_path_factory.mktemp("scores")
    study = fake_study(root, runs=RUNS, tasks=["holitom_smoke"])
    out = root / "out"
    assert main(["sweep", str(study), "--no-task-check", "-o", str(out)]) == 0
    return study, out


@pytest.fixture
def sweep(swept: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A fresh copy of the swept output for one test to break."""
    study, out = swept
    shutil.copytree(out, tmp_path / "out")
    return study, tmp_path / "out"


def _results_file(out: Path, run: str) -> Path:
    (path,) = (out / run / "lmms_eval").rglob("*_results.json")
    return path


def _summary_file(out: Path, run: str) -> Path:
    path = _results_file(out, run)
    return path.with_name(path.name.replace("_results.json", "_holitom_summary.json"))


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out + captured.err


def _listing(capsys, study: Path, out: Path) -> dict[str, str]:
    code, text = _cli(capsys, "sweep", str(study), "--list", "--no-task-check", "-o", str(out))
    assert code == 0, text
    # "[i/n] name   state  model_args": the state, flags included, up to the two spaces before the model args
    return {line.split()[1]: line.split(None, 2)[2].split("  ")[0]
            for line in text.splitlines() if line.startswith("[")}


def _report(capsys, out: Path) -> tuple[dict[str, dict[str, str]], str]:
    """(run -> {column: cell}, the whole Markdown)."""
    code, text = _cli(capsys, "report", str(out), "--no-plots")
    assert code == 0, text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = {}
    for line in table[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows, text


def test_clean_sweep_is_done_with_scores(sweep, capsys) -> None:
    study, out = sweep
    assert _listing(capsys, study, out) == {"dense": "done", "holitom": "done"}
    rows, _ = _report(capsys, out)
    for run in ("dense", "holitom"):
        assert (rows[run]["holitom_smoke"], rows[run]["video errors"], rows[run]["status"]) == ("0.5", "0", "done")


def _set_metric(value: Any) -> Callable[[dict], None]:
    def edit(entry: dict) -> None:
        entry["accuracy,none"] = value
    return edit


def _drop_metric(entry: dict) -> None:
    del entry["accuracy,none"]


BAD_METRICS = [
    pytest.param(_set_metric(float("nan")), "metric accuracy,none = nan is not a finite number", id="nan"),
    pytest.param(_set_metric(float("inf")), "metric accuracy,none = inf is not a finite number", id="inf"),
    pytest.param(_set_metric(None), "metric accuracy,none = None is not a finite number", id="null"),
    pytest.param(_set_metric("0.5"), "metric accuracy,none = '0.5' is not a finite number", id="string"),
    pytest.param(_set_metric(True), "metric accuracy,none = True is not a finite number", id="bool"),
    pytest.param(_drop_metric, "task holitom_smoke has no metrics in results", id="missing"),
    pytest.param(_set_metric(-3.0), "accuracy = -3.0 is outside [0, 1]", id="negative"),
    pytest.param(_set_metric(7.5), "accuracy = 7.5 is outside [0, 1]", id="above-scale"),
]


@pytest.mark.parametrize(("edit", "reason"), BAD_METRICS)
def test_impossible_score_is_never_done(sweep, capsys, edit, reason) -> None:
    study, out = sweep
    path = _results_file(out, "holitom")
    data = json.loads(path.read_text())
    edit(data["results"]["holitom_smoke"])
    path.write_text(json.dumps(data))  # NaN and Infinity as Python's json writes them (lmms-eval does the same)
    assert _listing(capsys, study, out) == {"dense": "done", "holitom": "pending"}  # a sweep reruns it
    rows, text = _report(capsys, out)
    assert rows["holitom"]["status"] == "invalid" and rows["holitom"]["holitom_smoke"] == ""
    assert f"holitom: invalid — task holitom_smoke: {reason}" in text or f"holitom: invalid — {reason}" in text
    assert (rows["dense"]["holitom_smoke"], rows["dense"]["status"]) == ("0.5", "done")


BAD_SUMMARIES = [
    pytest.param(None, "no statistics {name} beside {results}: video errors unknown", id="missing"),
    pytest.param('{"holitom_smoke": {"samples": 10, "err', "statistics {name} unreadable (", id="corrupt"),
    pytest.param({"holitom_smoke": {"samples": 10, "errors": "3"}},
                 "statistics {name}: task 'holitom_smoke' has errors = '3', not a count", id="string-count"),
    pytest.param({"holitom_smoke": {"samples": 10, "errors": float("nan")}},
                 "statistics {name}: task 'holitom_smoke' has errors = nan, not a count", id="nan-count"),
    pytest.param({"holitom_smoke": {"samples": 10, "errors": -1}},
                 "statistics {name}: task 'holitom_smoke' has errors = -1, not a count", id="negative-count"),
    pytest.param({"holitom_smoke": {"samples": 10, "errors": 0}, "_problems": ["x.rank1.jsonl: 2 corrupt line(s)"]},
                 "statistics {name} incomplete (x.rank1.jsonl: 2 corrupt line(s)): video errors unknown",
                 id="incomplete"),
    pytest.param({"other_task": {"samples": 10, "errors": 0}},
                 "statistics {name} lack task(s) holitom_smoke: their video errors are unknown", id="lacks-task"),
]


@pytest.mark.parametrize(("content", "reason"), BAD_SUMMARIES)
def test_unusable_statistics_flag_the_run_not_comparable(sweep, capsys, content, reason) -> None:
    study, out = sweep
    summary = _summary_file(out, "holitom")
    if content is None:
        summary.unlink()
    else:
        summary.write_text(content if isinstance(content, str) else json.dumps(content))
    reason = reason.format(name=summary.name, results=_results_file(out, "holitom").name)
    # the score itself is valid: done, flagged as in the report
    listing = _listing(capsys, study, out)
    assert listing["dense"] == "done" and listing["holitom"].startswith(f"done [flagged: {reason}")
    rows, text = _report(capsys, out)
    assert rows["holitom"]["status"] == "done ⚑ not comparable" and rows["holitom"]["holitom_smoke"] == "0.5"
    assert rows["holitom"]["video errors"] == ""  # unknown, not 0
    assert f"holitom: flagged — {reason}" in text
    assert (rows["dense"]["status"], rows["dense"]["video errors"]) == ("done", "0")


@pytest.mark.parametrize("content", ["{\"status\": \"done\", ", "[1, 2]"], ids=["truncated", "not-an-object"])
def test_unreadable_run_json_is_named(sweep, capsys, content) -> None:
    _study, out = sweep
    (out / "holitom" / "run.json").write_text(content)
    rows, text = _report(capsys, out)
    assert rows["holitom"]["status"] == "invalid" and rows["holitom"]["holitom_smoke"] == ""
    assert "holitom: invalid — run.json is unreadable (" in text
    assert "the run's expectations (tasks, limit, model_args) are unknown" in text
    assert rows["dense"]["status"] == "done"
