"""``holitom check-data``: which benchmark files lmms-eval needs offline are present under $HF_HOME."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lmms_holitom.values import int_flag

if TYPE_CHECKING:
    from lmms_holitom.sweep.data import CheckRow

HELP = "report which benchmark files are present or missing under $HF_HOME"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", default=None,
                   help="comma-separated: mvbench, egoschema_subset, egoschema, videomme, longvideobench_val_v "
                        "(default: the four of the paper's table)")
    p.add_argument("--config", default=None, help="check the benchmarks of a study file instead")
    p.add_argument("--hf-home", default=None, help="the HF_HOME to check (default $HF_HOME or ~/.cache/huggingface)")
    p.add_argument("--datasets-cache", default=None,
                   help="datasets cache (default $LMMS_EVAL_DATASETS_CACHE, $HF_DATASETS_CACHE, HF_HOME/datasets)")
    p.add_argument("--show-missing", type=int_flag(0, 100_000), default=5, metavar="N",
                   help="missing videos to name per task")
    p.add_argument("--no-probe", action="store_true",
                   help="only check that the videos exist (default: also open each container with PyAV)")


def main(args: argparse.Namespace) -> int:
    from lmms_holitom.sweep.data import BENCHMARKS, DEFAULT_TASKS, check_data, format_rows

    if args.config:
        from lmms_holitom.sweep.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except ConfigError as e:
            from lmms_holitom.commands.sweep import study_error

            return study_error("check-data", e)
        tasks = [t for t in cfg.tasks if t in BENCHMARKS]
        skipped = [t for t in cfg.tasks if t not in BENCHMARKS]
        if skipped:
            print(f"(not checked, not one of the paper's benchmarks: {', '.join(skipped)})")
        if not tasks:
            print(f"nothing checked: none of the tasks of {args.config} is a benchmark check-data knows "
                  f"({', '.join(BENCHMARKS)}); their files are not checked")
            return 0
    elif args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    else:
        tasks = list(DEFAULT_TASKS)
    unknown = [t for t in tasks if t not in BENCHMARKS]
    if unknown:
        print(f"holitom check-data: unknown task(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    rows = check_data(tasks, hf_home=Path(args.hf_home) if args.hf_home else None,
                      datasets_cache=Path(args.datasets_cache) if args.datasets_cache else None,
                      show_missing=args.show_missing, probe=not args.no_probe)
    print(format_rows(rows))
    print("\n" + summary_line(rows, tasks, probe=not args.no_probe))
    return 1 if any(r.failed for r in rows) else 0


def summary_line(rows: list[CheckRow], tasks: list[str], probe: bool) -> str:
    """The last line: the problems and how many of them lmms-eval would fetch from the network (the rows that say
    so), or what was found present."""
    failed = [r for r in rows if r.failed]
    if failed:
        network = sum(r.network for r in failed)
        return (f"{len(failed)} problem(s) in {', '.join(tasks)}, {network} of them lmms-eval would fetch from the "
                "network (offline: the run fails); fix them as shown above, see task_overrides/README.md for the "
                "expected layout")
    opened = "present and open in PyAV" if probe else "present (not opened: --no-probe)"
    return f"all required files of {', '.join(tasks)} are {opened}"
