"""The study YAML of ``holitom sweep``: schema, validation and grid expansion.

A study file (see ``configs/*.yaml``)::

    name: ov7b_paper                       # names the output folder runs/<name>
    description: free text                 # optional
    lmms_eval_model: llava_onevision_holitom   # optional (default); or qwen2_5_vl_holitom, qwen3_vl_holitom
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

Run keys are `HoliTomConfig` fields and the per-run model keys (e.g. ``max_frames_num``). Keys a method
does not read are dropped from its model_args and name (e.g. ``tau`` for ``visionzip``), so a grid over
methods stays clean; generated names list the method's headline settings
(``holitom-r0.10-t0.65-k18-m0.5``) plus any other key the run sets. A dense baseline named ``dense`` is
added when no run uses ``method: dense``.

Every problem found (unknown keys, bad values with the parameter and its range, duplicate names, unknown
tasks) is collected and raised as one `ConfigError`, one line per problem.
"""

from __future__ import annotations

import difflib
import itertools
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.lmms_eval_plugin import MODEL_ID
from lmms_holitom.sweep.scoring import remote_scoring_notice

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

TOP_KEYS = ("name", "description", "lmms_eval_model", "model", "tasks", "launcher", "limit", "include_path",
            "lmms_eval_args", "runs")
#: model_args keys of the ``model`` section (``extra`` holds anything else, passed verbatim).
MODEL_KEYS = ("pretrained", "max_frames_num", "max_num_frames", "min_pixels", "max_pixels", "fps", "dtype",
              "attn_implementation", "conv_template", "device_map", "device", "video_decode_backend",
              "on_video_error", "max_new_tokens", "extra")
#: The lmms-eval models a study may run (``lmms_eval_model``) -> the model keys that model does not take.
_QWEN_ONLY = ("max_num_frames", "min_pixels", "max_pixels", "fps")
_LLAVA_ONLY = ("max_frames_num", "conv_template")
LMMS_EVAL_MODELS: dict[str, tuple[str, ...]] = {
    MODEL_ID: _QWEN_ONLY,  # llava_onevision_holitom
    "qwen2_5_vl_holitom": _LLAVA_ONLY,
    "qwen3_vl_holitom": _LLAVA_ONLY,
}
DEFAULT_LMMS_EVAL_MODEL = MODEL_ID
#: model keys a run or grid may override.
RUN_MODEL_KEYS = tuple(k for k in MODEL_KEYS if k != "extra")
LAUNCHER_KEYS = ("type", "num_processes", "num_machines", "main_process_port", "extra_args", "env", "module",
                 "python", "accelerate")
LAUNCHER_TYPES = ("python", "accelerate")
DTYPES = ("auto", "bfloat16", "float16", "float32")
HOLITOM_KEYS = HoliTomConfig.field_names()
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

#: HoliTomConfig fields each method does not read (dropped from its model_args and name).
_HEADLINE = ("retain_ratio", "tau", "merge_layer", "merge_ratio")
_OUTER = ("beta", "contextual_ratio", "knn_k", "max_window_size", "beta_merge")
_VZ = ("spatial_tokens", "dominant_ratio")
IRRELEVANT: dict[str, frozenset[str]] = {
    "dense": frozenset(set(HOLITOM_KEYS) - {"method"}),
    "holitom": frozenset(_VZ),
    "holitom_wo_m": frozenset(("merge_layer", "merge_ratio", *_VZ)),
    "visionzip": frozenset(("tau", "merge_layer", "merge_ratio", *_OUTER)),
    "fastv": frozenset(("retain_ratio", "tau", *_OUTER, *_VZ)),
}
#: The settings every run of a method passes explicitly (resolved defaults included) and names itself by.
HEADLINE: dict[str, tuple[str, ...]] = {
    "dense": (),
    "holitom": _HEADLINE,
    "holitom_wo_m": ("retain_ratio", "tau"),
    "visionzip": ("retain_ratio",),
    "fastv": ("merge_layer", "merge_ratio"),
}
_ABBREV = {
    "retain_ratio": "r", "tau": "t", "merge_layer": "k", "merge_ratio": "m", "beta": "b",
    "contextual_ratio": "d", "knn_k": "knn", "max_window_size": "w", "spatial_tokens": "s",
    "dominant_ratio": "dr", "max_frames_num": "f", "max_num_frames": "f",
}


class ConfigError(ValueError):
    """A study file with problems; ``problems`` lists them, the message has one line per problem."""

    def __init__(self, source: str, problems: Iterable[str]):
        self.source = source
        self.problems = list(dict.fromkeys(problems))  # de-duplicated, in order
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {n} problem{'s' if n != 1 else ''}:\n{lines}")


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
            if key == "extra":
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
    lmms_eval_model: str = DEFAULT_LMMS_EVAL_MODEL  # lmms-eval's --model
    limit: int | None = None
    include_path: Path | None = None
    lmms_eval_args: tuple[str, ...] = ()
    description: str = ""
    notices: tuple[str, ...] = ()  # not errors, said before anything runs (e.g. remote-scored tasks)

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
        else:
            parts.append(_ABBREV.get(key, key) + _fmt_name_value(key, value))
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join(parts))


# ---------------------------------------------------------------------------------------------- YAML
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys instead of silently keeping the last one."""

    duplicates: list[str]


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            loader.duplicates.append(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str, source: str) -> tuple[Any, list[str]]:
    loader = _UniqueKeyLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        raise ConfigError(source, [f"not valid YAML: {e}"]) from None
    finally:
        loader.dispose()
    return data, loader.duplicates


# ---------------------------------------------------------------------------------------------- validation
class _Problems(list):
    def add(self, msg: str) -> None:
        self.append(msg)


def _check_int(problems: _Problems, where: str, value: Any, lo: int, hi: int | None = None) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    if not ok:
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        problems.add(f"{where} must be an integer {rng}, got {value!r}")
        return None
    return value


def _suggest(key: Any, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _unknown(problems: _Problems, where: str, keys: Iterable[Any], known: Iterable[str]) -> None:
    known = tuple(known)
    for key in keys:
        if key not in known:
            problems.add(f"{where}: unknown key {key!r} ({_suggest(key, known)}valid: {', '.join(known)})")


def _check_model(problems: _Problems, model: Any) -> dict[str, Any]:
    if not isinstance(model, Mapping):
        problems.add(f"model must be a mapping with at least 'pretrained', got {model!r}")
        return {}
    _unknown(problems, "model", model, MODEL_KEYS)
    out: dict[str, Any] = {k: model[k] for k in MODEL_KEYS if k in model}
    if not isinstance(out.get("pretrained"), str) or not out.get("pretrained"):
        problems.add("model.pretrained is required (a hub id, a local folder, or 'tiny')")
    _check_model_values(problems, "model", out)
    extra = out.get("extra")
    if extra is not None:
        if not isinstance(extra, Mapping):
            problems.add(f"model.extra must be a mapping of model_args, got {extra!r}")
            out["extra"] = {}
        else:
            for key, value in extra.items():
                if key in MODEL_KEYS or key in HOLITOM_KEYS:
                    problems.add(f"model.extra.{key}: set {key!r} as a model or run key, not in extra")
                if not isinstance(value, (str, int, float, bool)):
                    problems.add(f"model.extra.{key} must be a scalar, got {value!r}")
                elif isinstance(value, str) and ("," in value or "=" in value):
                    problems.add(f"model.extra.{key} must not contain ',' or '=' (model_args syntax), got {value!r}")
    return out


def _check_model_values(problems: _Problems, where: str, values: Mapping[str, Any]) -> None:
    for key in ("max_frames_num", "max_num_frames", "min_pixels", "max_pixels", "max_new_tokens"):
        if key in values:
            _check_int(problems, f"{where}.{key}", values[key], 1)
    fps = values.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        problems.add(f"{where}.fps must be a number > 0, got {fps!r}")
    if "dtype" in values and values["dtype"] not in DTYPES:
        problems.add(f"{where}.dtype must be one of {', '.join(DTYPES)}, got {values['dtype']!r}")
    for key in ("pretrained", "attn_implementation", "conv_template", "device_map", "device", "video_decode_backend",
                "on_video_error"):
        value = values.get(key)
        if value is not None and (not isinstance(value, str) or "," in value):
            problems.add(f"{where}.{key} must be a string without ',', got {value!r}")


def _check_lmms_eval_model(problems: _Problems, data: Mapping[str, Any]) -> str:
    """The study's lmms-eval model, and a problem for each model key (of ``model`` or a run) it does not take."""
    name = data.get("lmms_eval_model", DEFAULT_LMMS_EVAL_MODEL)
    if name not in LMMS_EVAL_MODELS:
        problems.add(f"lmms_eval_model must be one of {', '.join(LMMS_EVAL_MODELS)}, got {name!r}")
        return DEFAULT_LMMS_EVAL_MODEL
    foreign = LMMS_EVAL_MODELS[name]
    model = data.get("model") if isinstance(data.get("model"), Mapping) else {}
    places = [("model", model)]
    runs = data.get("runs") if isinstance(data.get("runs"), list) else []
    for i, entry in enumerate(runs):
        if isinstance(entry, Mapping):
            grid = entry.get("grid") if isinstance(entry.get("grid"), Mapping) else None
            places.append((f"runs[{i}]", grid if grid is not None else entry))
    for where, mapping in places:
        for key in mapping:
            if key in foreign:
                problems.add(f"{where}.{key} is not a model arg of {name} (its model keys: "
                             f"{', '.join(k for k in RUN_MODEL_KEYS if k not in foreign)})")
    return name


def _check_launcher(problems: _Problems, launcher: Any) -> LauncherSpec:
    if launcher is None:
        return LauncherSpec()
    if not isinstance(launcher, Mapping):
        problems.add(f"launcher must be a mapping, got {launcher!r}")
        return LauncherSpec()
    _unknown(problems, "launcher", launcher, LAUNCHER_KEYS)
    kwargs: dict[str, Any] = {}
    kind = launcher.get("type", "python")
    if kind not in LAUNCHER_TYPES:
        problems.add(f"launcher.type must be one of {', '.join(LAUNCHER_TYPES)}, got {kind!r}")
    else:
        kwargs["type"] = kind
    for key, lo, hi in (("num_processes", 1, None), ("num_machines", 1, None), ("main_process_port", 1, 65535)):
        if launcher.get(key) is not None:
            value = _check_int(problems, f"launcher.{key}", launcher[key], lo, hi)
            if value is not None:
                kwargs[key] = value
    if kind == "python" and launcher.get("num_processes", 1) != 1:
        problems.add("launcher.num_processes > 1 needs launcher.type: accelerate")
    extra = launcher.get("extra_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, (str, int, float)) for a in extra):
        problems.add(f"launcher.extra_args must be a list of strings, got {extra!r}")
    else:
        kwargs["extra_args"] = tuple(str(a) for a in extra)
    env = launcher.get("env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) and isinstance(v, (str, int, float, bool))
        for k, v in env.items()
    ):
        problems.add(f"launcher.env must map variable names to scalar values, got {env!r}")
    else:
        kwargs["env"] = {k: format_value(v) if not isinstance(v, str) else v for k, v in env.items()}
    for key in ("module", "python", "accelerate"):
        if key in launcher:
            if not isinstance(launcher[key], str) or not launcher[key]:
                problems.add(f"launcher.{key} must be a non-empty string, got {launcher[key]!r}")
            else:
                kwargs[key] = launcher[key]
    return LauncherSpec(**kwargs)


def _check_tasks(problems: _Problems, tasks: Any) -> tuple[str, ...]:
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t for t in tasks):
        problems.add(f"tasks must be a non-empty list of lmms-eval task names, got {tasks!r}")
        return ()
    seen = []
    for t in tasks:
        if t in seen:
            problems.add(f"tasks: {t!r} listed twice")
        else:
            seen.append(t)
    return tuple(seen)


def resolve_include_path(value: str, config_dir: Path | None) -> Path | None:
    """A relative include path is looked up next to the study file, in its parent folder, then the cwd."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p if p.is_dir() else None
    candidates = [config_dir / p, config_dir.parent / p] if config_dir else []
    candidates.append(Path.cwd() / p)
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


# ---------------------------------------------------------------------------------------------- expansion
@dataclass
class _Point:
    values: dict[str, Any]
    where: str
    explicit_name: str | None
    from_grid: bool


def _grid_points(problems: _Problems, entry: Mapping[str, Any], where: str) -> list[_Point]:
    grid = entry["grid"]
    _unknown(problems, where, (k for k in entry if k != "grid"), ("grid",))
    if not isinstance(grid, Mapping) or not grid:
        problems.add(f"{where}.grid must be a non-empty mapping of key -> value or list of values")
        return []
    axes: list[tuple[tuple[str, ...], list[tuple[Any, ...]]]] = []
    if "name" in grid:
        problems.add(f"{where}.grid: 'name' cannot be set in a grid (each point's name is generated)")
        return []
    for key, value in grid.items():
        if key == "zip":
            groups = value if isinstance(value, list) else [value]
            for gi, group in enumerate(groups):
                gwhere = f"{where}.grid.zip" + (f"[{gi}]" if isinstance(value, list) else "")
                if not isinstance(group, Mapping) or not group:
                    problems.add(f"{gwhere} must be a mapping of key -> list (paired element-wise)")
                    continue
                lists = {k: v if isinstance(v, list) else [v] for k, v in group.items()}
                lengths = {k: len(v) for k, v in lists.items()}
                if len(set(lengths.values())) > 1:
                    problems.add(f"{gwhere}: lists must have equal lengths, got "
                                 + ", ".join(f"{k}={n}" for k, n in lengths.items()))
                    continue
                if 0 in lengths.values():
                    problems.add(f"{gwhere}: empty list")
                    continue
                axes.append((tuple(lists), list(zip(*lists.values()))))
        else:
            values = value if isinstance(value, list) else [value]
            if not values:
                problems.add(f"{where}.grid.{key}: empty list")
                continue
            axes.append(((key,), [(v,) for v in values]))
    keys = [k for ks, _ in axes for k in ks]
    for k in sorted({k for k in keys if keys.count(k) > 1}):
        problems.add(f"{where}.grid: key {k!r} given more than once (in the grid and/or in zip)")
    if any(keys.count(k) > 1 for k in keys):
        return []
    points = []
    for combo in itertools.product(*(vals for _, vals in axes)):
        values: dict[str, Any] = {}
        for (ks, _), vals in zip(axes, combo):
            values.update(zip(ks, vals))
        points.append(_Point(values, f"{where} (grid)", None, True))
    return points


def _entry_points(problems: _Problems, runs: Any) -> list[_Point]:
    if runs is None:
        return []
    if not isinstance(runs, list):
        problems.add(f"runs must be a list of runs and/or grid blocks, got {runs!r}")
        return []
    points: list[_Point] = []
    for i, entry in enumerate(runs):
        where = f"runs[{i}]"
        if not isinstance(entry, Mapping):
            problems.add(f"{where} must be a mapping (a run or a grid block), got {entry!r}")
        elif "grid" in entry:
            points.extend(_grid_points(problems, entry, where))
        else:
            name = entry.get("name")
            if name is not None and not isinstance(name, str):
                problems.add(f"{where}.name must be a string, got {name!r}")
                name = str(name)
            values = {k: v for k, v in entry.items() if k != "name"}
            points.append(_Point(values, f"{where}" + (f" {name!r}" if name else ""), name, False))
    return points


def _build_run(problems: _Problems, point: _Point, model: Mapping[str, Any]) -> RunSpec | None:
    values = point.values
    known = ("name", *HOLITOM_KEYS, *RUN_MODEL_KEYS)
    bad = [k for k in values if k not in known]
    for key in bad:
        problems.add(f"{point.where}: unknown key {key!r} ({_suggest(key, known)}valid: HoliTomConfig fields "
                     f"{', '.join(HOLITOM_KEYS)}; model keys {', '.join(RUN_MODEL_KEYS)})")
    if bad:
        return None
    holitom_values = {k: v for k, v in values.items() if k in HOLITOM_KEYS}
    overrides = {k: v for k, v in values.items() if k in RUN_MODEL_KEYS}
    before = len(problems)
    _check_model_values(problems, point.where, overrides)
    for problem in HoliTomConfig.problems(holitom_values):  # every bad value, not only the first
        problems.add(f"{point.where}: {problem}")
    if len(problems) > before:
        return None
    cfg = HoliTomConfig.from_dict(holitom_values)
    dropped = IRRELEVANT[cfg.method]
    params: dict[str, Any] = {"method": cfg.method}
    for key in HEADLINE[cfg.method]:
        params[key] = getattr(cfg, key)
    for key in HOLITOM_KEYS:  # other keys the run sets explicitly, in field order, canonicalised
        if key in holitom_values and key not in dropped and key not in params:
            params[key] = getattr(cfg, key)
    params = {k: v for k, v in params.items() if v is not None}
    name_extra = {k: params[k] for k in params if k in holitom_values}
    name_extra.update(overrides)
    name = point.explicit_name or run_name(cfg, name_extra)
    if not _NAME_RE.match(name):
        problems.add(f"{point.where}: run name {name!r} must match {_NAME_RE.pattern} (it names a folder)")
        return None
    effective = {**model, **overrides}
    return RunSpec(name, cfg, params, effective, overrides, point.where)


def _expand_runs(problems: _Problems, runs_value: Any, model: Mapping[str, Any]) -> tuple[RunSpec, ...]:
    points = _entry_points(problems, runs_value)
    runs: list[RunSpec] = []
    origin: dict[str, tuple[RunSpec, _Point]] = {}
    explicit: dict[str, str] = {}
    for point in points:
        if point.explicit_name is not None:  # checked even when the run itself is invalid
            if point.explicit_name in explicit:
                problems.add(f"duplicate run name {point.explicit_name!r} "
                             f"({explicit[point.explicit_name]} and {point.where})")
            else:
                explicit[point.explicit_name] = point.where
    for point in points:
        run = _build_run(problems, point, model)
        if run is None:
            continue
        if point.explicit_name is not None and explicit.get(run.name) != point.where:
            continue  # a duplicate explicit name, reported above
        if run.name in origin:
            prev, prev_point = origin[run.name]
            same = prev.model_args == run.model_args
            if same and point.from_grid and prev_point.from_grid:
                continue  # the same setting reached twice by grids: run it once
            problems.add(f"duplicate run name {run.name!r} ({prev_point.where} and {point.where})")
            continue
        origin[run.name] = (run, point)
        runs.append(run)
    if not any(r.method == "dense" for r in runs) and model:
        if "dense" in origin:
            problems.add(f"{origin['dense'][1].where}: the name 'dense' is reserved for the dense baseline")
        else:
            cfg = HoliTomConfig(method="dense")
            runs.insert(0, RunSpec("dense", cfg, {"method": "dense"}, dict(model), {}, "auto (dense baseline)"))
    return tuple(runs)


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
    problems = _Problems(extra_problems)
    if not isinstance(data, Mapping):
        raise ConfigError(source, [*problems, f"the study file must be a mapping, got {type(data).__name__}"])
    _unknown(problems, "top level", data, TOP_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        problems.add(f"name is required and must match {_NAME_RE.pattern} (it names the output folder), got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.add("description must be a string")
        description = ""
    model = _check_model(problems, data.get("model"))
    lmms_eval_model = _check_lmms_eval_model(problems, data)
    tasks = _check_tasks(problems, data.get("tasks"))
    launcher = _check_launcher(problems, data.get("launcher"))
    limit = data.get("limit")
    if limit is not None:
        limit = _check_int(problems, "limit", limit, 1)
    include_path = None
    if data.get("include_path") is not None:
        raw = data["include_path"]
        if not isinstance(raw, str):
            problems.add(f"include_path must be a folder path, got {raw!r}")
        else:
            include_path = resolve_include_path(raw, path.parent if path else None)
            if include_path is None:
                problems.add(f"include_path {raw!r} not found (looked next to the study file, in its parent, "
                             "and in the current directory)")
    eval_args = data.get("lmms_eval_args", [])
    if not isinstance(eval_args, list) or not all(isinstance(a, (str, int, float)) for a in eval_args):
        problems.add(f"lmms_eval_args must be a list of strings, got {eval_args!r}")
        eval_args = []
    managed = {"--model", "--model_args", "--tasks", "--output_path", "--limit", "--include_path"}
    for a in eval_args:
        if str(a).split("=", 1)[0] in managed:
            problems.add(f"lmms_eval_args: {a!r} is set by the sweep itself")
    runs = _expand_runs(problems, data.get("runs"), model)
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
        limit=limit,
        include_path=include_path,
        lmms_eval_args=tuple(str(a) for a in eval_args),
        description=description,
        notices=tuple(n for n in (remote_scoring_notice(tasks),) if n),
    )


def load_config(path: str | Path, *, check_tasks: TaskChecker | None = None) -> SweepConfig:
    """Read and validate a study file (``check_tasks``: e.g. `lmms_holitom.sweep.tasks.check_tasks`)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(source, [f"cannot read: {e.strerror or e}"]) from None
    data, duplicates = _load_yaml(text, source)
    return parse_config(data, source=source, path=path.resolve(), check_tasks=check_tasks,
                        extra_problems=duplicates)

