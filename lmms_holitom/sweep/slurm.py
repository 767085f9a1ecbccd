"""A Slurm array script for a sweep: one array element per run.

Each element runs ``python -m lmms_holitom.cli sweep CONFIG --output DIR --only <run>``, so the resume and
validation rules of the sweep apply on the cluster too (a resubmitted array skips finished runs).
``--slurm-opt KEY=VALUE`` adds or overrides any ``#SBATCH --KEY=VALUE`` line (``partition=gpu``,
``time=12:00:00``, ``account=...``); ``--slurm-setup`` adds shell lines before the run (``module load``,
``source .venv/bin/activate``). The interpreter defaults to the one that wrote the script; override it at
submission with ``HOLITOM_PYTHON=/path/to/python sbatch ...``. With ``backend: vllm`` the script also sets
``HOLITOM_VLLM_PYTHON`` (the vLLM python the study resolved; override it the same way) and asks for
``tensor_parallel_size × pipeline_parallel_size`` GPUs per element (one engine per run).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from lmms_holitom.sweep.config import RunSpec, SweepConfig
from lmms_holitom.sweep.spec import VLLM_PYTHON_ENV
from lmms_holitom.values import shown

__all__ = ["check_slurm_setup", "parse_slurm_opts", "slurm_script"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_slurm_opts(items: Sequence[str]) -> dict[str, str]:
    """``["partition=gpu", "time=4:00:00"]`` -> mapping; raises ValueError on a malformed item or a control
    character (a newline in a value would inject an ``#SBATCH`` line)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key):
            raise ValueError(f"--slurm-opt expects KEY=VALUE (e.g. partition=gpu), got {shown(item)}")
        if _CONTROL.search(value):
            raise ValueError(f"--slurm-opt {key}: the value must not contain control characters (a newline would "
                             f"start another #SBATCH line), got {shown(value)}")
        out[key] = value.strip()
    return out


def check_slurm_setup(lines: Sequence[str]) -> list[str]:
    """The ``--slurm-setup`` lines, each one non-empty shell line (tabs allowed); raises ValueError on an empty one
    or a control character (a newline or carriage return would split it, a NUL would cut the script)."""
    for line in lines:
        if not line.strip():
            raise ValueError("--slurm-setup needs a shell line (e.g. 'module load cuda'), got an empty value")
        if _CONTROL.search(line.replace("\t", " ")):
            raise ValueError(f"--slurm-setup takes one shell line per flag, without control characters; got "
                             f"{shown(line)} (give each line its own --slurm-setup)")
    return list(lines)


def slurm_script(
    cfg: SweepConfig,
    runs: Sequence[RunSpec],
    *,
    config_path: Path,
    output_dir: Path,
    limit: int | None = None,
    options: Mapping[str, str] | None = None,
    setup: Sequence[str] = (),
    python: str | None = None,
) -> str:
    if not runs:
        raise ValueError("no runs selected for the Slurm array")
    output_dir = Path(output_dir).absolute()
    gpus = cfg.launcher.num_processes if cfg.launcher.type == "accelerate" else 1
    engine = cfg.model.get("engine") or {}
    if cfg.backend == "vllm":
        gpus = int(engine.get("tensor_parallel_size", 1)) * int(engine.get("pipeline_parallel_size", 1))
    sbatch: dict[str, str] = {
        "job-name": f"holitom-{cfg.name}",
        "array": f"0-{len(runs) - 1}",
        "nodes": str(cfg.launcher.num_machines),
        "ntasks-per-node": "1",
        "gpus-per-node": str(gpus),
        "cpus-per-task": str(max(4, 4 * gpus)),
        "output": str(output_dir / "slurm" / "%x-%A_%a.out"),
    }
    sbatch.update(options or {})
    base = ["\"$HOLITOM_PYTHON\"", "-m", "lmms_holitom.cli", "sweep",
            shlex.quote(str(Path(config_path).absolute())), "--output", shlex.quote(str(output_dir)),
            "--no-task-check"]
    if limit is not None:
        base += ["--limit", str(limit)]
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH --{k}={v}" if v != "" else f"#SBATCH --{k}" for k, v in sbatch.items()]
    lines += [
        f"# {len(runs)} run(s) of study {cfg.name!r}; submit with: sbatch {{this file}}",
        "# each element runs one sweep run; finished runs are skipped, so resubmitting is safe",
        "set -euo pipefail",
        f"mkdir -p {shlex.quote(str(output_dir / 'slurm'))}",
        f"cd {shlex.quote(str(Path.cwd()))}",
        f"HOLITOM_PYTHON=\"${{HOLITOM_PYTHON:-{python or sys.executable}}}\"",
        *([f"export {VLLM_PYTHON_ENV}=\"${{{VLLM_PYTHON_ENV}:-{cfg.launcher.python}}}\""]
          if cfg.backend == "vllm" else []),
        *setup,
        'case "${SLURM_ARRAY_TASK_ID:?run me with sbatch (array job)}" in',
    ]
    for i, run in enumerate(runs):
        lines.append(f"  {i}) exec {' '.join(base)} --only {shlex.quote(run.name)} ;;")
    lines += [
        '  *) echo "no run for array index $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        "",
    ]
    return "\n".join(lines)
