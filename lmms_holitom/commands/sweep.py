"""``holitom sweep CONFIG``: run a YAML study through lmms-eval, resumably (logic: `lmms_holitom.sweep`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmms_holitom.values import MAX_SAMPLES, float_flag, int_flag

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
                   help="skip checking task names with lmms-eval's TaskManager (saves ~10 s)")
    p.add_argument("--heartbeat", type=float_flag(0, MAX_HEARTBEAT_S, low_open=True), default=300.0, metavar="SECONDS",
                   help="print a 'still running' line this often (default %(default)s)")
    p.add_argument("--emit", choices=("slurm",), default=None,
                   help="write a Slurm array script (one element per run) instead of running")
    p.add_argument("--slurm-out", default=None, help="script path (default <output>/<name>.slurm)")
    p.add_argument("--slurm-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="#SBATCH option, e.g. partition=gpu, time=12:00:00 (repeatable)")
    p.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                   help="shell line run before each element, e.g. 'source .venv/bin/activate' (repeatable)")


def main(args: argparse.Namespace) -> int:
    from lmms_holitom.commands import UsageError
    from lmms_holitom.sweep.config import ConfigError, load_config
    from lmms_holitom.sweep.lock import SweepLocked
    from lmms_holitom.sweep.runner import SweepRunner, default_output_dir, select_runs

    check = None
    if not args.no_task_check:
        from lmms_holitom.sweep.tasks import check_tasks

        check = check_tasks
    try:
        cfg = load_config(args.config, check_tasks=check)
    except ConfigError as e:
        print(f"holitom sweep: invalid study file\n{e}", file=sys.stderr)
        return 2
    for notice in cfg.notices:  # said before any GPU time is spent
        print(f"holitom sweep: note: {notice}", file=sys.stderr)
    runs, unmatched = select_runs(cfg.runs, args.only)
    if unmatched:
        names = "\n  ".join(r.name for r in cfg.runs)
        print(f"holitom sweep: --only {', '.join(unmatched)} matches no run; runs:\n  {names}", file=sys.stderr)
        return 2
    limit = args.limit if args.limit is not None else cfg.limit
    output = Path(args.output) if args.output else default_output_dir(cfg, limit)
    groups = None
    if check is not None:
        from lmms_holitom.sweep.tasks import expand_tasks

        groups = expand_tasks(cfg.tasks, cfg.include_path)
    runner = SweepRunner(cfg, output, limit=limit, groups=groups, fail_fast=args.fail_fast,
                         verbose=args.verbose, heartbeat_s=args.heartbeat)

    if args.emit == "slurm":
        from lmms_holitom.sweep.manifest import write_text_atomic
        from lmms_holitom.sweep.slurm import parse_slurm_opts, slurm_script

        try:
            options = parse_slurm_opts(args.slurm_opt)
        except ValueError as e:
            print(f"holitom sweep: {e}", file=sys.stderr)
            return 2
        script = slurm_script(cfg, runs, config_path=Path(args.config), output_dir=output, limit=args.limit,
                              options=options, setup=args.slurm_setup)
        target = Path(args.slurm_out) if args.slurm_out else runner.output_dir / f"{cfg.name}.slurm"
        write_text_atomic(target, script)
        target.chmod(0o755)
        (runner.output_dir / "slurm").mkdir(parents=True, exist_ok=True)  # Slurm needs the log folder
        print(f"wrote {target} ({len(runs)} array element(s)); submit with: sbatch {target}")
        return 0
    if args.list:
        for i, run in enumerate(runs, 1):
            state = runner.check(run)
            print(f"[{i}/{len(runs)}] {run.name:<40} {state.state if state.finished else 'pending'}  {run.model_args}")
        return 0
    if args.dry_run:
        print(runner.describe(runs))
        return 0
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
