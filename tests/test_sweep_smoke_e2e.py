"""End to end: ``holitom sweep configs/smoke.yaml`` runs the real lmms-eval CLI with the plugin model on the tiny
offline LLaVA-OneVision and the local ``holitom_smoke`` task, resumes, and ``holitom report`` tabulates it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import REPO

import lmms_holitom.integrations.lmms_eval.llava  # noqa: F401  (the plugin the sweep runs)

assert (REPO / "task_overrides" / "holitom_smoke").is_dir(), "task_overrides/holitom_smoke is missing"

pytestmark = pytest.mark.slow
RUNS = ("dense", "holitom-r0.25-t0.80-k2-m0.5", "holitom_wo_m-r0.25-t0.80")


def holitom(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "lmms_holitom.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def test_smoke_sweep_resume_and_report(tmp_path: Path):
    out = tmp_path / "smoke"
    res = holitom("sweep", "configs/smoke.yaml", "--output", str(out), "--limit", "2")  # with the task check
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "3/3 done" in res.stdout
    for run in RUNS:
        manifest = json.loads((out / run / "run.json").read_text())
        assert manifest["status"] == "done", manifest.get("reason")
        assert manifest["n_samples"] == {"holitom_smoke": {"original": 6, "effective": 2}}
        assert manifest["model_errors"] == 0 and manifest["flags"] == []
        assert (out / run / "log.txt").stat().st_size > 0

    logs = {run: (out / run / "log.txt").stat().st_mtime_ns for run in RUNS}
    res = holitom("sweep", "configs/smoke.yaml", "--output", str(out), "--limit", "2", "--no-task-check")
    assert res.returncode == 0 and "3 already done, 0 to run" in res.stdout
    assert logs == {run: (out / run / "log.txt").stat().st_mtime_ns for run in RUNS}

    res = holitom("report", str(out))
    assert res.returncode == 0, res.stderr
    rows = {r["run"]: r for r in csv.DictReader((out / "report.csv").open())}
    assert set(rows) == set(RUNS)
    for row in rows.values():
        assert row["status"] == "done" and row["tflops_source"] == "measured"
        assert 0.0 <= float(row["holitom_smoke"]) <= 1.0
    dense, wo_m, full = (float(rows[r]["visual_tokens"]) for r in ("dense", RUNS[2], RUNS[1]))
    assert dense == 8 * 196 + 1  # 8 frames x 196 tokens + the newline token
    assert wo_m < 0.3 * dense and full == wo_m  # the outer merge keeps ~25 %; the inner merge is after it
    assert float(rows[RUNS[1]]["visual_tokens_after_merge"]) < full
    assert float(rows[RUNS[1]]["tflops"]) < float(rows[RUNS[2]]["tflops"]) < float(rows["dense"]["tflops"])
    assert (out / "plots" / "accuracy_vs_tflops.png").is_file()
