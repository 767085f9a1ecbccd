"""``holitom sweep CONFIG``: run a YAML study through lmms-eval, resumably (logic: `lmms_holitom.sweep`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lmms_holitom.values import MAX_SAMPLES, float_flag, int_flag

if TYPE_CHECKING:
    from lmms_holitom.sweep.config import ConfigError, RunSpec, SweepConfig
    from lmms_holitom.sweep.runner import SweepRunner

#: the longest heartbeat period: a week
MAX_HEARTBEAT_S = 7 * 24 * 3600.0

HELP = "run a YAML study (grid of settings x benchmarks) through lmms-eval, resumably"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="study file, e.g. configs/ov7b_paper.yaml")
    p.add_argument("--output", "-o", default=None,
                   help="sweep folder (default runs/<name>, or runs/<name>-limit<N> with a limit)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only these runs (repeatable; shell globs such as 'holitom-*' work)")
    p.add_argument("--limit", type=int_flag(1, MAX_SAMPLES), default=None,
                   help="samples per task (overrides the study's limit)")
    p.add_argument("--dry-run", action="store_true", help="print the commands (and which runs are done)")
    p.add_argument("--list", action="store_true", help="list the runs and their state, run nothing")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    p.add_argument("--verbose", "-v", action="store_true", help="also stream lmms-eval's output to the console")
    p.add_argument("--no-task-check", action="store_true",
                   help="skip checking task names with lmms-eval's TaskManager before runs start (saves ~10 s; "
                   "--list, --dry-run, --emit and a sweep with nothing to run never check)")
    p.add_argument("--heartbeat", type=float_flag(0, MAX_HEARTBEAT_S, low_open=True), default=300.0, metavar="SECONDS",
                   help="print a 'still running' line this often (default %(default)s)")
    p.add_argument("--emit", choices=("slurm",), default=None,
                   help="write a Slurm array script (one element per run) instead of running")
    p.add_argument("--slurm-out", default=None, help="script path (default <output>/<name>.slurm)")
    p.add_argument("--slurm-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="#SBATCH option, e.g. partition=gpu, time=12:00:00 (repeatable)")
    p.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                   help="shell line run before each element, e.g. 'source .venv/bin/activate' (repeatable)")


def study_error(command: str, err: ConfigError) -> int:
    """Report a `ConfigError`: one problem is one line ``holitom <command>: error: <file>: <problem>`` (raised as a
    `UsageError` for ``holitom`` to print), several are listed one per line (exit 2)."""
    from lmms_holitom.commands import UsageError

    line = err.one_line()
    if line is not None:
        raise UsageError(line) from None
    print(f"holitom {command}: invalid study file\n{err}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from lmms_holitom.sweep.config import ConfigError, load_config
    from lmms_holitom.sweep.runner import SweepRunner, default_output_dir, select_runs

    try:
        cfg = load_config(args.config)  # task names are checked only where a run will start (`_run`)
    except ConfigError as e:
        return study_error("sweep", e)
    for notice in cfg.notices:  # said before any GPU time is spent
        print(f"holitom sweep: note: {notice}", file=sys.stderr)
    runs, unmatched = select_runs(cfg.runs, args.only)
    if unmatched:
        names = "\n  ".join(r.name for r in cfg.runs)
        print(f"holitom sweep: --only {', '.join(unmatched)} matches no run; runs:\n  {names}", file=sys.stderr)
        return 2
    limit = args.limit if args.limit is not None else cfg.limit
    output = Path(args.output) if args.output else default_output_dir(cfg, limit)
    runner = SweepRunner(cfg, output, limit=limit, fail_fast=args.fail_fast, verbose=args.verbose,
                         heartbeat_s=args.heartbeat)
    if args.emit == "slurm":
        return _emit_slurm(args, cfg, runner, runs)
    if args.list:
        for i, run in enumerate(runs, 1):
            print(f"[{i}/{len(runs)}] {run.name:<40} {_list_state(runner, run)}  {run.model_args}")
        return 0
    if args.dry_run:
        print(runner.describe(runs))
        return 0
    return _run(args, runner, runs)


def _list_state(runner: SweepRunner, run: RunSpec) -> str:
    """A run's state as a rerun would judge it (its results), with the last attempt's end when it did not finish."""
    from lmms_holitom.sweep.manifest import MANIFEST, read_json

    check = runner.check(run)
    manifest = read_json(runner.run_dir(run) / MANIFEST) or {}
    if check.finished:  # done, with what the report and run.json flag (model errors, statistics, an interruption)
        recorded = manifest.get("flags") if isinstance(manifest.get("flags"), list) else []
        flags = list(dict.fromkeys(runner.check_flags(check) + [f for f in recorded if isinstance(f, str)]))
        return check.state + (f" [flagged: {'; '.join(flags)}]" if flags else "")
    last = manifest.get("status")
    return f"pending (last attempt {last})" if last in ("interrupted", "failed", "running") else "pending"


def _emit_slurm(args: argparse.Namespace, cfg: SweepConfig, runner: SweepRunner, runs: list[RunSpec]) -> int:
    from lmms_holitom.sweep.manifest import write_text_atomic
    from lmms_holitom.sweep.slurm import check_slurm_setup, parse_slurm_opts, slurm_script

    try:
        options = parse_slurm_opts(args.slurm_opt)
        setup = check_slurm_setup(args.slurm_setup)
    except ValueError as e:
        print(f"holitom sweep: error: {e}", file=sys.stderr)
        return 2
    script = slurm_script(cfg, runs, config_path=Path(args.config), output_dir=runner.output_dir, limit=args.limit,
                          options=options, setup=setup)
    target = Path(args.slurm_out) if args.slurm_out else runner.output_dir / f"{cfg.name}.slurm"
    write_text_atomic(target, script)
    target.chmod(0o755)
    (runner.output_dir / "slurm").mkdir(parents=True, exist_ok=True)  # Slurm needs the log folder
    print(f"wrote {target} ({len(runs)} array element(s)); submit with: sbatch {target}")
    return 0


def _check_tasks(runner: SweepRunner, runs: list[RunSpec]) -> int | None:
    """lmms-eval's task check (~10 s: its TaskManager indexes every task YAML), only when a run will start; the
    task groups it reads then decide which results a run needs. An exit status when the names are wrong."""
    from lmms_holitom.sweep.config import ConfigError
    from lmms_holitom.sweep.tasks import check_tasks, expand_tasks

    cfg = runner.cfg
    if all(runner.check(run).finished for run in runs):
        return None  # nothing will run: nothing to check
    problems = check_tasks(cfg.tasks, cfg.include_path)
    if problems:
        return study_error("sweep", ConfigError(str(cfg.path or "<config>"), problems))
    runner.groups = expand_tasks(cfg.tasks, cfg.include_path)
    return None


def _run(args: argparse.Namespace, runner: SweepRunner, runs: list[RunSpec]) -> int:
    from lmms_holitom.commands import UsageError
    from lmms_holitom.sweep.lock import SweepLocked

    if not args.no_task_check and (code := _check_tasks(runner, runs)) is not None:
        return code
    try:
        outcome = runner.run(runs)
    except KeyboardInterrupt:
        print("holitom sweep: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except SweepLocked as e:
        print(f"holitom sweep: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # before any run started: the output folder itself
        raise UsageError(f"--output {runner.output_dir} cannot be written: {e.strerror or e}"
                         + (f" ({e.filename})" if e.filename else "")) from e
    return outcome.exit_code
