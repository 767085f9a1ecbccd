"""Study files and sweep folders an adversary hands ``holitom sweep`` / ``check-data``: each refused in one line
naming the file and the limit, never a hang, a MemoryError or a megabyte of message (issue 17)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweep_helpers import REPO, calls, fake_study

from lmms_holitom.cli import main
from lmms_holitom.sweep.spec import MAX_RUNS, MAX_STUDY_VALUES


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"holitom {argv[0]}: error: ")
    return err[0]


def _study_text(tmp_path: Path, runs_yaml: str, head: str = "") -> Path:
    base = yaml.safe_load(fake_study(tmp_path).read_text())
    del base["runs"]
    path = tmp_path / "study.yaml"
    path.write_text(head + yaml.safe_dump(base, sort_keys=False) + runs_yaml, encoding="utf-8")
    return path


def test_unbounded_grid_is_counted_before_it_is_expanded(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """7 axes x 10 values through one YAML anchor: 10 million runs (a MemoryError traceback before)."""
    keys = ("tau", "beta", "contextual_ratio", "knn_k", "max_window_size", "dominant_ratio")
    runs = "runs:\n  - grid:\n      retain_ratio: &ten [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    study = _study_text(tmp_path, runs + "".join(f"      {k}: *ten\n" for k in keys))
    line = one_error_line(capsys, ["sweep", str(study), "--list"])
    assert line == (f"holitom sweep: error: {study}: runs[0].grid expands to 10000000 runs (10 x 10 x 10 x 10 x 10 "
                    f"x 10 x 10), more than a study may hold ({MAX_RUNS}); split it into several studies or zip axes")


def test_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A billion laughs in a run name (9 levels of 9 aliases: 387 million strings; a 75 MB error line before)."""
    levels = ['description: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"x{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    study = _study_text(tmp_path, "runs:\n  - name: *l8\n    method: dense\n", head="\n".join(levels) + "\n")
    line = one_error_line(capsys, ["sweep", str(study), "--list"])
    assert len(line) < 400
    assert line == (f"holitom sweep: error: {study}: holds more than {MAX_STUDY_VALUES} values once its YAML aliases "
                    "(*name) are expanded (or an alias contains itself); a study holds a few hundred: check the "
                    "anchors (&name) and aliases")


def test_long_values_in_messages_are_cut(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    study = _study_text(tmp_path, f"runs:\n  - name: r\n    method: {'x' * 200_000}\n")
    line = one_error_line(capsys, ["sweep", str(study), "--list"])
    assert len(line) < 700 and "runs[0] 'r': method must be one of" in line


def test_fifo_as_study_file_is_refused_not_read(tmp_path: Path):
    fifo = tmp_path / "study.yaml"
    os.mkfifo(fifo)
    for command in (["sweep", str(fifo), "--list"], ["check-data", "--config", str(fifo)]):
        res = subprocess.run([sys.executable, "-m", "lmms_holitom.cli", *command], capture_output=True, text=True,
                             cwd=REPO, timeout=60)  # hung forever before
        assert res.returncode == 2
        assert res.stderr == (f"holitom {command[0]}: error: {fifo}: is a FIFO (named pipe), not a regular file: give "
                              "the path of a YAML study file\n")


def test_non_utf8_study_names_the_file_and_the_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    study = fake_study(tmp_path)
    data = study.read_bytes()
    at = data.index(b"name: fake") + len("name: fa")
    study.write_bytes(data[:at] + b"\xff" + data[at + 1:])
    for command in (["sweep", str(study), "--list"], ["check-data", "--config", str(study)]):
        line = one_error_line(capsys, command)
        assert line == (f"holitom {command[0]}: error: {study}: is not UTF-8 text: byte 0xff at offset {at} (line 1) "
                        "is invalid start byte; save the file as UTF-8")


@pytest.mark.parametrize("content", ["", "garbage{", '{"pid": "x"}', "[1, 2]"])
def test_empty_or_garbage_lock_is_taken_over(tmp_path: Path, content: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("FAKE_LMMS_EVAL_CALLS", str(tmp_path / "calls"))
    monkeypatch.delenv("FAKE_LMMS_EVAL_MODE", raising=False)
    study, out = fake_study(tmp_path, runs=[{"name": "dense", "method": "dense"}]), tmp_path / "out"
    (out / ".locks").mkdir(parents=True)
    (out / ".locks" / "dense.lock").write_text(content)
    assert main(["sweep", str(study), "-o", str(out), "--no-task-check"]) == 0, capsys.readouterr()
    assert calls(tmp_path / "calls") == ["dense"]
    assert not (out / ".locks" / "dense.lock").exists()


def test_live_lock_refuses_at_once_with_the_remedy(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    study, out = fake_study(tmp_path, runs=[{"name": "dense", "method": "dense"}]), tmp_path / "out"
    (out / ".locks").mkdir(parents=True)
    holder = {"pid": os.getppid(), "host": socket.gethostname(), "started_at": "t0", "command": "holitom sweep"}
    (out / ".locks" / "dense.lock").write_text(json.dumps(holder))
    code = main(["sweep", str(study), "-o", str(out), "--no-task-check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == (f"holitom sweep: error: run dense is being run by pid {os.getppid()} on {socket.gethostname()} "
                      f"since t0 (holitom sweep); wait for it to finish or stop it (kill {os.getppid()})")


def test_slurm_opt_with_a_newline_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    target = tmp_path / "job.slurm"
    line = one_error_line(capsys, ["sweep", str(fake_study(tmp_path)), "--emit", "slurm", "--slurm-out", str(target),
                                   "--slurm-opt", "partition=gpu\n#SBATCH --wrap=rm -rf ~"])
    assert line == ("holitom sweep: error: --slurm-opt partition: the value must not contain control characters (a "
                    "newline would start another #SBATCH line), got 'gpu\\n#SBATCH --wrap=rm -rf ~'")
    assert not target.exists()


@pytest.mark.parametrize(("setup", "expected"), [
    ("module load cuda\rrm -rf ~", "--slurm-setup takes one shell line per flag, without control characters; got "
                                   "'module load cuda\\rrm -rf ~' (give each line its own --slurm-setup)"),
    ("source a\nsource b", "--slurm-setup takes one shell line per flag, without control characters; got "
                           "'source a\\nsource b' (give each line its own --slurm-setup)"),
    ("  ", "--slurm-setup needs a shell line (e.g. 'module load cuda'), got an empty value"),
])
def test_slurm_setup_lines_are_single_shell_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str,
                                                  expected: str):
    target = tmp_path / "job.slurm"
    line = one_error_line(capsys, ["sweep", str(fake_study(tmp_path)), "--emit", "slurm", "--slurm-out", str(target),
                                   "--slurm-setup", "module load cuda", "--slurm-setup", setup])
    assert line == f"holitom sweep: error: {expected}"
    assert not target.exists()
    assert main(["sweep", str(fake_study(tmp_path)), "--emit", "slurm", "--slurm-out", str(target), "--no-task-check",
                 "--slurm-setup", "module load cuda\t# tab ok"]) == 0
    assert "module load cuda\t# tab ok\n" in target.read_text()


def test_read_only_commands_never_run_the_task_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]):
    """The fake study's tasks (fakegroup, faketask) are unknown to lmms-eval: the task check rejects them, so a
    command that succeeds did not run it (it spent ~10 s in lmms-eval's TaskManager before)."""
    monkeypatch.setenv("FAKE_LMMS_EVAL_CALLS", str(tmp_path / "calls"))
    monkeypatch.delenv("FAKE_LMMS_EVAL_MODE", raising=False)
    study, out = fake_study(tmp_path, runs=[{"name": "dense", "method": "dense"}]), tmp_path / "out"
    base = ["sweep", str(study), "-o", str(out)]
    for extra in (["--list"], ["--dry-run"], ["--emit", "slurm"]):
        assert main([*base, *extra]) == 0, capsys.readouterr().err
    capsys.readouterr()
    # a sweep that will start a run checks the names first, and refuses
    assert main(base) == 2
    err = capsys.readouterr().err
    assert f"{study}: 2 problems:" in err and "Traceback" not in err
    assert "tasks: unknown lmms-eval task 'fakegroup'" in err and "tasks: unknown lmms-eval task 'faketask'" in err
    assert calls(tmp_path / "calls") == []
    assert main([*base, "--no-task-check"]) == 0
    capsys.readouterr()
    # a rerun with nothing to do: no check, nothing run
    assert main(base) == 0
    assert "1 already done, 0 to run" in capsys.readouterr().out
    assert calls(tmp_path / "calls") == ["dense"]


def test_sigterm_after_complete_results_is_one_truth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """lmms-eval wrote complete results and is still busy when the sweep gets SIGTERM: run.json said `interrupted`
    while --list said `done` and a rerun skipped it; now all three say done (run.json flags the interruption)."""
    import signal
    import time

    monkeypatch.setenv("FAKE_LMMS_EVAL_CALLS", str(tmp_path / "calls"))
    monkeypatch.setenv("FAKE_LMMS_EVAL_MODE", "dense=linger")
    study, out = fake_study(tmp_path, runs=[{"name": "dense", "method": "dense"},
                                            {"name": "other", "method": "holitom"}]), tmp_path / "out"
    argv = [sys.executable, "-m", "lmms_holitom.cli", "sweep", str(study), "-o", str(out), "--no-task-check"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while "fake lmms-eval: done" not in _read(out / "dense" / "log.txt") and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, text
    assert "dense: done: interrupted (received signal SIGTERM) after lmms-eval had written complete results" in text
    manifest = json.loads((out / "dense" / "run.json").read_text())
    assert manifest["status"] == "done" and manifest["interrupted"] == "received signal SIGTERM"
    assert any("interrupted" in flag for flag in manifest["flags"])
    listing = subprocess.run([*argv, "--list"], cwd=REPO, capture_output=True, text=True, timeout=120).stdout
    assert listing.splitlines()[0].split()[1:3] == ["dense", "done"]
    assert "done [flagged: the sweep was interrupted (received signal SIGTERM) after lmms-eval had written complete " \
           "results]" in listing.splitlines()[0]  # --list shows what run.json and the report flag
    assert listing.splitlines()[1].split()[1:3] == ["other", "pending"]


def test_list_says_a_run_was_interrupted_and_a_rerun_redoes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Interrupted before its results: run.json, --list and a rerun agree that it must run again."""
    import signal
    import time

    monkeypatch.setenv("FAKE_LMMS_EVAL_CALLS", str(tmp_path / "calls"))
    monkeypatch.setenv("FAKE_LMMS_EVAL_MODE", "dense=sleep@once")
    monkeypatch.setenv("FAKE_LMMS_EVAL_STATE", str(tmp_path / "state"))
    study, out = fake_study(tmp_path, runs=[{"name": "dense", "method": "dense"}]), tmp_path / "out"
    argv = [sys.executable, "-m", "lmms_holitom.cli", "sweep", str(study), "-o", str(out), "--no-task-check"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while "mode sleep" not in _read(out / "dense" / "log.txt") and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=90)
    assert proc.returncode == 130
    assert json.loads((out / "dense" / "run.json").read_text())["status"] == "interrupted"
    listing = subprocess.run([*argv, "--list"], cwd=REPO, capture_output=True, text=True, timeout=120).stdout
    assert "dense" in listing and " pending (last attempt interrupted) " in listing
    rerun = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0 and calls(tmp_path / "calls") == ["dense", "dense"]
    assert json.loads((out / "dense" / "run.json").read_text())["status"] == "done"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_check_data_counts_what_its_lines_say(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["check-data", "--hf-home", str(tmp_path / "hf"), "--no-probe"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    rows = [line for line in out if line.split()[:1] in (["MISSING"], ["NETWORK"], ["PARTIAL"], ["CORRUPT"])]
    network = [line for line in rows if "would download" in line or "snapshot_download" in line]
    assert len(rows) == 8 and len(network) == 8
    assert out[-1].startswith("8 problem(s) in mvbench, egoschema_subset, longvideobench_val_v, videomme, 8 of them "
                              "lmms-eval would fetch from the network")


def test_check_data_of_a_study_without_known_benchmarks_checks_nothing_and_says_so(
        capsys: pytest.CaptureFixture[str]):
    assert main(["check-data", "--config", str(REPO / "configs" / "smoke.yaml")]) == 0
    out = capsys.readouterr().out
    assert "all required" not in out
    assert out.splitlines()[-1].startswith(f"nothing checked: none of the tasks of {REPO / 'configs' / 'smoke.yaml'} "
                                           "is a benchmark check-data knows")
