"""Where lmms-eval put a run's results, and whether they are complete.

lmms-eval 0.7.3 writes ``<output_path>/<model subdir>/<date>_results.json`` (model subdir: the last two
parts of ``pretrained`` joined by ``__``) and exits 0 even when the evaluation failed, so a run counts as
**done** only when its newest ``*_results.json``:

* parses, and names every expected task in ``results`` (a group such as ``mvbench``: each subtask);
* has ``n-samples[task].effective`` equal to ``min(limit, original)`` with a limit, else to ``original``;
* was produced with the run's model_args (``config.model_args``), so an edited study reruns the run.

The plugin's ``holitom_summary.json`` (beside the results file) is read for its error count: a run with
model errors stays done but is flagged. A remote-scored task (``egoschema``, `lmms_holitom.sweep.scoring`)
whose answers were saved but never scored makes the run ``pending-scoring`` instead of failed.

`check_run` is the one validation: the sweep calls it with the study's expectations, and ``holitom report``
through `check_recorded_run` with the expectations recorded in the run's manifest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_holitom.sweep.scoring import REMOTE_SCORED, answers_file

__all__ = ["RunCheck", "check_recorded_run", "check_run", "find_results_file", "leaf_tasks", "load_summary",
           "parse_model_args", "summary_errors"]

SUMMARY_FILE = "holitom_summary.json"


@dataclass
class RunCheck:
    done: bool
    reason: str | None = None
    results_file: Path | None = None
    results: dict[str, Any] | None = None
    leaves: dict[str, list[str]] = field(default_factory=dict)
    n_samples: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    model_errors: int | None = None
    pending_scoring: dict[str, str] = field(default_factory=dict)  # remote-scored task -> its answers file

    @property
    def state(self) -> str:
        """``done``, ``pending-scoring`` (only remote scoring is missing) or ``incomplete``."""
        if self.done:
            return "done"
        return "pending-scoring" if self.pending_scoring else "incomplete"

    @property
    def finished(self) -> bool:
        """Nothing left to run: done, or waiting for a remote score (rerunning would not score it either)."""
        return self.state != "incomplete"


def find_results_file(lmms_dir: Path) -> Path | None:
    """The newest ``*_results.json`` below ``lmms_dir`` (names start with a sortable date)."""
    if not lmms_dir.is_dir():
        return None
    files = sorted(lmms_dir.rglob("*_results.json"), key=lambda p: (p.name, p.stat().st_mtime))
    return files[-1] if files else None


def parse_model_args(value: Any) -> dict[str, str]:
    """``a=1,b=x`` (or a dict) -> ``{"a": "1", "b": "x"}`` for comparison."""
    if isinstance(value, Mapping):
        return {str(k): _norm(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for part in str(value or "").split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _norm(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def leaf_tasks(task: str, results: Mapping[str, Any], groups: Mapping[str, list[str]] | None = None) -> list[str]:
    """The leaf tasks of ``task``: from lmms-eval's task index when known, else the file's ``group_subtasks``."""
    if groups and task in groups:
        return list(groups[task])
    subtasks = results.get("group_subtasks", {}) or {}

    def walk(name: str, seen: frozenset[str]) -> list[str]:
        members = subtasks.get(name) or []
        if not members or name in seen:
            return [name]
        return [leaf for m in members for leaf in walk(m, seen | {name})]

    return walk(task, frozenset())


def load_summary(results_file: Path) -> dict[str, Any] | None:
    path = results_file.parent / SUMMARY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def summary_errors(summary: Mapping[str, Any] | None) -> int | None:
    if not summary:
        return None
    total = 0
    for entry in summary.values():
        if isinstance(entry, Mapping) and isinstance(entry.get("errors"), (int, float)):
            total += int(entry["errors"])
    return total


def expected_effective(original: int, limit: int | float | None) -> int:
    """lmms-eval's own rule: ``min(limit or original, original)`` (fractional limits: share of original)."""
    if not limit:
        return original
    if limit < 1:
        return int(original * limit)
    return min(int(limit), original)


def check_run(
    run_dir: Path,
    tasks: tuple[str, ...] | list[str],
    *,
    limit: int | None = None,
    model_args: str | None = None,
    groups: Mapping[str, list[str]] | None = None,
    results_subdir: str = "lmms_eval",
) -> RunCheck:
    """Is this run done? ``RunCheck.reason`` says why not."""
    lmms_dir = Path(run_dir) / results_subdir
    path = find_results_file(lmms_dir)
    if path is None:
        return _no_results(lmms_dir, tasks)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        return RunCheck(False, f"results file {path} is unreadable: {e}", path)
    results = data.get("results") or {}
    n_samples = data.get("n-samples") or {}
    problems: list[str] = []
    pending: dict[str, str] = {}
    leaves = {t: leaf_tasks(t, data, groups) for t in tasks}
    for task, members in leaves.items():
        for leaf in members:
            label = leaf if leaf == task else f"{leaf} (of {task})"
            entry = results.get(leaf)
            if not isinstance(entry, Mapping) or not any("," in k for k in entry):
                if (answers := answers_file(lmms_dir, leaf)) is not None:
                    pending[leaf] = str(answers.relative_to(run_dir))
                    continue
                problems.append(f"task {label} has no metrics in results")
                continue
            counts = n_samples.get(leaf)
            if not isinstance(counts, Mapping) or "original" not in counts or "effective" not in counts:
                problems.append(f"task {label} has no n-samples entry")
                continue
            original, effective = int(counts["original"]), float(counts["effective"])
            want = expected_effective(original, limit)
            if effective != want:
                if limit:
                    problems.append(f"task {label}: {effective:g} samples evaluated, expected {want} "
                                    f"(limit {limit}, {original} in the task)")
                else:
                    problems.append(f"task {label}: {effective:g} of {original} samples evaluated "
                                    "(a run without --limit must evaluate all)")
    recorded = (data.get("config") or {}).get("model_args")
    if model_args is not None and recorded is not None:
        want_args, got_args = parse_model_args(model_args), parse_model_args(recorded)
        if want_args != got_args:
            keys = sorted(set(want_args) | set(got_args))
            diff = [f"{k}: {got_args.get(k, '-')} (expected {want_args.get(k, '-')})"
                    for k in keys if want_args.get(k) != got_args.get(k)]
            problems.append("results were produced with other model_args: " + "; ".join(diff))
    summary = load_summary(path)
    if pending and not problems:
        problems.append(_pending_reason(pending))
    else:
        pending = {}
    check = RunCheck(
        done=not problems,
        reason="; ".join(problems) or None,
        results_file=path,
        results=data,
        leaves=leaves,
        n_samples={leaf: n_samples.get(leaf) for ms in leaves.values() for leaf in ms},
        summary=summary,
        model_errors=summary_errors(summary),
        pending_scoring=pending,
    )
    return check


def _pending_reason(pending: Mapping[str, str]) -> str:
    return ("answers saved, remote scoring pending (no network?): "
            + ", ".join(f"{t} -> {f}" for t, f in pending.items()))


def _no_results(lmms_dir: Path, tasks: tuple[str, ...] | list[str]) -> RunCheck:
    """No results file: pending-scoring when every task is remote-scored and saved its answers."""
    reason = f"no lmms-eval results file (*_results.json) under {lmms_dir}"
    saved = {t: answers_file(lmms_dir, t) for t in tasks if t in REMOTE_SCORED}
    saved = {t: f for t, f in saved.items() if f is not None}
    if not saved:
        return RunCheck(False, reason)
    files = {t: str(f.relative_to(lmms_dir.parent)) for t, f in saved.items()}
    if len(saved) == len(tasks):
        return RunCheck(False, _pending_reason(files), pending_scoring=files)
    lost = ", ".join(t for t in tasks if t not in saved)
    return RunCheck(False, f"{reason}: the remote scoring of {', '.join(saved)} failed (answers saved in "
                           f"{', '.join(files.values())}), which stops lmms-eval from writing the results of "
                           f"{lost} too")


def check_recorded_run(run_dir: Path, manifest: Mapping[str, Any] | None, results_subdir: str = "lmms_eval") \
        -> RunCheck:
    """`check_run` with the expectations a sweep recorded in the run's manifest (tasks, limit, model_args,
    leaf tasks); without a manifest, the tasks named in the results file itself."""
    manifest = manifest or {}
    tasks = manifest.get("tasks")
    groups = manifest.get("expected_tasks") if isinstance(manifest.get("expected_tasks"), Mapping) else None
    if not isinstance(tasks, list) or not tasks:
        path = find_results_file(Path(run_dir) / results_subdir)
        tasks = _tasks_in(path) if path else []
    return check_run(run_dir, tasks, limit=manifest.get("limit"), model_args=manifest.get("model_args"),
                     groups=groups, results_subdir=results_subdir)


def _tasks_in(path: Path) -> list[str]:
    """The top-level tasks of a results file (those not listed as another group's subtask)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or not isinstance(data.get("results"), Mapping):
        return []
    children = {m for ms in (data.get("group_subtasks") or {}).values() for m in (ms or [])}
    return [t for t in data["results"] if t not in children]
