"""The study YAML of ``holitom sweep``: schema, validation and grid expansion.

A study file (see ``configs/*.yaml``)::

    name: ov7b_paper                       # names the output folder runs/<name>
    description: free text                 # optional
    backend: transformers                  # optional (default); or vllm (see below)
    lmms_eval_model: llava_onevision_holitom   # optional (default); or qwen{2_5_vl,3_vl,3_5}_holitom
    model:                                 # lmms-eval model_args shared by every run
      pretrained: llava-hf/llava-onevision-qwen2-7b-ov-hf
      max_frames_num: 32
      dtype: bfloat16
      attn_implementation: sdpa
      conv_template: qwen_1_5
      extra: {key: value}                  # any other model_args, passed verbatim
    # Qwen-VL models count frames with max_num_frames (lmms-eval's qwen2_5_vl / qwen3_vl name) instead of
    # max_frames_num and take min_pixels / max_pixels / fps; conv_template is LLaVA-OneVision's only.
    tasks: [mvbench, egoschema_subset, longvideobench_val_v, videomme]
    launcher:
      type: accelerate                     # or python
      num_processes: 8
      main_process_port: 25000
      env: {HF_HUB_OFFLINE: "1"}
    limit: 10                              # optional, per task
    include_path: task_overrides           # optional, extra lmms-eval task folder
    lmms_eval_args: [--verbosity, INFO]    # optional extra lmms-eval arguments
    runs:
      - name: my-run                       # explicit run (name optional: generated)
        method: holitom
        retain_ratio: 0.15
      - grid:                              # cartesian product over lists; scalars are fixed
          method: [holitom, holitom_wo_m]
          merge_layer: 18
          zip:                             # these lists are paired element-wise, not crossed
            retain_ratio: [0.10, 0.15]
            tau: [0.65, 0.80]

``backend: vllm`` runs every run through lmms-eval's ``--model vllm_holitom`` (an in-process vLLM engine with the
HoliTom plugin) for the family named by ``lmms_eval_model`` (one ``vllm_holitom`` serves, `VLLM_LMMS_EVAL_MODELS`),
with that family's model keys (not ``attn_implementation`` / ``device_map``); an optional ``engine`` section holds
vLLM engine arguments for every run (``tensor_parallel_size``, ``max_model_len``, ``gpu_memory_utilization``, ...,
checked as ``vllm_holitom`` checks them). Each run is one process (``launcher.type: python``; no accelerate: more
GPUs per run is ``tensor_parallel_size``, data parallel is several runs, e.g. ``--emit slurm``) started with the vLLM
environment's python: ``launcher.python``, else ``$HOLITOM_VLLM_PYTHON``, else this python when it has vLLM; a
missing file is one problem line.

Run keys are `HoliTomConfig` fields and the per-run model keys (e.g. ``max_frames_num``). Keys a method
does not read are dropped from its model_args and name (e.g. ``tau`` for ``visionzip``), so a grid over
methods stays clean; generated names list the method's headline settings
(``holitom-r0.10-t0.65-k18-m0.5``) plus any other key the run sets. A dense baseline named ``dense`` is
added when no run uses ``method: dense``.

Every problem found (unknown keys, bad values with the parameter and its range, duplicate names, unknown
tasks) is collected and raised as one `ConfigError`, one line per problem.

This module holds the entry points (`parse_config`, `load_config`); `spec` the keys and the validated objects,
`checks` the section checks, `expand` the run expansion.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from lmms_holitom.sweep.backend import check_backend, check_engine, check_vllm_launcher
from lmms_holitom.sweep.checks import (
    Problems,
    check_int,
    check_launcher,
    check_lmms_eval_model,
    check_model,
    check_task_list,
    load_yaml,
    resolve_include_path,
    unknown_keys,
)
from lmms_holitom.sweep.expand import expand_runs
from lmms_holitom.sweep.scoring import remote_scoring_notice
from lmms_holitom.sweep.spec import (
    MAX_STUDY_BYTES,
    MODEL_KEYS,
    NAME_RE,
    RUN_MODEL_KEYS,
    TOP_KEYS,
    ConfigError,
    LauncherSpec,
    RunSpec,
    SweepConfig,
)
from lmms_holitom.values import MAX_SAMPLES, shown

__all__ = [
    "ConfigError",
    "LauncherSpec",
    "RunSpec",
    "SweepConfig",
    "load_config",
    "parse_config",
    "MODEL_KEYS",
    "RUN_MODEL_KEYS",
]

# ---------------------------------------------------------------------------------------------- entry points
TaskChecker = Callable[[tuple[str, ...], Path | None], list[str]]


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    path: Path | None = None,
    check_tasks: TaskChecker | None = None,
    extra_problems: Iterable[str] = (),
) -> SweepConfig:
    """Validate a loaded study mapping; raise `ConfigError` listing every problem."""
    problems = Problems(extra_problems)
    if not isinstance(data, Mapping):
        raise ConfigError(source, [*problems, f"the study file must be a mapping, got {type(data).__name__}"])
    unknown_keys(problems, "top level", data, TOP_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.add(f"name is required and must match {NAME_RE.pattern} (it names the output folder), "
                     f"got {shown(name)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.add("description must be a string")
        description = ""
    backend = check_backend(problems, data)
    model = check_model(problems, data.get("model"))
    lmms_eval_model = check_lmms_eval_model(problems, data, backend)
    engine = check_engine(problems, data.get("engine"), backend)
    if engine:
        model["engine"] = engine
    tasks = check_task_list(problems, data.get("tasks"))
    launcher = check_launcher(problems, data.get("launcher"))
    if backend == "vllm":
        launcher = check_vllm_launcher(problems, launcher, data.get("launcher"))
    limit = data.get("limit")
    if limit is not None:
        limit = check_int(problems, "limit", limit, 1, MAX_SAMPLES)
    include_path = None
    if data.get("include_path") is not None:
        raw = data["include_path"]
        if not isinstance(raw, str):
            problems.add(f"include_path must be a folder path, got {shown(raw)}")
        else:
            include_path = resolve_include_path(raw, path.parent if path else None)
            if include_path is None:
                problems.add(f"include_path {raw!r} not found (looked next to the study file, in its parent, "
                             "and in the current directory)")
    eval_args = data.get("lmms_eval_args", [])
    if not isinstance(eval_args, list) or not all(isinstance(a, (str, int, float)) for a in eval_args):
        problems.add(f"lmms_eval_args must be a list of strings, got {shown(eval_args)}")
        eval_args = []
    managed = {"--model", "--model_args", "--tasks", "--output_path", "--limit", "--include_path"}
    for a in eval_args:
        if str(a).split("=", 1)[0] in managed:
            problems.add(f"lmms_eval_args: {a!r} is set by the sweep itself")
    runs = expand_runs(problems, data.get("runs"), model)
    if check_tasks is not None and tasks:
        problems.extend(check_tasks(tasks, include_path))
    if problems:
        raise ConfigError(source, problems)
    return SweepConfig(
        name=name,
        path=path,
        model=model,
        tasks=tasks,
        launcher=launcher,
        runs=runs,
        lmms_eval_model=lmms_eval_model,
        backend=backend,
        limit=limit,
        include_path=include_path,
        lmms_eval_args=tuple(str(a) for a in eval_args),
        description=description,
        notices=tuple(n for n in (remote_scoring_notice(tasks),) if n),
    )


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_study_text(path: Path) -> str:
    """The text of a study file; `ConfigError` naming the file unless it is a regular UTF-8 file of at most
    `MAX_STUDY_BYTES` (a FIFO or a device is refused before it is read, so it cannot hang or stream forever)."""
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: opening a FIFO must not wait for a writer
    except OSError as e:
        raise ConfigError(source, [f"cannot read: {e.strerror or e}"]) from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise ConfigError(source, [f"is {kind}, not a regular file: give the path of a YAML study file"])
        data = f.read(MAX_STUDY_BYTES + 1)
    if len(data) > MAX_STUDY_BYTES:
        raise ConfigError(source, [f"is larger than {MAX_STUDY_BYTES} bytes; a study file is a few KB of YAML"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(source, [f"is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} (line {line}) "
                                   f"is {e.reason}; save the file as UTF-8"]) from None


def load_config(path: str | Path, *, check_tasks: TaskChecker | None = None) -> SweepConfig:
    """Read and validate a study file (``check_tasks``: e.g. `lmms_holitom.sweep.tasks.check_tasks`)."""
    path = Path(path)
    source = str(path)
    data, duplicates = load_yaml(read_study_text(path), source)
    return parse_config(data, source=source, path=path.resolve(), check_tasks=check_tasks,
                        extra_problems=duplicates)
