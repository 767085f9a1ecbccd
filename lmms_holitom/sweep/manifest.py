"""Run manifests: JSON files (written atomically by `lmms_holitom.io`), the versions a run used, and the git
state of the checkout."""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from lmms_holitom.io import write_json_atomic, write_text_atomic

__all__ = ["git_state", "now_iso", "read_json", "versions", "write_json_atomic", "write_text_atomic"]

MANIFEST = "run.json"
PACKAGES = ("lmms-holitom", "lmms-eval", "transformers", "torch", "accelerate")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    """Installed versions (read from package metadata: nothing heavy is imported)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@lru_cache(maxsize=4)
def git_state(where: str | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding lmms_holitom (or ``where``); None outside git."""
    cwd = where or str(Path(__file__).resolve().parents[2])

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    if git("rev-parse", "--is-inside-work-tree") != "true":
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}
