"""``holitom make-tiny``: build (or locate) the tiny offline models and print their folders."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HELP = ("build (or locate) the tiny offline models (LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL(-MoE), Qwen3.5(-MoE)) "
        "used by the demo and tests")
_MARKER = "lmms_holitom_tiny.json"  # every tiny model's folder holds it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lmms_holitom.testing import tiny_model_names

    names = tiny_model_names()
    parser.add_argument(
        "--model", default=names[0], choices=[*names, "all"],
        help=f"which tiny model (default: {names[0]}, the LLaVA-OneVision); 'all' builds every one and prints "
        "'NAME FOLDER' lines",
    )
    parser.add_argument(
        "--path",
        type=Path,
        default=None,
        help="folder of the model (one model only; default: a folder under $LMMS_HOLITOM_CACHE or "
        "~/.cache/lmms_holitom)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder already holds it")


def _prepare(target: Path, force: bool) -> None:
    from lmms_holitom.commands import UsageError

    if target.exists() and not target.is_dir():
        raise UsageError(f"--path {target} is a file; give a folder for the tiny model")
    if force and target.exists():
        if not (target / _MARKER).exists() and any(target.iterdir()):
            raise UsageError(f"--force refuses to delete {target}: it is not a tiny-model folder (no {_MARKER})")
        shutil.rmtree(target)


def main(args: argparse.Namespace) -> int:
    from lmms_holitom.commands import UsageError
    from lmms_holitom.testing import ensure_tiny, tiny_model_dir, tiny_model_names

    if args.model == "all":
        if args.path is not None:
            raise UsageError("--path names the folder of one model; it cannot be used with --model all")
        for name in tiny_model_names():
            _prepare(tiny_model_dir(name), args.force)
            print(name, ensure_tiny(name))
        return 0
    target = Path(args.path) if args.path is not None else tiny_model_dir(args.model)
    _prepare(target, args.force)
    print(ensure_tiny(args.model, target))
    return 0
