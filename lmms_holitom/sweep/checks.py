"""Validation of a study file's sections: YAML with duplicate keys reported, model / launcher / tasks checks that
collect every problem (see `lmms_holitom.sweep.config`)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from lmms_holitom.sweep.spec import (
    DEFAULT_BACKEND,
    DEFAULT_LMMS_EVAL_MODEL,
    DTYPES,
    HOLITOM_KEYS,
    LAUNCHER_KEYS,
    LAUNCHER_TYPES,
    LMMS_EVAL_MODELS,
    MAX_STUDY_VALUES,
    MODEL_KEYS,
    RUN_MODEL_KEYS,
    TRANSFORMERS_ONLY_KEYS,
    VLLM_LMMS_EVAL_MODELS,
    ConfigError,
    LauncherSpec,
    format_value,
)
from lmms_holitom.values import MAX_FRAMES, MAX_TOKENS, shown


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


def load_yaml(text: str, source: str) -> tuple[Any, list[str]]:
    """The document and its duplicate-key problems; `ConfigError` for invalid YAML, YAML nested too deeply, or a
    document holding more than `MAX_STUDY_VALUES` values once its aliases are expanded (a "billion laughs" file)."""
    loader = _UniqueKeyLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        raise ConfigError(source, [f"not valid YAML: {e}"]) from None
    except RecursionError:
        raise ConfigError(source, ["not a study: YAML nested too deeply"]) from None
    finally:
        loader.dispose()
    if expanded_size(data, MAX_STUDY_VALUES) is None:
        raise ConfigError(source, [f"holds more than {MAX_STUDY_VALUES} values once its YAML aliases (*name) are "
                                   "expanded (or an alias contains itself); a study holds a few hundred: check the "
                                   "anchors (&name) and aliases"])
    return data, loader.duplicates


def expanded_size(data: Any, limit: int) -> int | None:
    """The values in ``data`` (each mapping, list, key and scalar) counting a shared object (a YAML alias) each time
    it appears; None above ``limit`` or for a cycle. Linear in the distinct objects, not in the expanded size."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        obj, children_done = stack.pop()
        if not isinstance(obj, (list, dict)):
            continue
        children = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else obj
        key = id(obj)
        if children_done:
            sizes[key] = 1 + sum(sizes.get(id(c), 1) if isinstance(c, (list, dict)) else 1 for c in children)
            open_.discard(key)
            if sizes[key] > limit:
                return None
        elif key in open_:
            return None  # an alias inside its own anchor
        elif key not in sizes:
            open_.add(key)
            stack.append((obj, True))
            stack.extend((c, False) for c in children)
    return sizes.get(id(data), 1)


# ---------------------------------------------------------------------------------------------- validation
class Problems(list):
    def add(self, msg: str) -> None:
        self.append(msg)


def check_int(problems: Problems, where: str, value: Any, lo: int, hi: int | None = None) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    if not ok:
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        problems.add(f"{where} must be an integer {rng}, got {shown(value)}")
        return None
    return value


def suggest(key: Any, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def unknown_keys(problems: Problems, where: str, keys: Iterable[Any], known: Iterable[str]) -> None:
    known = tuple(known)
    for key in keys:
        if key not in known:
            problems.add(f"{where}: unknown key {key!r} ({suggest(key, known)}valid: {', '.join(known)})")


def check_model(problems: Problems, model: Any) -> dict[str, Any]:
    if not isinstance(model, Mapping):
        problems.add(f"model must be a mapping with at least 'pretrained', got {shown(model)}")
        return {}
    unknown_keys(problems, "model", model, MODEL_KEYS)
    out: dict[str, Any] = {k: model[k] for k in MODEL_KEYS if k in model}
    if not isinstance(out.get("pretrained"), str) or not out.get("pretrained"):
        problems.add("model.pretrained is required (a hub id, a local folder, or 'tiny')")
    check_model_values(problems, "model", out)
    extra = out.get("extra")
    if extra is not None:
        if not isinstance(extra, Mapping):
            problems.add(f"model.extra must be a mapping of model_args, got {shown(extra)}")
            out["extra"] = {}
        else:
            for key, value in extra.items():
                if key in MODEL_KEYS or key in HOLITOM_KEYS:
                    problems.add(f"model.extra.{key}: set {key!r} as a model or run key, not in extra")
                if not isinstance(value, (str, int, float, bool)):
                    problems.add(f"model.extra.{key} must be a scalar, got {shown(value)}")
                elif isinstance(value, str) and ("," in value or "=" in value):
                    problems.add(f"model.extra.{key} must not contain ',' or '=' (model_args syntax), "
                                 f"got {shown(value)}")
    return out


def check_model_values(problems: Problems, where: str, values: Mapping[str, Any]) -> None:
    for key, high in (("max_frames_num", MAX_FRAMES), ("max_num_frames", MAX_FRAMES), ("min_pixels", None),
                      ("max_pixels", None), ("max_new_tokens", MAX_TOKENS)):
        if key in values:
            check_int(problems, f"{where}.{key}", values[key], 1, high)
    fps = values.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        problems.add(f"{where}.fps must be a number > 0, got {shown(fps)}")
    if "dtype" in values and values["dtype"] not in DTYPES:
        problems.add(f"{where}.dtype must be one of {', '.join(DTYPES)}, got {shown(values['dtype'])}")
    for key in ("pretrained", "attn_implementation", "conv_template", "device_map", "device", "video_decode_backend",
                "on_video_error"):
        value = values.get(key)
        if value is not None and (not isinstance(value, str) or "," in value):
            problems.add(f"{where}.{key} must be a string without ',', got {shown(value)}")


def check_lmms_eval_model(problems: Problems, data: Mapping[str, Any], backend: str = DEFAULT_BACKEND) -> str:
    """The study's lmms-eval model (with ``backend: vllm``, the family ``vllm_holitom`` serves), and a problem for
    each model key (of ``model`` or a run) it does not take."""
    name = data.get("lmms_eval_model", DEFAULT_LMMS_EVAL_MODEL)
    if name not in LMMS_EVAL_MODELS:
        problems.add(f"lmms_eval_model must be one of {', '.join(LMMS_EVAL_MODELS)}, got {shown(name)}")
        return DEFAULT_LMMS_EVAL_MODEL
    foreign = LMMS_EVAL_MODELS[name]
    if backend == "vllm":
        if name not in VLLM_LMMS_EVAL_MODELS:
            problems.add(f"backend vllm serves the families of {', '.join(VLLM_LMMS_EVAL_MODELS)}; "
                         f"lmms_eval_model {name} runs with backend: transformers")
        foreign = (*foreign, *TRANSFORMERS_ONLY_KEYS)
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
                problems.add(f"{where}.{key} is not a model arg of {name}{' in vLLM' * (backend == 'vllm')} "
                             f"(its model keys: {', '.join(k for k in RUN_MODEL_KEYS if k not in foreign)})")
    return name


def check_launcher(problems: Problems, launcher: Any) -> LauncherSpec:
    if launcher is None:
        return LauncherSpec()
    if not isinstance(launcher, Mapping):
        problems.add(f"launcher must be a mapping, got {shown(launcher)}")
        return LauncherSpec()
    unknown_keys(problems, "launcher", launcher, LAUNCHER_KEYS)
    kwargs: dict[str, Any] = {}
    kind = launcher.get("type", "python")
    if kind not in LAUNCHER_TYPES:
        problems.add(f"launcher.type must be one of {', '.join(LAUNCHER_TYPES)}, got {shown(kind)}")
    else:
        kwargs["type"] = kind
    for key, lo, hi in (("num_processes", 1, None), ("num_machines", 1, None), ("main_process_port", 1, 65535)):
        if launcher.get(key) is not None:
            value = check_int(problems, f"launcher.{key}", launcher[key], lo, hi)
            if value is not None:
                kwargs[key] = value
    if kind == "python" and launcher.get("num_processes", 1) != 1:
        problems.add("launcher.num_processes > 1 needs launcher.type: accelerate")
    extra = launcher.get("extra_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, (str, int, float)) for a in extra):
        problems.add(f"launcher.extra_args must be a list of strings, got {shown(extra)}")
    else:
        kwargs["extra_args"] = tuple(str(a) for a in extra)
    env = launcher.get("env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) and isinstance(v, (str, int, float, bool))
        for k, v in env.items()
    ):
        problems.add(f"launcher.env must map variable names to scalar values, got {shown(env)}")
    else:
        kwargs["env"] = {k: format_value(v) if not isinstance(v, str) else v for k, v in env.items()}
    for key in ("module", "python", "accelerate"):
        if key in launcher:
            if not isinstance(launcher[key], str) or not launcher[key]:
                problems.add(f"launcher.{key} must be a non-empty string, got {shown(launcher[key])}")
            else:
                kwargs[key] = launcher[key]
    return LauncherSpec(**kwargs)


def check_task_list(problems: Problems, tasks: Any) -> tuple[str, ...]:
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t for t in tasks):
        problems.add(f"tasks must be a non-empty list of lmms-eval task names, got {shown(tasks)}")
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
