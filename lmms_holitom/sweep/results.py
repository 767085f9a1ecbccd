"""Where lmms-eval put a run's results, and whether they are complete.

lmms-eval 0.7.3 writes ``<output_path>/<model subdir>/<date>_results.json`` (model subdir: the last two
parts of ``pretrained`` joined by ``__``) and exits 0 even when the evaluation failed, so a run counts as
**done** only when its newest ``*_results.json``:

* parses, and names every expected task in ``results`` (a group such as ``mvbench``: each subtask);
* has ``n-samples[task].effective`` equal to ``min(limit, original)`` with a limit, else to ``original``;
* was produced with the run's model_args (``config.model_args``) and lmms-eval model (``config.model``: a study
  that changes ``backend`` or ``lmms_eval_model`` reruns its runs);
* has valid scores (`check_metrics`): every metric of every leaf task is a finite number (not null, a string,
  a bool, NaN or inf), and the benchmark score each known task must report (`SCORE_METRICS`) is present and
  within its scale. A run with an impossible score is not done (it is rerun), and its reason names the value.

Scales. lmms-eval gives no metric's range, so the range is known only for the tasks whose aggregation we have
read (lmms-eval 0.7.3): ``mvbench_*`` ``mvbench_accuracy`` and ``videomme`` ``videomme_perception_score`` are
percentages in [0, 100]; ``egoschema``/``egoschema_subset`` ``score``, ``longvideobench_val_v`` ``lvb_acc`` and
the smoke tasks' ``accuracy`` (a mean of 0/1) are fractions in [0, 1]. Any other task's metrics must only be
finite numbers: lmms-eval uses 0–1, 0–100, 0–5 and unbounded scales, so the report shows them as reported.

The plugin's statistics of the same evaluation (``<stamp>_holitom_summary.json`` beside
``<stamp>_results.json``, `lmms_holitom.integrations.lmms_eval.records.stats_files`) are read for the video error
count (`load_summary`): a run with video errors stays done but is flagged; a run whose summary is missing,
unreadable, incomplete (``_problems``), lacks a scored task or holds a count that is not a count (a string,
NaN, a negative number) stays done but is flagged with that reason, its video errors unknown (not comparable).
The unstamped ``holitom_summary.json`` of earlier versions is not read: any later evaluation in the folder
replaced it, so it cannot be paired with one results file. A remote-scored task (``egoschema``,
`lmms_holitom.sweep.scoring`) whose answers were saved but never scored makes the run ``pending-scoring``
instead of failed.

`check_run` is the one validation: the sweep calls it with the study's expectations, and ``holitom report``
through `check_recorded_run` with the expectations recorded in the run's manifest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_holitom.integrations.lmms_eval.records import PROBLEMS_KEY, stats_files
from lmms_holitom.sweep.scoring import REMOTE_SCORED, answers_file

__all__ = ["SCORE_METRICS", "RunCheck", "SummaryCheck", "check_metrics", "check_recorded_run", "check_run",
           "find_results_file", "leaf_tasks", "load_summary", "parse_model_args", "score_metric"]

#: task name (or ``prefix*``) -> (the score metric lmms-eval 0.7.3 reports for it, its scale: 1 or 100)
SCORE_METRICS: dict[str, tuple[str, float]] = {
    "mvbench_*": ("mvbench_accuracy", 100.0),
    "videomme": ("videomme_perception_score", 100.0),
    "egoschema": ("score", 1.0),
    "egoschema_subset": ("score", 1.0),
    "longvideobench_val_v": ("lvb_acc", 1.0),
    "holitom_smoke*": ("accuracy", 1.0),
}


@dataclass
class RunCheck:
    done: bool
    reason: str | None = None
    results_file: Path | None = None
    results: dict[str, Any] | None = None
    leaves: dict[str, list[str]] = field(default_factory=dict)
    n_samples: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    model_errors: int | None = None  # video errors the plugin counted (None: unknown, see stats_problem)
    stats_problem: str | None = None  # why the video errors are unknown (no/corrupt/incomplete summary)
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


def score_metric(task: str) -> tuple[str, float] | None:
    """(metric, scale) of a task in `SCORE_METRICS`, None when its range is not known."""
    for key, value in SCORE_METRICS.items():
        if task == key or (key.endswith("*") and task.startswith(key[:-1])):
            return value
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_metrics(label: str, leaf: str, entry: Mapping[str, Any]) -> list[str]:
    """The problems of one leaf task's results entry (empty: every metric valid)."""
    metrics = {k: v for k, v in entry.items() if "," in k and "_stderr" not in k.split(",")[0]}
    if not metrics:
        return [f"task {label} has no metrics in results"]
    problems = [f"task {label}: metric {k} = {v!r} is not a finite number" for k, v in metrics.items()
                if not _is_number(v)]
    known = score_metric(leaf)
    if known is not None and not problems:
        name, scale = known
        values = [v for k, v in metrics.items() if k.split(",")[0] == name]
        if not values:
            problems.append(f"task {label}: no {name} in results")
        problems += [f"task {label}: {name} = {v!r} is outside [0, {scale:g}]" for v in values if not 0 <= v <= scale]
    return problems


@dataclass(frozen=True)
class SummaryCheck:
    """The plugin's summary of one evaluation, validated: ``summary`` (task -> entry) when usable, else None
    and ``problem`` saying why its video errors are unknown."""

    path: Path
    summary: dict[str, Any] | None
    problem: str | None = None

    @property
    def errors(self) -> int | None:
        """The video errors over every task (None: unknown)."""
        if self.summary is None:
            return None
        return sum(int(entry["errors"]) for entry in self.summary.values())

    def lacking(self, tasks: list[str]) -> SummaryCheck:
        """This check, with a problem when some of ``tasks`` have no entry."""
        missing = [t for t in tasks if self.summary is not None and t not in self.summary]
        if not missing:
            return self
        return SummaryCheck(self.path, None, f"statistics {self.path.name} lack task(s) {', '.join(missing)}: "
                                             "their video errors are unknown")


def _is_count(value: Any) -> bool:
    return _is_number(value) and value >= 0 and float(value).is_integer()


def load_summary(results_file: Path) -> SummaryCheck:
    """The summary of the evaluation whose results file is ``results_file`` (``<stamp>_holitom_summary.json``)."""
    path = stats_files(results_file)[1]
    if not path.exists():
        return SummaryCheck(path, None, f"no statistics {path.name} beside {results_file.name}: video errors unknown")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return SummaryCheck(path, None, f"statistics {path.name} unreadable ({e}): video errors unknown")
    if not isinstance(data, dict):
        return SummaryCheck(path, None, f"statistics {path.name} is not a JSON object: video errors unknown")
    if data.get(PROBLEMS_KEY):
        return SummaryCheck(path, None, f"statistics {path.name} incomplete ({'; '.join(map(str, data[PROBLEMS_KEY]))})"
                                        ": video errors unknown")
    for task, entry in data.items():
        if not isinstance(entry, Mapping):
            return SummaryCheck(path, None, f"statistics {path.name}: task {task!r} is not an object")
        for key in ("samples", "errors"):
            if not _is_count(entry.get(key)):
                return SummaryCheck(path, None, f"statistics {path.name}: task {task!r} has {key} = "
                                                f"{entry.get(key)!r}, not a count: video errors unknown")
    return SummaryCheck(path, data)


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
    model: str | None = None,
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
    results = data.get("results") if isinstance(data.get("results"), Mapping) else {}
    n_samples = data.get("n-samples") if isinstance(data.get("n-samples"), Mapping) else {}
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
            if bad := check_metrics(label, leaf, entry):
                problems += bad
                continue
            counts = n_samples.get(leaf)
            if not isinstance(counts, Mapping) or "original" not in counts or "effective" not in counts:
                problems.append(f"task {label} has no n-samples entry")
                continue
            if not (_is_count(counts["original"]) and _is_count(counts["effective"])):
                problems.append(f"task {label}: n-samples {dict(counts)} are not counts")
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
    recorded_model = (data.get("config") or {}).get("model")
    if model is not None and recorded_model is not None and recorded_model != model:
        problems.append(f"results were produced by --model {recorded_model} (expected {model})")
    summary = load_summary(path).lacking([leaf for ms in leaves.values() for leaf in ms if leaf not in pending])
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
        summary=summary.summary,
        model_errors=summary.errors,
        stats_problem=summary.problem,
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
                     groups=groups, results_subdir=results_subdir, model=manifest.get("lmms_eval_model"))


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
