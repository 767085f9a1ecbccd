"""Files a sweep writes: atomic writes get the umask's mode; an unwritable output folder is one clear error."""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import CHATTY, REPO, fake_study, write_module

from lmms_holitom.cli import main
from lmms_holitom.io import write_json_atomic


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_umask_mode(tmp_path: Path, umask: int):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "run.json", {"a": 1})
        (tmp_path / "log.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "run.json").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "log.txt").stat().st_mode)
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*.tmp"))


def test_one_atomic_write_helper_in_the_sweep_package():
    """Every sweep module writes through lmms_holitom.io (no second mkstemp/os.replace writer)."""
    for path in (REPO / "lmms_holitom" / "sweep").glob("*.py"):
        text = path.read_text()
        assert "mkstemp" not in text and "def write_text_atomic" not in text, path


def test_output_below_a_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    study = fake_study(tmp_path)
    (tmp_path / "some_file").write_text("x")
    code = main(["sweep", str(study), "-o", str(tmp_path / "some_file" / "x"), "--no-task-check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"holitom sweep: error: --output {tmp_path / 'some_file' / 'x'} cannot be written: ")
    assert "Not a directory" in err[0] or "File exists" in err[0]


def _limit_file_size() -> None:  # runs in the sweep process before exec: a "full disk" at 256 KiB per file
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


def test_error_while_copying_the_log_marks_the_run_failed(tmp_path: Path):
    mods = tmp_path / "mods"
    write_module(mods, "chatty", CHATTY)
    study = fake_study(tmp_path, runs=[{"name": "dense", "method": "dense"}, {"method": "holitom"}],
                       launcher={"type": "python", "module": "chatty", "python": sys.executable,
                                 "env": {"PYTHONPATH": str(mods)}})
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "lmms_holitom.cli", "sweep", str(study), "-o", str(out),
                          "--no-task-check"], cwd=REPO, capture_output=True, text=True, timeout=300,
                         preexec_fn=_limit_file_size)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    failed = [line for line in res.stdout.splitlines() if ": FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith("[1/2] dense: FAILED: cannot write the run folder ")
    assert "writing log.txt: File too large" in failed[0] and "stopping" in failed[0]
    manifest = json.loads((out / "dense" / "run.json").read_text())
    assert manifest["status"] == "failed" and "File too large" in manifest["reason"]
    assert not (out / "holitom-r0.10-t0.80-k18-m0.5").exists()  # the sweep stopped
