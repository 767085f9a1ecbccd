"""``backend: vllm`` in a study file: the backend key, the ``engine`` section (vLLM engine arguments) and the launcher
the vLLM runs need (one python process per run, in the vLLM environment's python). See `lmms_holitom.sweep.config`."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any

from lmms_holitom.integrations.lmms_eval.vllm_args import ENGINE_ARGS
from lmms_holitom.sweep.checks import Problems, unknown_keys
from lmms_holitom.sweep.spec import BACKENDS, DEFAULT_BACKEND, VLLM_PYTHON_ENV, LauncherSpec, format_value
from lmms_holitom.values import shown

__all__ = ["check_backend", "check_engine", "check_vllm_launcher", "vllm_python"]


def check_backend(problems: Problems, data: Mapping[str, Any]) -> str:
    """``backend``: ``transformers`` (the default) or ``vllm``."""
    backend = data.get("backend", DEFAULT_BACKEND)
    if backend not in BACKENDS:
        problems.add(f"backend must be one of {', '.join(BACKENDS)}, got {shown(backend)}")
        return DEFAULT_BACKEND
    return backend


def check_engine(problems: Problems, engine: Any, backend: str) -> dict[str, Any]:
    """``engine``: vLLM engine arguments of every run (``backend: vllm`` only), each checked by the parser
    ``vllm_holitom`` applies (`vllm_args.ENGINE_ARGS`); the values as the study gave them."""
    if engine is None:
        return {}
    if backend != "vllm":
        problems.add("engine sets vLLM engine arguments: it needs backend: vllm")
        return {}
    if not isinstance(engine, Mapping):
        problems.add(f"engine must be a mapping of vLLM engine arguments, got {shown(engine)}")
        return {}
    known = tuple(k for k in ENGINE_ARGS if k != "dtype")
    unknown_keys(problems, "engine", (k for k in engine if k != "dtype"), known)
    if "dtype" in engine:
        problems.add("engine.dtype: set dtype in the model section (it is a model key of both backends)")
    out: dict[str, Any] = {}
    for key, value in engine.items():
        if key not in known:
            continue
        if isinstance(value, Mapping):  # engine_kwargs: a JSON object
            value = json.dumps(dict(value))
        if not isinstance(value, (str, int, float, bool)) or "," in str(value):
            problems.add(f"engine.{key} must be a scalar without ',' (lmms-eval's model_args syntax), "
                         f"got {shown(value)}")
            continue
        try:
            ENGINE_ARGS[key](f"engine.{key}", format_value(value))
        except ValueError as e:
            problems.add(str(e))
            continue
        out[key] = value
    return out


def check_vllm_launcher(problems: Problems, launcher: LauncherSpec, given: Any) -> LauncherSpec:
    """``backend: vllm``: one python process per run, started with the vLLM environment's python (`vllm_python`)."""
    given = given if isinstance(given, Mapping) else {}
    if launcher.type != "python" or given.get("type", "python") != "python":
        problems.add("backend vllm: launcher.type must be python (one process per run, one engine; several GPUs: "
                     "engine.tensor_parallel_size; data parallel: several runs, e.g. --emit slurm)")
    if "python" in given and not isinstance(given["python"], str):
        return launcher  # reported by `check_launcher`
    python = vllm_python(problems, given.get("python") or None)
    return launcher if python is None else dataclasses.replace(launcher, python=python)


def vllm_python(problems: Problems, given: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The vLLM environment's python for ``backend: vllm``: ``launcher.python``, else ``$HOLITOM_VLLM_PYTHON``, else
    this python when it has vLLM; a problem when none is given or the file is not an executable."""
    environ = os.environ if environ is None else environ
    if given is not None:
        where, path = "launcher.python", given
    elif VLLM_PYTHON_ENV in environ:
        where, path = VLLM_PYTHON_ENV, environ[VLLM_PYTHON_ENV].strip()
        if not path:
            problems.add(f"{VLLM_PYTHON_ENV} is set but empty: give the vLLM environment's python "
                         "(e.g. .venv-vllm/bin/python)")
            return None
    elif importlib.util.find_spec("vllm") is not None:
        return sys.executable
    else:
        problems.add(f"backend vllm needs the vLLM environment's python: set {VLLM_PYTHON_ENV}=/path/to/bin/python "
                     "or launcher.python (this python has no vllm)")
        return None
    found = path if os.sep in path else shutil.which(path)  # a bare name is looked up on PATH, as a shell would
    if found is None or not os.path.isfile(found) or not os.access(found, os.X_OK):
        reason = ("not found on PATH" if found is None else "no such file" if not os.path.exists(found)
                  else "not an executable file")
        problems.add(f"{where}={path}: {reason} (backend vllm runs lmms-eval with the vLLM environment's python)")
        return None
    return os.path.abspath(found)


