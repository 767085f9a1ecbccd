"""Where the tiny offline models live and how each is built on first use (shared by `tiny` and `tiny_qwen`).

The cache root is ``$LMMS_HOLITOM_CACHE`` or ``~/.cache/lmms_holitom``; each model is one folder in it, built
into a temporary folder beside its target and renamed, so a half-built folder is never seen and of two racing
processes one wins.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["build_once", "cache_root"]


def cache_root() -> Path:
    """The folder holding the tiny models: ``$LMMS_HOLITOM_CACHE``, else ``~/.cache/lmms_holitom``."""
    return Path(os.environ.get("LMMS_HOLITOM_CACHE") or os.path.join(Path.home(), ".cache", "lmms_holitom"))


def build_once(target: Path, marker: str, build: Callable[[Path], object], prefix: str) -> Path:
    """``target`` holding a finished build (``marker`` file present), built on first use: into a temporary folder
    beside it, then renamed — so a half-built folder is never seen, and of two racing processes one wins."""
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    try:
        build(tmp)
        os.replace(tmp, target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / marker).exists():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
