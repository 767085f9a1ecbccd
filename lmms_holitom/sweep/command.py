"""The lmms-eval invocation of one run: argv, environment, and its shell rendering for ``--dry-run``.

python launcher::

    <python> [extra_args...] -m lmms_eval --model <lmms_eval_model, or vllm_holitom> --model_args <...>
        --tasks t1,t2 --batch_size 1 --log_samples --output_path <run_dir>/lmms_eval
        [--limit N] [--include_path DIR] [lmms_eval_args...]

accelerate launcher::

    <accelerate> launch --num_processes N [--num_machines M] [--main_process_port P] [extra_args...]
        -m lmms_eval <same lmms-eval arguments>
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lmms_holitom.config import ENV_VARS
from lmms_holitom.sweep.config import RunSpec, SweepConfig

__all__ = ["ORIGINAL_ENV_VARS", "Invocation", "build_invocation", "child_env", "lmms_eval_args"]

RESULTS_SUBDIR = "lmms_eval"
#: The authors' environment variables, which the plugin reads as a base config (``T``, ``K``, ``D``, ...).
#: They are removed from every run's inherited environment so that a stray ``export K=...`` in a shell
#: cannot change a sweep; set one in ``launcher.env`` to pass it on purpose.
ORIGINAL_ENV_VARS = ("WRAPPER", *ENV_VARS, "FASTV_k", "FASTV_r")


@dataclass(frozen=True)
class Invocation:
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # added to the inherited environment

    def shell(self) -> str:
        """One copy-pasteable shell line: ``KEY=value ... argv``."""
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        line = shlex.join(self.argv)
        return f"{prefix} {line}" if prefix else line


def lmms_eval_args(cfg: SweepConfig, run: RunSpec, run_dir: Path, limit: int | None = None) -> list[str]:
    """The lmms-eval arguments of one run (``limit`` overrides the study's)."""
    limit = cfg.limit if limit is None else limit
    args = [
        "--model", cfg.cli_model,
        "--model_args", run.model_args,
        "--tasks", ",".join(cfg.tasks),
        "--batch_size", "1",
        "--log_samples",
        "--output_path", str(Path(run_dir).absolute() / RESULTS_SUBDIR),
    ]
    if limit is not None:
        args += ["--limit", str(limit)]
    if cfg.include_path is not None:
        args += ["--include_path", str(cfg.include_path)]
    args += list(cfg.lmms_eval_args)
    return args


def build_invocation(cfg: SweepConfig, run: RunSpec, run_dir: Path, limit: int | None = None) -> Invocation:
    launcher = cfg.launcher
    eval_args = lmms_eval_args(cfg, run, run_dir, limit)
    if launcher.type == "accelerate":
        argv = [launcher.accelerate, "launch", "--num_processes", str(launcher.num_processes)]
        if launcher.num_machines > 1:
            argv += ["--num_machines", str(launcher.num_machines)]
        if launcher.main_process_port is not None:
            argv += ["--main_process_port", str(launcher.main_process_port)]
        argv += [*launcher.extra_args, "-m", launcher.module, *eval_args]
    else:
        argv = [launcher.python, *launcher.extra_args, "-m", launcher.module, *eval_args]
    return Invocation(tuple(argv), dict(launcher.env))


def child_env(inv: Invocation, base: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """The environment of a run: ``base`` (default ``os.environ``) without `ORIGINAL_ENV_VARS`, plus
    ``inv.env``; and the names removed."""
    base = os.environ if base is None else base
    removed = sorted(k for k in base if k in ORIGINAL_ENV_VARS and k not in inv.env)
    env = {k: v for k, v in base.items() if k not in removed}
    env.update(inv.env)
    return env, removed
