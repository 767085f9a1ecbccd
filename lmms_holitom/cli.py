"""The ``holitom`` command: one sub-command per module in `lmms_holitom.commands`.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``main(args) -> int``;
modules are imported only for the sub-command that runs, so ``holitom flops`` never imports torch models.

Errors: a user error (a bad value, a missing file, an unwritable folder) is one line
``holitom <command>: error: <what, the value, what is allowed>`` and exit status 2, with no traceback.
Commands report them by raising `UsageError` (or the `ValueError` a validated object such as
`HoliTomConfig` raises, or an `OSError` with a file name); this module is the one place that turns them into
that line (as it does an installed transformers below the supported release, `compat`).
``holitom --debug <command> ...`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from lmms_holitom.commands import UsageError
from lmms_holitom.compat import UnsupportedTransformersError

__all__ = ["COMMANDS", "UsageError", "build_parser", "main"]

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
    "make-tiny": "build (or locate) the tiny offline models used by the demo and tests",
}


#: the longest error line ``holitom`` prints (a pasted file or a YAML alias bomb in a value must not print megabytes)
MAX_ERROR_CHARS = 2000


class _Parser(argparse.ArgumentParser):
    """argparse with the package's error form: one line ``holitom <command>: error: --flag must be ..., got ...``
    (a bad flag value, a missing argument), exit status 2, no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = re.sub(r"^argument (\S+?)(?:/\S+)?: must be ", r"\1 must be ", message)
        self.exit(2, f"{self.prog}: error: {_bounded(message)} (see {self.prog} --help)\n")


def _bounded(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else f"{text[:MAX_ERROR_CHARS]}... ({len(text)} characters)"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    description = ("HoliTom and its baselines for video LLMs (LLaVA-OneVision, LLaVA-Video, Qwen2.5-VL, Qwen3-VL, "
                   "Qwen3-VL-MoE, Qwen3.5, Qwen3.5-MoE) with lmms-eval")
    parser = _Parser(prog="holitom", description=description)
    from lmms_holitom import __version__

    parser.add_argument("--version", action="version", version=f"lmms-holitom {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        if name == command:  # only import the module that will run
            importlib.import_module(f"lmms_holitom.commands.{module}").add_arguments(p)
    return parser


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        return _bounded(f"{err.filename}: {err.strerror or err}")
    return _bounded(str(err)) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad flag (one line already printed)
        return done.code if isinstance(done.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    try:
        module = importlib.import_module(f"lmms_holitom.commands.{COMMANDS[args.command]}")
        return int(module.main(args) or 0)
    except (ValueError, OSError, UnsupportedTransformersError) as err:  # UsageError, a validated object's
        # ValueError, a file error, a transformers release below the supported one
        if args.debug:
            raise
        print(f"holitom {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"holitom {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
