"""The sweep loop: one lmms-eval subprocess per run, resumable and loss-free.

Layout of a sweep folder (``--output``, default ``runs/<name>``, or ``runs/<name>-limit<N>`` with a limit so
that quick runs never mix with full ones)::

    runs/<name>/sweep.json             the expanded plan (all runs of the study, their model_args)
    runs/<name>/config.yaml            a copy of the study file
    runs/<name>/<run>/run.json         the run manifest (written atomically)
    runs/<name>/<run>/log.txt          lmms-eval's stdout+stderr
    runs/<name>/<run>/lmms_eval/...    lmms-eval's output (results, samples, holitom_summary.json)
    runs/<name>/<run>/attempt-N/       an earlier unfinished or failed attempt, moved aside

lmms-eval exits 0 even when an evaluation fails (unless ``--verbosity DEBUG``, which the sweep does not force:
add it to ``lmms_eval_args`` if wanted), so the exit status is only recorded; success is decided by the
results themselves, and a failed run's manifest quotes the last error line of its log.

Resume rules: a run whose results validate (`lmms_holitom.sweep.results.check_run`) is skipped, and its
manifest is repaired if the sweep died between lmms-eval finishing and the manifest being written. Any
other run folder content (a crash, a failure, results of an edited setting) is moved aside into
``attempt-N/`` — never deleted — and the run starts afresh. Ctrl-C or SIGTERM stops the running
lmms-eval and the sweep; the run is then what its results say, in ``run.json``, ``--list`` and a rerun alike:
``interrupted`` (rerun) unless lmms-eval had already written complete results, which make it ``done`` (flagged
as interrupted after them). Everything finished stays finished.

A run whose only missing results are remote-scored tasks with saved answers (``egoschema`` offline,
`lmms_holitom.sweep.scoring`) is ``pending-scoring``: finished, not failed, never rerun. Every run a sweep
will touch is locked first (`lmms_holitom.sweep.lock`), so a second sweep on the same folder refuses. A
run folder that cannot be written (read-only, full disk) marks the run ``failed`` with the reason when the
manifest can still be written, and stops the sweep (`SweepIOError`).

Over 300 lines on purpose: the run loop and its resume, lock, interrupt and manifest states are one state machine.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import statistics
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lmms_holitom.sweep.command import ORIGINAL_ENV_VARS, RESULTS_SUBDIR, Invocation, build_invocation, child_env
from lmms_holitom.sweep.config import RunSpec, SweepConfig
from lmms_holitom.sweep.lock import hold_runs
from lmms_holitom.sweep.manifest import (
    MANIFEST,
    git_state,
    now_iso,
    read_json,
    versions,
    write_json_atomic,
    write_text_atomic,
)
from lmms_holitom.sweep.process import (
    SweepInterrupted,
    format_duration,
    last_error_line,
    run_logged,
    sigterm_as_interrupt,
)
from lmms_holitom.sweep.results import RunCheck, check_run

__all__ = [
    "RunOutcome",
    "SweepIOError",
    "SweepInterrupted",
    "SweepOutcome",
    "SweepRunner",
    "default_output_dir",
    "format_duration",
    "select_runs",
]

LOG_FILE = "log.txt"
PLAN_FILE = "sweep.json"
_ATTEMPT_RE = re.compile(r"^attempt-(\d+)$")


class SweepIOError(OSError):
    """A run folder could not be written; the message names the run and the OS error."""


@dataclass
class RunOutcome:
    name: str
    status: str  # done | skipped (already finished) | pending-scoring | failed | interrupted
    reason: str | None = None
    duration_s: float | None = None
    flags: list[str] = field(default_factory=list)
    log: Path | None = None


@dataclass
class SweepOutcome:
    outcomes: list[RunOutcome] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "interrupted")]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


def default_output_dir(cfg: SweepConfig, limit: int | None = None) -> Path:
    limit = cfg.limit if limit is None else limit
    return Path("runs") / (cfg.name if limit is None else f"{cfg.name}-limit{limit}")


def select_runs(runs: Iterable[RunSpec], patterns: list[str] | None) -> tuple[list[RunSpec], list[str]]:
    """Runs whose name matches any glob of ``patterns`` (all when none), and the patterns matching nothing."""
    runs = list(runs)
    if not patterns:
        return runs, []
    chosen = [r for r in runs if any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(r.name, p) for r in runs)]
    return chosen, unmatched


class SweepRunner:
    """Runs (or describes) the runs of a study into ``output_dir``."""

    def __init__(
        self,
        cfg: SweepConfig,
        output_dir: Path,
        *,
        limit: int | None = None,
        groups: Mapping[str, list[str]] | None = None,
        fail_fast: bool = False,
        verbose: bool = False,
        out: TextIO | None = None,
        heartbeat_s: float = 300.0,
        kill_grace_s: float = 20.0,
    ):
        self.cfg = cfg
        self.output_dir = Path(output_dir).absolute()
        self.limit = cfg.limit if limit is None else limit
        self.groups = dict(groups or {})
        self.fail_fast = fail_fast
        self.verbose = verbose
        self.out = out or sys.stdout
        self.heartbeat_s = heartbeat_s
        self.kill_grace_s = kill_grace_s

    # ------------------------------------------------------------------ helpers
    def run_dir(self, run: RunSpec) -> Path:
        return self.output_dir / run.name

    def invocation(self, run: RunSpec) -> Invocation:
        return build_invocation(self.cfg, run, self.run_dir(run), self.limit)

    def check(self, run: RunSpec) -> RunCheck:
        return check_run(self.run_dir(run), self.cfg.tasks, limit=self.limit, model_args=run.model_args,
                         groups=self.groups, results_subdir=RESULTS_SUBDIR, model=self.cfg.cli_model)

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # ------------------------------------------------------------------ dry run
    def describe(self, runs: list[RunSpec]) -> str:
        """The commands a sweep would run (shell-quoted, with their environment), and each run's state."""
        lines = [f"# sweep {self.cfg.name}: {len(runs)} run(s) -> {self.output_dir}",
                 f"# each run's environment: the current one without {', '.join(ORIGINAL_ENV_VARS)}, "
                 "plus the variables shown before its command"]
        for i, run in enumerate(runs, 1):
            check = self.check(run)
            state = f"{check.state} (would be skipped)" if check.finished else "pending"
            lines.append(f"# [{i}/{len(runs)}] {run.name}: {state}")
            lines.append(self.invocation(run).shell())
        return "\n".join(lines)

    # ------------------------------------------------------------------ manifests
    def _base_manifest(self, run: RunSpec, inv: Invocation) -> dict[str, Any]:
        return {
            "schema": 1,
            "name": run.name,
            "sweep": self.cfg.name,
            "config_file": str(self.cfg.path) if self.cfg.path else None,
            "run": {
                "method": run.method,
                "params": dict(run.params),
                "model": dict(run.model),
                "overrides": dict(run.overrides),
                "holitom": run.holitom.to_dict(),
                "source": run.source,
            },
            "model_args": run.model_args,
            "backend": self.cfg.backend,
            "lmms_eval_model": self.cfg.cli_model,
            "tasks": list(self.cfg.tasks),
            "limit": self.limit,
            "command": list(inv.argv),
            "command_line": inv.shell(),
            "env": dict(inv.env),
            "env_removed": child_env(inv)[1],
            "cwd": os.getcwd(),
            "launcher": self.cfg.launcher.type,
            "versions": versions(),
            "git": git_state(),
            "host": os.uname().nodename if hasattr(os, "uname") else None,
        }

    def _finish_fields(self, check: RunCheck, run_dir: Path) -> dict[str, Any]:
        flags = []
        if check.model_errors:
            flags.append(f"model reported {check.model_errors} error(s) in holitom_summary.json")
        if check.stats_problem:
            flags.append(check.stats_problem)
        return {
            "results_file": str(check.results_file.relative_to(run_dir)) if check.results_file else None,
            "expected_tasks": check.leaves,
            "n_samples": check.n_samples,
            "model_errors": check.model_errors,
            "pending_scoring": check.pending_scoring,
            "flags": flags,
        }

    def _repair_done_manifest(self, run: RunSpec, check: RunCheck) -> None:
        run_dir = self.run_dir(run)
        manifest = read_json(run_dir / MANIFEST)
        if manifest and manifest.get("status") == check.state and manifest.get("model_args") == run.model_args:
            return
        fresh = self._base_manifest(run, self.invocation(run))
        merged = {**fresh, **(manifest or {})}
        merged.update(status=check.state, reason=None if check.done else check.reason, recovered=True,
                      recovered_at=now_iso(), model_args=run.model_args, **self._finish_fields(check, run_dir))
        write_json_atomic(run_dir / MANIFEST, merged)

    def _write_plan(self) -> None:
        plan = {
            "name": self.cfg.name,
            "config_file": str(self.cfg.path) if self.cfg.path else None,
            "tasks": list(self.cfg.tasks),
            "limit": self.limit,
            "runs": [{"name": r.name, "method": r.method, "model_args": r.model_args} for r in self.cfg.runs],
            "written_at": now_iso(),
        }
        write_json_atomic(self.output_dir / PLAN_FILE, plan)
        if self.cfg.path and self.cfg.path.is_file():
            write_text_atomic(self.output_dir / "config.yaml", self.cfg.path.read_text(encoding="utf-8"))

    # ------------------------------------------------------------------ attempts
    @staticmethod
    def move_aside(run_dir: Path) -> str | None:
        """Move everything of an unfinished attempt into ``attempt-N/``; return its name (None if empty)."""
        if not run_dir.is_dir():
            return None
        entries = [p for p in run_dir.iterdir() if not _ATTEMPT_RE.match(p.name)]
        if not entries:
            return None
        numbers = [int(m.group(1)) for p in run_dir.iterdir() if (m := _ATTEMPT_RE.match(p.name))]
        dest = run_dir / f"attempt-{max(numbers, default=0) + 1}"
        dest.mkdir()
        for p in entries:
            os.replace(p, dest / p.name)
        return dest.name

    # ------------------------------------------------------------------ the loop
    def _known_durations(self, runs: list[RunSpec]) -> list[float]:
        out = []
        for run in runs:
            m = read_json(self.run_dir(run) / MANIFEST)
            if m and m.get("status") == "done" and isinstance(m.get("duration_s"), (int, float)):
                out.append(float(m["duration_s"]))
        return out

    def run(self, runs: list[RunSpec]) -> SweepOutcome:
        """Run ``runs`` in order. Raises `SweepLocked` (another sweep holds one of them) or OSError (the
        output folder cannot be created or written) before any run starts."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with hold_runs(self.output_dir, [r.name for r in runs]):
            self._write_plan()
            return self._loop(runs)

    def _loop(self, runs: list[RunSpec]) -> SweepOutcome:
        outcome = SweepOutcome()
        pending = {r.name for r in runs if not self.check(r).finished}
        durations = self._known_durations(runs)
        total = len(runs)
        self._say(f"sweep {self.cfg.name}: {total} run(s), {total - len(pending)} already done, "
                  f"{len(pending)} to run -> {self.output_dir}")
        with sigterm_as_interrupt():
            for i, run in enumerate(runs, 1):
                tag = f"[{i}/{total}] {run.name}"
                check = self.check(run)
                if check.finished:
                    self._repair_done_manifest(run, check)
                    pending.discard(run.name)
                    outcome.outcomes.append(RunOutcome(run.name, "skipped", check.reason,
                                                       flags=self.check_flags(check)))
                    self._say(f"{tag}: {check.state}, skipped")
                    continue
                eta = statistics.fmean(durations) * len(pending) if durations else None
                self._say(f"{tag}: running · {len(pending)} left · ETA {format_duration(eta)}")
                try:
                    result = self._execute(run, check, tag)
                except SweepInterrupted as e:
                    outcome.interrupted = True
                    after = self.check(run)
                    if after.finished:
                        outcome.outcomes.append(RunOutcome(run.name, after.state, after.reason,
                                                           flags=[f"interrupted ({e}) after complete results"]))
                        self._say(f"{tag}: {after.state}: interrupted ({e}) after lmms-eval had written complete "
                                  "results; stopping, rerun the same command to resume")
                    else:
                        outcome.outcomes.append(RunOutcome(run.name, "interrupted", str(e)))
                        self._say(f"{tag}: interrupted ({e}); rerun the same command to resume")
                    break
                except SweepIOError as e:
                    outcome.outcomes.append(RunOutcome(run.name, "failed", str(e)))
                    self._say(f"{tag}: FAILED: {e}; stopping (the output folder cannot be written)")
                    break
                pending.discard(run.name)
                outcome.outcomes.append(result)
                self._report_result(tag, result, durations)
                if result.status == "failed" and self.fail_fast:
                    self._say("stopping at the first failure (--fail-fast)")
                    break
        self._say(self.summary(outcome, total))
        return outcome

    def _report_result(self, tag: str, result: RunOutcome, durations: list[float]) -> None:
        if result.status == "failed":
            self._say(f"{tag}: FAILED after {format_duration(result.duration_s)}: {result.reason} "
                      f"(log: {result.log})")
            return
        durations.append(result.duration_s or 0.0)
        flag = f" [flagged: {'; '.join(result.flags)}]" if result.flags else ""
        state = "done" if result.status == "done" else f"{result.status} ({result.reason})"
        self._say(f"{tag}: {state} in {format_duration(result.duration_s)}{flag}")

    @staticmethod
    def check_flags(check: RunCheck) -> list[str]:
        """What makes a finished run's results suspect, from its results: model errors, unusable statistics."""
        flags = [f"model reported {check.model_errors} error(s)"] if check.model_errors else []
        return flags + ([check.stats_problem] if check.stats_problem else [])

    def summary(self, outcome: SweepOutcome, total: int) -> str:
        counts: dict[str, int] = {}
        for o in outcome.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        waiting = [o for o in outcome.outcomes if o.status == "pending-scoring"
                   or (o.status == "skipped" and o.reason)]
        done = counts.get("done", 0) + counts.get("skipped", 0) - sum(o.status == "skipped" for o in waiting)
        parts = [f"{done}/{total} done ({counts.get('skipped', 0)} were already done)"]
        if waiting:
            parts.append(f"{len(waiting)} pending-scoring")
        if outcome.failed:
            parts.append(f"{len(outcome.failed)} failed/interrupted")
        flagged = [o for o in outcome.outcomes if o.flags]
        if flagged:
            parts.append(f"{len(flagged)} flagged")
        not_reached = total - len(outcome.outcomes)
        if not_reached:
            parts.append(f"{not_reached} not reached")
        lines = [f"sweep {self.cfg.name}: " + ", ".join(parts)]
        for o in outcome.failed:
            lines.append(f"  {o.status.upper()} {o.name}: {o.reason}" + (f" (log: {o.log})" if o.log else ""))
        for o in waiting:
            lines.append(f"  PENDING-SCORING {o.name}: {o.reason}")
        for o in flagged:
            lines.append(f"  FLAGGED {o.name}: {'; '.join(o.flags)}")
        lines.append(f"report: holitom report {self.output_dir}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ one run
    def _record_interrupt(self, run: RunSpec, manifest: dict[str, Any], why: str, start: float) -> None:
        """The manifest of an interrupted attempt says what its results say (`check_run`, the one judge that
        ``--list`` and a rerun use): ``interrupted``, or the finished state when lmms-eval had written them all."""
        run_dir = self.run_dir(run)
        check = self.check(run)
        manifest.update(ended_at=now_iso(), duration_s=round(time.monotonic() - start, 3), interrupted=why)
        if check.finished:
            fields = self._finish_fields(check, run_dir)
            fields["flags"].append(f"the sweep was interrupted ({why}) after lmms-eval had written complete results")
            manifest.update(status=check.state, reason=None if check.done else check.reason, **fields)
        else:
            manifest.update(status="interrupted", reason=why)
        write_json_atomic(run_dir / MANIFEST, manifest)

    def _execute(self, run: RunSpec, previous: RunCheck, tag: str) -> RunOutcome:
        """One attempt of ``run``; an OSError writing its folder marks it failed and raises `SweepIOError`."""
        run_dir = self.run_dir(run)
        manifest: dict[str, Any] = {}
        start = time.monotonic()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            moved = self.move_aside(run_dir)
            attempts = sorted((p.name for p in run_dir.iterdir() if _ATTEMPT_RE.match(p.name)),
                              key=lambda n: int(n.split("-")[1]))
            inv = self.invocation(run)
            manifest = self._base_manifest(run, inv)
            manifest.update(status="running", reason=None, attempt=len(attempts) + 1,
                            previous_attempts=attempts, previous_reason=previous.reason if moved else None,
                            started_at=now_iso())
            write_json_atomic(run_dir / MANIFEST, manifest)
            return self._attempt(run, inv, manifest, tag, start)
        except OSError as e:
            reason = f"cannot write the run folder {run_dir}: {e}"
            if manifest:
                manifest.update(status="failed", reason=reason, ended_at=now_iso(),
                                duration_s=round(time.monotonic() - start, 3))
                with contextlib.suppress(OSError):
                    write_json_atomic(run_dir / MANIFEST, manifest)
            raise SweepIOError(reason) from e

    def _attempt(self, run: RunSpec, inv: Invocation, manifest: dict[str, Any], tag: str, start: float) \
            -> RunOutcome:
        run_dir = self.run_dir(run)
        log = run_dir / LOG_FILE
        try:
            code = run_logged(inv, log, say=lambda text: self._say(f"{tag}: {text}"),
                              heartbeat_s=self.heartbeat_s, kill_grace_s=self.kill_grace_s,
                              echo=self.out if self.verbose else None)
        except SweepInterrupted as e:
            self._record_interrupt(run, manifest, str(e), start)
            raise
        duration = time.monotonic() - start
        check = self.check(run)
        fields = self._finish_fields(check, run_dir)
        reason = check.reason
        if not check.finished:
            details = [f"exit status {code}"] if code else []
            details.append(reason or "results incomplete")
            last = last_error_line(log)
            if last:
                details.append(f"last error in log: {last}")
            reason = "; ".join(details)
        elif code:
            fields["flags"].append(f"lmms-eval exited with status {code} after writing complete results")
        status = "failed" if not check.finished else check.state
        manifest.update(status=status, reason=None if check.done else reason, exit_code=code,
                        ended_at=now_iso(), duration_s=round(duration, 3), **fields)
        write_json_atomic(run_dir / MANIFEST, manifest)
        return RunOutcome(run.name, status, None if check.done else reason, duration, fields["flags"], log)
