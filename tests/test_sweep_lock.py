"""One sweep at a time per run folder: a real second ``holitom sweep`` process refuses; stale locks are taken."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import REPO, fake_study

from lmms_holitom.sweep.config import load_config
from lmms_holitom.sweep.lock import SweepLocked, hold_runs, proc_start
from lmms_holitom.sweep.runner import SweepRunner


def _sweep_cmd(study: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lmms_holitom.cli", "sweep", str(study), "-o", str(out), "--no-task-check"]


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.1)


def test_second_sweep_process_refuses_naming_the_holder(tmp_path: Path):
    study, out = fake_study(tmp_path, runs=[{"name": "dense", "method": "dense"}]), tmp_path / "out"
    env = {**os.environ, "FAKE_LMMS_EVAL_MODE": "dense=sleep", "FAKE_LMMS_EVAL_CALLS": str(tmp_path / "calls")}
    first = subprocess.Popen(_sweep_cmd(study, out), cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "calls")  # the first sweep's lmms-eval is running
        holder = json.loads((out / ".locks" / "dense.lock").read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname() and holder["started_at"]
        second = subprocess.run(_sweep_cmd(study, out), cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert lines[0].startswith("holitom sweep: error: run dense is being run by ")
        assert f"pid {first.pid} on {socket.gethostname()}" in lines[0]
        assert len((tmp_path / "calls").read_text().splitlines()) == 1  # the run was not started twice
        assert json.loads((out / "dense" / "run.json").read_text())["status"] == "running"
        assert not (out / "dense" / "attempt-1").exists()  # the live attempt was not moved aside
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 130
    assert not (out / ".locks" / "dense.lock").exists()  # released on exit


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FAKE_LMMS_EVAL_MODE", raising=False)
    study, out = fake_study(tmp_path, runs=[{"name": "dense", "method": "dense"}]), tmp_path / "out"
    (out / ".locks").mkdir(parents=True)
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started_at": "2026-01-01T00:00:00+00:00"}
    (out / ".locks" / "dense.lock").write_text(json.dumps(stale))
    cfg = load_config(study)
    outcome = SweepRunner(cfg, out, out=io.StringIO()).run(list(cfg.runs))
    assert outcome.exit_code == 0 and [o.status for o in outcome.outcomes] == ["done"]
    assert not (out / ".locks" / "dense.lock").exists()


def test_reused_pid_counts_as_stale_and_other_hosts_are_never_taken(tmp_path: Path):
    locks = tmp_path / ".locks"
    locks.mkdir()
    # our own pid, but recorded with another process start time: the pid was reused
    (locks / "a.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                              "started_at": "x", "proc_start": "1"}))
    assert proc_start(os.getpid()) not in (None, "1")
    with hold_runs(tmp_path, ["a"]):
        assert json.loads((locks / "a.lock").read_text())["proc_start"] == proc_start(os.getpid())
    (locks / "b.lock").write_text(json.dumps({"pid": 1, "host": "node-17", "started_at": "t0", "command": "c"}))
    with pytest.raises(SweepLocked, match=r"run b is being run by pid 1 on node-17 since t0 \(c\); delete "), \
            hold_runs(tmp_path, ["a", "b"]):
        pass
    assert not (locks / "a.lock").exists()  # all or nothing: a was released again


def test_disjoint_runs_can_be_held_side_by_side(tmp_path: Path):
    """Slurm array elements (``--only <run>``) share the output folder."""
    with hold_runs(tmp_path, ["a"]), hold_runs(tmp_path, ["b"]):
        assert sorted(p.name for p in (tmp_path / ".locks").glob("*.lock")) == ["a.lock", "b.lock"]
