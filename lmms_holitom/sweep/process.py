"""One lmms-eval process of a sweep run: started, logged, watched, and stopped cleanly.

The output goes to the run's ``log.txt`` through an unbuffered pump thread that keeps draining the pipe
after a write error (a full disk must not block lmms-eval); the error is raised when the process has ended.
On Linux the child gets SIGTERM if the sweep dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TextIO

from lmms_holitom.sweep.command import Invocation, child_env
from lmms_holitom.sweep.manifest import now_iso

__all__ = ["SweepInterrupted", "format_duration", "last_error_line", "run_logged", "sigterm_as_interrupt", "stop"]


class SweepInterrupted(Exception):
    """Ctrl-C or SIGTERM while a sweep was running."""


def _pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Linux: the lmms-eval process gets SIGTERM if the sweep dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def last_error_line(log: Path, max_bytes: int = 65536) -> str | None:
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if re.search(r"(Error|Exception|Traceback|Killed|error:)", line):
            return line.strip()[:300]
    return None


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--:--"
    seconds = round(seconds)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run_logged(inv: Invocation, log: Path, *, say: Callable[[str], None], heartbeat_s: float = 300.0,
           kill_grace_s: float = 20.0, echo: TextIO | None = None) -> int:
    """Run ``inv`` with its output appended to ``log`` (and echoed to ``echo``); return its exit status.

    ``say`` gets a "still running" line every ``heartbeat_s``. Ctrl-C or `SweepInterrupted` stops the
    process (`stop`) and raises `SweepInterrupted`; an OSError writing the log is raised once it has ended.
    A launcher that cannot be started is exit status 127, with the reason in the log.
    """
    env, removed = child_env(inv)
    write_errors: list[OSError] = []
    with open(log, "ab", buffering=0) as sink:  # unbuffered: a write error surfaces in the pump
        sink.write(f"# {now_iso()} $ {inv.shell()}\n".encode())
        if removed:
            sink.write(f"# removed from the environment: {', '.join(removed)}\n".encode())
        sink.flush()
        try:
            proc = subprocess.Popen(
                list(inv.argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None,
            )
        except OSError as e:  # the launcher itself is missing: a failed run, not an unwritable folder
            sink.write(f"# error: cannot start {inv.argv[0]}: {e.strerror or e}\n".encode())
            return 127
        pump = threading.Thread(target=_pump, args=(proc.stdout, sink, write_errors, echo), daemon=True)
        pump.start()
        start = time.monotonic()
        try:
            while True:
                try:
                    code = proc.wait(timeout=heartbeat_s)
                    break
                except subprocess.TimeoutExpired:
                    say(f"still running, {format_duration(time.monotonic() - start)} (log: {log})")
        except (KeyboardInterrupt, SweepInterrupted) as e:
            stop(proc, kill_grace_s)
            pump.join(timeout=5)
            raise SweepInterrupted(str(e) or "interrupted (Ctrl-C)") from None
        pump.join(timeout=30)
    if write_errors:
        raise write_errors[0]
    return code


def _pump(stream: IO[bytes] | None, sink: IO[bytes], errors: list[OSError], echo: TextIO | None) -> None:
    """Copy lmms-eval's output into the log; after a write error, keep draining (never block the child)."""
    if stream is None:
        return
    for chunk in iter(lambda: stream.readline(), b""):
        if not errors:
            try:
                sink.write(chunk)
                sink.flush()
            except OSError as e:
                errors.append(OSError(e.errno, f"writing {Path(sink.name).name}: {e.strerror}"))
        if echo is not None:
            echo.write(chunk.decode("utf-8", "replace"))
            echo.flush()


def stop(proc: subprocess.Popen, kill_grace_s: float = 20.0) -> None:
    """Stop lmms-eval: SIGINT (as Ctrl-C), then SIGTERM, then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=kill_grace_s / 2)
            return
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `SweepInterrupted` in the main thread for the duration (elsewhere: nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SweepInterrupted(f"received signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
