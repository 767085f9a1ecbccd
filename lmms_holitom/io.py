"""Atomic file writes, the one helper of the package: readers never see half a file.

`write_text_atomic` writes a temporary file in the target's folder and ``os.replace``-s it over the target.
The temporary file comes from `tempfile.mkstemp`, which creates it ``0600``; it is given the mode any other
new file gets (``0666`` minus the process umask, typically ``0644``) so that a manifest on a shared file
system is as readable as the logs beside it. `create_exclusive` is the same write for a file that must
not exist yet (a lock).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["create_exclusive", "default_file_mode", "write_json_atomic", "write_text_atomic"]


def _umask() -> int:
    """The process umask, read from ``/proc`` when possible (``os.umask`` alone can only set it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # not thread-safe, hence only the fallback
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def _complete_temp(path: Path, text: str) -> Iterator[str]:
    """A fully written, fsync-ed temporary file beside ``path`` (removed afterwards unless moved)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        yield tmp
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating the parent folders; mode as `default_file_mode`."""
    with _complete_temp(Path(path), text) as tmp:
        os.replace(tmp, path)


def create_exclusive(path: str | os.PathLike, text: str) -> bool:
    """Create ``path`` holding ``text``, complete or not at all, unless it exists (then False).

    ``os.link`` of a finished temporary file: atomic and exclusive, also on NFS (a lock file).
    """
    with _complete_temp(Path(path), text) as tmp:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    return True


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """`write_text_atomic` of ``data`` as indented JSON (non-JSON values as ``str``)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
