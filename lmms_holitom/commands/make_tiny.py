"""``holitom make-tiny``: build (or locate) the tiny offline LLaVA-OneVision and print its folder."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HELP = "build (or locate) the tiny offline LLaVA-OneVision used by the demo and tests"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--path",
        type=Path,
        default=None,
        help="folder of the model (default: $LMMS_HOLITOM_CACHE/tiny-llava-ov-v* or ~/.cache/lmms_holitom/...)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder already holds it")


def main(args: argparse.Namespace) -> int:
    from lmms_holitom.commands import UsageError
    from lmms_holitom.tiny import ensure_tiny_model, tiny_cache_dir

    target = Path(args.path) if args.path is not None else tiny_cache_dir()
    if target.exists() and not target.is_dir():
        raise UsageError(f"--path {target} is a file; give a folder for the tiny model")
    if args.force and target.exists():
        if not (target / "lmms_holitom_tiny.json").exists() and any(target.iterdir()):
            raise UsageError(f"--force refuses to delete {target}: it is not a tiny-model folder "
                             "(no lmms_holitom_tiny.json)")
        shutil.rmtree(target)
    print(ensure_tiny_model(target))
    return 0
