"""Study-file vocabulary of ``holitom sweep``: the keys, the validated objects (`SweepConfig`, `RunSpec`,
`LauncherSpec`), `ConfigError`, and how values and run names are written (see `lmms_holitom.sweep.config`)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.integrations.lmms_eval.plugin import MODEL_ID
from lmms_holitom.integrations.lmms_eval.vllm_families import FAMILIES as VLLM_FAMILIES
from lmms_holitom.methods import METHODS as METHOD_REGISTRY

TOP_KEYS = ("name", "description", "backend", "lmms_eval_model", "model", "engine", "tasks", "launcher", "limit",
            "include_path", "lmms_eval_args", "runs")
#: model_args keys of the ``model`` section (``extra`` holds anything else, passed verbatim).
MODEL_KEYS = ("pretrained", "max_frames_num", "max_num_frames", "min_pixels", "max_pixels", "fps", "dtype",
              "attn_implementation", "conv_template", "device_map", "device", "video_decode_backend",
              "on_video_error", "max_new_tokens", "extra")
#: The lmms-eval models a study may run (``lmms_eval_model``) -> the model keys that model does not take.
_QWEN_ONLY = ("max_num_frames", "min_pixels", "max_pixels", "fps")
_LLAVA_ONLY = ("max_frames_num", "conv_template", "video_decode_backend")
LMMS_EVAL_MODELS: dict[str, tuple[str, ...]] = {
    MODEL_ID: _QWEN_ONLY,  # llava_onevision_holitom
    "qwen2_5_vl_holitom": _LLAVA_ONLY,
    "qwen3_vl_holitom": _LLAVA_ONLY,
    "qwen3_5_holitom": _LLAVA_ONLY,
}
DEFAULT_LMMS_EVAL_MODEL = MODEL_ID
#: ``backend``: where the model runs. ``vllm`` runs every run through ``vllm_holitom`` (`VLLM_MODEL_ID`), which serves
#: the families of `VLLM_LMMS_EVAL_MODELS` with their model keys, in the vLLM environment's python
BACKENDS = ("transformers", "vllm")
DEFAULT_BACKEND = "transformers"
VLLM_MODEL_ID = "vllm_holitom"
#: the families ``vllm_holitom`` serves, named by their transformers lmms-eval model (whose model keys they take)
VLLM_LMMS_EVAL_MODELS = tuple(dict.fromkeys(family.lmms_eval_model for family in VLLM_FAMILIES.values()))
#: model keys of the transformers models only (vLLM places and runs the model itself)
TRANSFORMERS_ONLY_KEYS = ("attn_implementation", "device_map")
#: where ``backend: vllm`` finds the vLLM environment's python when ``launcher.python`` is not set
VLLM_PYTHON_ENV = "HOLITOM_VLLM_PYTHON"
#: model keys a run or grid may override.
RUN_MODEL_KEYS = tuple(k for k in MODEL_KEYS if k != "extra")
LAUNCHER_KEYS = ("type", "num_processes", "num_machines", "main_process_port", "extra_args", "env", "module",
                 "python", "accelerate")
LAUNCHER_TYPES = ("python", "accelerate")
DTYPES = ("auto", "bfloat16", "float16", "float32")
HOLITOM_KEYS = HoliTomConfig.field_names()
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

#: HoliTomConfig fields each method does not read (dropped from its model_args and name): `Method.reads`.
IRRELEVANT: dict[str, frozenset[str]] = {
    name: frozenset(set(HOLITOM_KEYS) - {"method"} - spec.reads) for name, spec in METHOD_REGISTRY.items()
}
#: The settings every run of a method passes explicitly (resolved defaults included) and names itself by.
HEADLINE: dict[str, tuple[str, ...]] = {name: spec.headline for name, spec in METHOD_REGISTRY.items()}
_ABBREV = {
    "retain_ratio": "r", "tau": "t", "merge_layer": "k", "merge_ratio": "m", "beta": "b",
    "contextual_ratio": "d", "knn_k": "knn", "max_window_size": "w", "spatial_tokens": "s",
    "dominant_ratio": "dr", "max_frames_num": "f", "max_num_frames": "f",
}


#: runs one study may expand to (all grid blocks together). Each run is a full lmms-eval evaluation, hours on a GPU:
#: ten thousand is beyond any study (the paper's table is 17), and a grid past it is a mistake (7 axes of 10 values
#: via YAML anchors are ten million runs, which would exhaust memory before anything is said); split such a study.
MAX_RUNS = 10_000
#: size of a study file: a study is a few KB of YAML
MAX_STUDY_BYTES = 1 << 20
#: values (mappings, lists and scalars) a study file may hold with its YAML aliases expanded: a study holds a few
#: hundred; a "billion laughs" file of nested aliases holds billions in a few lines
MAX_STUDY_VALUES = 100_000
#: characters of one problem line (values echoed in messages are cut shorter still, `lmms_holitom.values.shown`)
MAX_PROBLEM_CHARS = 500
#: problem lines a message lists (the count says how many there are)
MAX_PROBLEMS_SHOWN = 50


def _cut(problem: str) -> str:
    problem = " ".join(str(problem).split())
    return problem if len(problem) <= MAX_PROBLEM_CHARS else f"{problem[:MAX_PROBLEM_CHARS]}... (cut)"


class ConfigError(ValueError):
    """A study file with problems; ``problems`` lists them, the message has one line per problem (each at most
    `MAX_PROBLEM_CHARS` characters)."""

    def __init__(self, source: str, problems: Iterable[str]):
        self.source = source
        self.problems = list(dict.fromkeys(_cut(p) for p in problems))  # de-duplicated, in order
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN])
        if n > MAX_PROBLEMS_SHOWN:
            lines += f"\n  ... and {n - MAX_PROBLEMS_SHOWN} more"
        super().__init__(f"{source}: {n} problem{'s' if n != 1 else ''}:\n{lines}")

    def one_line(self) -> str | None:
        """``<file>: <problem>`` when there is exactly one problem (else None: the message lists them)."""
        return f"{self.source}: {self.problems[0]}" if len(self.problems) == 1 else None


@dataclass(frozen=True)
class LauncherSpec:
    """How one lmms-eval run is started."""

    type: str = "python"
    num_processes: int = 1
    num_machines: int = 1
    main_process_port: int | None = None
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    module: str = "lmms_eval"  # the ``-m`` target; tests point it at a fake
    python: str = field(default_factory=lambda: sys.executable)
    accelerate: str = field(default_factory=lambda: _default_accelerate())


def _default_accelerate() -> str:
    sibling = Path(sys.executable).with_name("accelerate")
    return str(sibling) if sibling.exists() else "accelerate"


@dataclass(frozen=True)
class RunSpec:
    """One expanded run: a method setting and the model arguments it is evaluated with."""

    name: str
    holitom: HoliTomConfig
    params: Mapping[str, Any]  # HoliTom model_args of this run (method first), irrelevant keys dropped
    model: Mapping[str, Any]  # model_args shared by the study, with this run's overrides applied
    overrides: Mapping[str, Any] = field(default_factory=dict)  # model keys this run overrides
    source: str = ""

    @property
    def method(self) -> str:
        return self.holitom.method

    def model_args_dict(self) -> dict[str, Any]:
        """Everything passed as lmms-eval ``--model_args``, in order (model keys, then HoliTom keys)."""
        out: dict[str, Any] = {}
        for key, value in self.model.items():
            if key in ("extra", "engine"):
                out.update(value or {})
            elif value is not None:
                out[key] = value
        out.update(self.params)
        return out

    @property
    def model_args(self) -> str:
        return ",".join(f"{k}={format_value(v)}" for k, v in self.model_args_dict().items())


@dataclass(frozen=True)
class SweepConfig:
    """A validated study file."""

    name: str
    path: Path | None
    model: Mapping[str, Any]
    tasks: tuple[str, ...]
    launcher: LauncherSpec
    runs: tuple[RunSpec, ...]
    lmms_eval_model: str = DEFAULT_LMMS_EVAL_MODEL  # the family's lmms-eval model (its model keys)
    backend: str = DEFAULT_BACKEND
    limit: int | None = None
    include_path: Path | None = None
    lmms_eval_args: tuple[str, ...] = ()
    description: str = ""
    notices: tuple[str, ...] = ()  # not errors, said before anything runs (e.g. remote-scored tasks)

    @property
    def cli_model(self) -> str:
        """lmms-eval's ``--model``: the family's model, or ``vllm_holitom`` with ``backend: vllm``."""
        return VLLM_MODEL_ID if self.backend == "vllm" else self.lmms_eval_model

    def run(self, name: str) -> RunSpec:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------- formatting
def format_value(value: Any) -> str:
    """A model_args value as lmms-eval parses it back (``true``/``false``, shortest float repr)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _fmt_name_value(key: str, value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if key in ("retain_ratio", "tau") and round(value, 2) == value:
            return f"{value:.2f}"
        return f"{value:g}"
    return str(value)


def run_name(cfg: HoliTomConfig, extra: Mapping[str, Any]) -> str:
    """``<method>-<headline settings>[-<other keys set by the run>]``, e.g. ``holitom-r0.10-t0.65-k18-m0.5``."""
    parts = [cfg.method]
    for key in HEADLINE[cfg.method]:
        parts.append(_ABBREV[key] + _fmt_name_value(key, getattr(cfg, key)))
    for key, value in extra.items():
        if key in HEADLINE[cfg.method] or key == "method":
            continue
        if key == "fidelity":
            parts.append(str(value))
        elif key == "beta_merge":
            parts.append("betamerge" if value else "nobeta")
        elif key == "budget":  # named only when it changes something
            parts += [str(value)] if value != "adaptive" else []
        else:
            parts.append(_ABBREV.get(key, key) + _fmt_name_value(key, value))
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join(parts))
