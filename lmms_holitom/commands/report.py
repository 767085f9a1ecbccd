"""``holitom report RUN_DIR``: the paper's table (Markdown/CSV) and plots of a sweep folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "turn a sweep directory into the paper's table (Markdown/CSV) and plots"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a sweep folder, e.g. runs/ov7b_paper")
    p.add_argument("--out", default=None, help="where to write report.md, report.csv, plots/ (default RUN_DIR)")
    p.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the Markdown table")


def main(args: argparse.Namespace) -> int:
    from lmms_holitom.sweep.plots import PlotsUnavailable
    from lmms_holitom.sweep.report import to_markdown, write_report

    root = Path(args.run_dir)
    if not root.is_dir():
        print(f"holitom report: {root} is not a folder", file=sys.stderr)
        return 2
    try:
        report, written = write_report(root, Path(args.out) if args.out else None, plots=not args.no_plots)
    except PlotsUnavailable as e:
        print(f"holitom report: {e}", file=sys.stderr)
        return 2
    if not report.rows:
        print(f"holitom report: no runs found in {root}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(to_markdown(report))
    for path in written:
        print(f"wrote {path}")
    return 0
