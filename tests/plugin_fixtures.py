"""Helpers of the lmms-eval plugin tests: run the real lmms-eval CLI and read what it wrote."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "task_overrides"
VENV_BIN = Path(sys.executable).parent
ORIGINAL_ENV = ("WRAPPER", "RETAIN_RATIO", "T", "HOLITOM_k", "HOLITOM_r", "BETA", "D", "K", "MAX_WINDOW_SIZE",
                "NO_BETA", "SPATIAL_TOKENS", "DOMINANT_RATIO", "FASTV_k", "FASTV_r")
#: the compressed setting the CLI tests use (the tiny model has 4 decoder layers)
HOLITOM_ARGS = "method=holitom,retain_ratio=0.25,tau=0.8,merge_layer=2,merge_ratio=0.5"
FRAMES = 8


@dataclass
class CliRun:
    """One finished lmms-eval CLI run."""

    returncode: int
    output: str
    out_dir: Path
    seconds: float

    @property
    def model_dir(self) -> Path:
        return self.out_dir / "tiny"

    def results(self) -> dict[str, Any] | None:
        files = sorted(self.model_dir.glob("*_results.json")) if self.model_dir.is_dir() else []
        return json.loads(files[-1].read_text()) if files else None

    def samples(self, task: str) -> list[dict[str, Any]]:
        files = sorted(self.model_dir.glob(f"*_samples_{task}.jsonl"))
        assert files, f"no samples file for {task} in {self.model_dir}:\n{self.output[-3000:]}"
        return read_jsonl(files[-1])

    def stats(self) -> list[dict[str, Any]]:
        return read_jsonl(self.model_dir / "holitom_stats.jsonl")

    def summary(self) -> dict[str, Any]:
        return json.loads((self.model_dir / "holitom_summary.json").read_text())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(clips_dir: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ORIGINAL_ENV}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if clips_dir is not None:
        env["HOLITOM_SMOKE_CLIPS"] = str(clips_dir)
    env.update(extra)
    return env


def run_lmms_eval(
    out_dir: Path,
    model_args: str,
    tasks: str = "holitom_smoke",
    *,
    env: dict[str, str],
    processes: int = 1,
    extra: tuple[str, ...] = (),
    timeout: float = 300,
) -> CliRun:
    """``python -m lmms_eval ...`` (or ``torchrun --nproc_per_node N -m lmms_eval ...`` on CPUs)."""
    args = ["--model", "llava_onevision_holitom", "--model_args", model_args, "--tasks", tasks,
            "--include_path", str(TASKS), "--output_path", str(out_dir), "--log_samples", *extra]
    if processes == 1:
        cmd = [sys.executable, "-m", "lmms_eval", *args]
    else:
        cmd = [str(VENV_BIN / "torchrun"), "--nproc_per_node", str(processes), "--master_port",
               str(free_port()), "-m", "lmms_eval", *args]
        env = {**env, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return CliRun(proc.returncode, proc.stdout + proc.stderr, out_dir, time.perf_counter() - t0)
