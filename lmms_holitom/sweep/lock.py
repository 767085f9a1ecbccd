"""One sweep at a time per run: lock files under ``<output>/.locks/<run>.lock``.

A sweep takes the lock of every run it is about to execute before starting any (all or nothing), so a
second ``holitom sweep`` on the same output folder refuses with one line naming the holder, while Slurm
array elements (``--only <run>``, one run each) still run side by side. A lock file is JSON:
``{"pid", "host", "started_at", "proc_start", "command"}``; it is created with ``os.link`` (atomic, also on
NFS) so it is never seen half-written.

A lock is **stale** when its host is this host and its process is gone (or the pid now belongs to a process
started at another time, ``proc_start`` from ``/proc/<pid>/stat``), or when it is not a sweep's lock at all: empty,
not JSON, or without a pid and host (a sweep's lock is complete the moment it exists, so such a file is debris, not
a write in progress). A stale lock is taken over under an ``flock`` on ``.locks/.guard`` so that two sweeps cannot
both take it. A live lock is never waited on: the sweep refuses at once, in one line naming the holder and what to
do; a lock held on another host is never taken over, and the message says which file to delete once that process
is known to be gone. A lock file that cannot be read or removed (permissions) is named with the same remedy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lmms_holitom.io import create_exclusive
from lmms_holitom.sweep.manifest import now_iso

__all__ = ["LOCK_DIR", "SweepLocked", "hold_runs", "lock_holder", "proc_start"]

LOCK_DIR = ".locks"


class SweepLocked(RuntimeError):
    """Another live sweep holds a run's lock; the message is one line naming it."""


def proc_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
    return fields[19] if len(fields) > 19 else None


def _alive(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    recorded = holder.get("proc_start")
    return recorded is None or proc_start(pid) in (None, recorded)


def lock_holder(path: Path) -> dict[str, Any] | None:
    """The holder recorded in a lock file (``{}`` when it is not a sweep's lock: empty, not JSON, no pid or host),
    None when there is no lock; `SweepLocked` with the remedy when the file cannot be read."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {}
    except OSError as e:
        raise SweepLocked(f"cannot read the lock file {path} ({e.strerror or e}); delete it if no sweep is "
                          "running this run") from None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or not isinstance(data.get("host"), str):
        return {}
    return data


def _describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started_at')} "
            f"({holder.get('command', '?')})")


def _stale(holder: dict[str, Any]) -> bool:
    """Not a sweep's lock (``{}``), or a lock of this host whose process is gone."""
    return not holder or (holder.get("host") == socket.gethostname() and not _alive(holder))


def _create(path: Path, me: dict[str, Any]) -> bool:
    """Create the lock file with ``me`` in it; False when it already exists."""
    return create_exclusive(path, json.dumps(me))


@contextlib.contextmanager
def _guard(lock_dir: Path) -> Iterator[None]:
    with open(lock_dir / ".guard", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _acquire(path: Path, me: dict[str, Any]) -> None:
    if _create(path, me):
        return
    with _guard(path.parent):
        holder = lock_holder(path)
        if holder is None or _stale(holder):
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                raise SweepLocked(f"the stale lock file {path} cannot be removed ({e.strerror or e}); delete it "
                                  "by hand") from None
            if _create(path, me):
                return
            holder = lock_holder(path) or {}
    if holder.get("host") == socket.gethostname():
        what = f"; wait for it to finish or stop it (kill {holder.get('pid')})"
    else:
        what = f"; delete {path} once that process is known to be gone"
    raise SweepLocked(f"run {path.stem} is being run by {_describe(holder)}{what}")


def _release(path: Path, me: dict[str, Any]) -> None:
    try:
        holder = lock_holder(path)
    except SweepLocked:
        return  # unreadable now: not ours to remove
    if holder and holder.get("pid") == me["pid"] and holder.get("started_at") == me["started_at"]:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def hold_runs(output_dir: Path, runs: Iterable[str]) -> Iterator[None]:
    """Hold the lock of every run in ``runs`` for the duration; raises `SweepLocked` (holding none) if any
    is held by a live process."""
    lock_dir = Path(output_dir) / LOCK_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": now_iso(),
          "proc_start": proc_start(os.getpid()), "command": " ".join(["holitom", *sys.argv[1:]])[:200]}
    held: list[Path] = []
    try:
        for name in runs:
            path = lock_dir / f"{name}.lock"
            _acquire(path, me)
            held.append(path)
        yield
    finally:
        for path in held:
            _release(path, me)
