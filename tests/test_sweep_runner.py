"""Runner mechanics with a real subprocess per run (tests/fake_lmms_eval.py stands in for lmms-eval):
resume, failures, crash of the sweep itself, interruption, manifests."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sweep_helpers import REPO, calls, fake_study

from lmms_holitom.sweep.config import load_config
from lmms_holitom.sweep.runner import SweepRunner

R10 = "holitom-r0.10-t0.80-k18-m0.5"
R20 = "holitom-r0.20-t0.80-k18-m0.5"


@pytest.fixture
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_LMMS_EVAL_CALLS", str(log))
    monkeypatch.setenv("FAKE_LMMS_EVAL_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("FAKE_LMMS_EVAL_MODE", raising=False)
    monkeypatch.setenv("T", "0.1")  # a stray original env var must not reach the runs
    return log


def sweep(study: Path, out: Path, **kw) -> tuple[int, str]:
    cfg = load_config(study)
    buf = io.StringIO()
    runner = SweepRunner(cfg, out, out=buf, heartbeat_s=60, **kw)
    outcome = runner.run(list(cfg.runs))
    return outcome.exit_code, buf.getvalue()


def manifest(out: Path, run: str) -> dict:
    return json.loads((out / run / "run.json").read_text())


def test_full_sweep_then_resume_does_nothing(tmp_path: Path, fake_env: Path):
    study, out = fake_study(tmp_path), tmp_path / "out"
    code, text = sweep(study, out)
    assert code == 0, text
    assert calls(fake_env) == ["dense", R10, R20]
    assert f"[2/3] {R10}: running · 2 left" in text and f"[3/3] {R20}: done in 00:00:0" in text
    m = manifest(out, R10)
    assert m["status"] == "done" and m["exit_code"] == 0 and m["reason"] is None
    assert m["model_args"].endswith("method=holitom,retain_ratio=0.1,tau=0.8,merge_layer=18,merge_ratio=0.5")
    assert m["command"][1:3] == ["-m", "fake_lmms_eval"] and m["tasks"] == ["fakegroup", "faketask"]
    assert m["expected_tasks"] == {"fakegroup": ["fakegroup_a", "fakegroup_b"], "faketask": ["faketask"]}
    assert set(m["versions"]) >= {"lmms-holitom", "lmms-eval", "transformers", "torch"}
    assert m["run"]["holitom"]["retain_ratio"] == 0.1 and m["duration_s"] >= 0
    assert m["env_removed"] == ["T"]
    assert "removed from the environment: T" in (out / R10 / "log.txt").read_text()
    assert "fake lmms-eval: done" in (out / R10 / "log.txt").read_text()
    assert json.loads((out / "sweep.json").read_text())["runs"][0]["name"] == "dense"

    stamps = {r: (out / r / "run.json").stat().st_mtime_ns for r in ("dense", R10, R20)}
    code, text = sweep(study, out)
    assert code == 0
    assert calls(fake_env) == ["dense", R10, R20]  # nothing re-run
    assert stamps == {r: (out / r / "run.json").stat().st_mtime_ns for r in ("dense", R10, R20)}
    assert "3 already done, 0 to run" in text and f"[2/3] {R10}: done, skipped" in text


def test_failed_run_reported_others_continue_rerun_only_failed(tmp_path: Path, fake_env: Path, monkeypatch):
    monkeypatch.setenv("FAKE_LMMS_EVAL_MODE", f"{R10}=noresults@once")
    study, out = fake_study(tmp_path), tmp_path / "out"
    code, text = sweep(study, out)
    assert code == 1
    assert calls(fake_env) == ["dense", R10, R20]
    m = manifest(out, R10)
    assert m["status"] == "failed" and m["exit_code"] == 0  # lmms-eval exits 0 on failure
    assert "no lmms-eval results file" in m["reason"]
    assert "last error in log: Error during evaluation: fake failure" in m["reason"]
    assert f"FAILED {R10}" in text and "2/3 done" in text

    code, text = sweep(study, out)
    assert code == 0, text
    assert calls(fake_env) == ["dense", R10, R20, R10]
    m = manifest(out, R10)
    assert m["status"] == "done" and m["attempt"] == 2 and m["previous_attempts"] == ["attempt-1"]
    assert "no lmms-eval results file" in m["previous_reason"]
    old = json.loads((out / R10 / "attempt-1" / "run.json").read_text())
    assert old["status"] == "failed"
    assert (out / R10 / "attempt-1" / "log.txt").is_file()


def test_fail_fast_stops_at_first_failure(tmp_path: Path, fake_env: Path, monkeypatch):
    monkeypatch.setenv("FAKE_LMMS_EVAL_MODE", f"{R10}=crash")
    code, text = sweep(fake_study(tmp_path), tmp_path / "out", fail_fast=True)
    assert code == 1
    assert calls(fake_env) == ["dense", R10]
    m = manifest(tmp_path / "out", R10)
    assert m["status"] == "failed" and m["exit_code"] == 1
    assert m["reason"].startswith("exit status 1; results file") and "RuntimeError: fake crash" in m["reason"]
    assert "--fail-fast" in text and "1 not reached" in text


def test_wrong_sample_count_fails_and_model_errors_flag(tmp_path: Path, fake_env: Path, monkeypatch):
    monkeypatch.setenv("FAKE_LMMS_EVAL_MODE", f"{R10}=wrong_n;{R20}=errors")
    code, text = sweep(fake_study(tmp_path), tmp_path / "out", limit=4)
    assert code == 1
    m10, m20 = manifest(tmp_path / "out", R10), manifest(tmp_path / "out", R20)
    assert m10["status"] == "failed" and "3 samples evaluated, expected 4 (limit 4" in m10["reason"]
    assert m20["status"] == "done" and m20["model_errors"] == 6  # 2 per leaf task, 3 leaves
    assert m20["flags"] == ["model reported 6 error(s) in holitom_summary.json"]
    assert f"FLAGGED {R20}" in text
    fake_args = json.loads(fake_env.read_text().splitlines()[0])["argv"]
    assert fake_args[fake_args.index("--limit") + 1] == "4"


def test_manifest_repaired_when_sweep_died_after_lmms_eval_finished(tmp_path: Path, fake_env: Path):
    study, out = fake_study(tmp_path), tmp_path / "out"
    assert sweep(study, out)[0] == 0
    m = manifest(out, R20)
    m["status"] = "running"
    (out / R20 / "run.json").write_text(json.dumps(m))
    (out / "dense" / "run.json").unlink()
    assert sweep(study, out)[0] == 0
    assert calls(fake_env) == ["dense", R10, R20]
    assert manifest(out, R20)["status"] == "done" and manifest(out, R20)["recovered"] is True
    assert manifest(out, "dense")["status"] == "done" and manifest(out, "dense")["recovered"] is True


def test_edited_setting_reruns_and_keeps_old_results(tmp_path: Path, fake_env: Path):
    out = tmp_path / "out"
    study = fake_study(tmp_path, runs=[{"name": "mine", "method": "holitom", "tau": 0.8}])
    assert sweep(study, out)[0] == 0
    study = fake_study(tmp_path, runs=[{"name": "mine", "method": "holitom", "tau": 0.7}])
    assert sweep(study, out)[0] == 0
    assert calls(fake_env) == ["dense", "mine", "mine"]
    assert "tau: 0.8 (expected 0.7)" in manifest(out, "mine")["previous_reason"]
    assert list((out / "mine" / "attempt-1" / "lmms_eval").rglob("*_results.json"))


def _interactive_signals() -> None:  # runs in the child
    """Ctrl-C as in a terminal: a suite started as a background job of a non-interactive shell (``cmd &``) inherits
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler in its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(study: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lmms_holitom.cli", "sweep", str(study), "--no-task-check",
                             "--output", str(out), *extra], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_interactive_signals)


def test_sweep_killed_mid_run_loses_nothing(tmp_path: Path, fake_env: Path, monkeypatch):
    monkeypatch.setenv("FAKE_LMMS_EVAL_MODE", f"{R10}=kill_parent@once")
    study, out = fake_study(tmp_path), tmp_path / "out"
    proc = _cli(study, out)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, text
    assert calls(fake_env) == ["dense", R10]
    assert manifest(out, "dense")["status"] == "done"
    assert manifest(out, R10)["status"] == "running"  # died mid-run
    dense_before = (out / "dense" / "run.json").read_bytes(), (out / "dense" / "run.json").stat().st_mtime_ns
    # the orphaned lmms-eval got SIGTERM when the sweep died (PR_SET_PDEATHSIG)
    orphan = json.loads(fake_env.read_text().splitlines()[1])["pid"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(orphan, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the lmms-eval child survived the sweep")

    proc = _cli(study, out)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, text
    assert calls(fake_env) == ["dense", R10, R10, R20]  # dense not redone
    assert dense_before == ((out / "dense" / "run.json").read_bytes(), (out / "dense" / "run.json").stat().st_mtime_ns)
    assert manifest(out, R10)["status"] == "done" and manifest(out, R10)["previous_attempts"] == ["attempt-1"]
    partial = list((out / R10 / "attempt-1" / "lmms_eval").rglob("*_results.json"))
    assert len(partial) == 1 and partial[0].read_text().startswith('{"results": {"fake')


def test_ctrl_c_stops_the_run_and_marks_it_interrupted(tmp_path: Path, fake_env: Path, monkeypatch):
    monkeypatch.setenv("FAKE_LMMS_EVAL_MODE", f"{R10}=sleep")
    study, out = fake_study(tmp_path), tmp_path / "out"
    proc = _cli(study, out)
    deadline = time.monotonic() + 30
    while calls(fake_env) != ["dense", R10] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=60)  # the stop sequence alone may wait 20 s for lmms-eval on a busy machine
    assert proc.returncode == 130, text
    assert "interrupted" in text
    m = manifest(out, R10)
    assert m["status"] == "interrupted"
    assert calls(fake_env) == ["dense", R10]  # the sweep stopped: R20 not started


def test_study_limit_goes_to_its_own_output_folder(tmp_path: Path):
    from lmms_holitom.sweep.runner import default_output_dir

    data = yaml.safe_load(fake_study(tmp_path).read_text())
    path = tmp_path / "limited.yaml"
    path.write_text(yaml.safe_dump({**data, "limit": 3}))
    cfg = load_config(path)
    assert default_output_dir(cfg) == Path("runs/fake-limit3")
    assert default_output_dir(cfg, 5) == Path("runs/fake-limit5")
    assert default_output_dir(load_config(fake_study(tmp_path))) == Path("runs/fake")
