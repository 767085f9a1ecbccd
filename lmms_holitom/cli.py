"""The ``holitom`` command: one sub-command per module in `lmms_holitom.commands`.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``main(args) -> int``;
modules are imported only for the sub-command that runs, so ``holitom flops`` never imports torch models.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command -> module under lmms_holitom.commands
COMMANDS: dict[str, str] = {
    "run": "run",
    "sweep": "sweep",
    "report": "report",
    "bench": "bench",
    "flops": "flops",
    "check-data": "check_data",
    "make-tiny": "make_tiny",
}

_HELP: dict[str, str] = {
    "run": "answer a question about one video and print the compression stats",
    "sweep": "run a YAML study (grid of settings x benchmarks) through lmms-eval, resumably",
    "report": "turn a sweep directory into the paper's table (Markdown/CSV) and plots",
    "bench": "measure vision/merge/prefill time, TTFT, decoding speed and memory, dense vs methods",
    "flops": "theoretical LLM TFLOPs of a setting (the paper's cost model)",
    "check-data": "report which benchmark files are present or missing under $HF_HOME",
    "make-tiny": "build (or locate) the tiny offline LLaVA-OneVision used by the demo and tests",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="holitom", description="HoliTom for LLaVA-OneVision / lmms-eval")
    from lmms_holitom import __version__

    parser.add_argument("--version", action="version", version=f"lmms-holitom {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        if name == command:  # only import the module that will run
            importlib.import_module(f"lmms_holitom.commands.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"lmms_holitom.commands.{COMMANDS[args.command]}")
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
