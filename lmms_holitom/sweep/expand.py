"""Expansion of a study's ``runs`` (explicit runs and grid blocks) into run specs (`RunSpec`), with the dense
baseline added (see `lmms_holitom.sweep.config`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.methods import DENSE
from lmms_holitom.sweep.checks import Problems, check_model_values, suggest, unknown_keys
from lmms_holitom.sweep.spec import (
    HEADLINE,
    HOLITOM_KEYS,
    IRRELEVANT,
    MAX_RUNS,
    NAME_RE,
    RUN_MODEL_KEYS,
    RunSpec,
    run_name,
)
from lmms_holitom.values import shown


# ---------------------------------------------------------------------------------------------- expansion
@dataclass
class _Point:
    values: dict[str, Any]
    where: str
    explicit_name: str | None
    from_grid: bool


def _grid_points(problems: Problems, entry: Mapping[str, Any], where: str) -> list[_Point]:
    grid = entry["grid"]
    unknown_keys(problems, where, (k for k in entry if k != "grid"), ("grid",))
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
    size = math.prod(len(vals) for _, vals in axes)  # counted before anything is expanded
    if size > MAX_RUNS:
        problems.add(f"{where}.grid expands to {size} runs ("
                     + " x ".join(str(len(vals)) for _, vals in axes)
                     + f"), more than a study may hold ({MAX_RUNS}); split it into several studies or zip axes")
        return []
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


def _entry_points(problems: Problems, runs: Any) -> list[_Point]:
    if runs is None:
        return []
    if not isinstance(runs, list):
        problems.add(f"runs must be a list of runs and/or grid blocks, got {shown(runs)}")
        return []
    points: list[_Point] = []
    for i, entry in enumerate(runs):
        where = f"runs[{i}]"
        if not isinstance(entry, Mapping):
            problems.add(f"{where} must be a mapping (a run or a grid block), got {shown(entry)}")
        elif "grid" in entry:
            points.extend(_grid_points(problems, entry, where))
            if len(points) > MAX_RUNS:
                problems.add(f"runs: the study expands to more than {MAX_RUNS} runs (up to {where}); split it into "
                             "several studies")
                return []
        else:
            name = entry.get("name")
            if name is not None and not isinstance(name, str):
                problems.add(f"{where}.name must be a string, got {shown(name)}")
                name = str(name)
            values = {k: v for k, v in entry.items() if k != "name"}
            points.append(_Point(values, f"{where}" + (f" {name!r}" if name else ""), name, False))
    return points


def _build_run(problems: Problems, point: _Point, model: Mapping[str, Any]) -> RunSpec | None:
    values = point.values
    known = ("name", *HOLITOM_KEYS, *RUN_MODEL_KEYS)
    bad = [k for k in values if k not in known]
    for key in bad:
        problems.add(f"{point.where}: unknown key {key!r} ({suggest(key, known)}valid: HoliTomConfig fields "
                     f"{', '.join(HOLITOM_KEYS)}; model keys {', '.join(RUN_MODEL_KEYS)})")
    if bad:
        return None
    holitom_values = {k: v for k, v in values.items() if k in HOLITOM_KEYS}
    overrides = {k: v for k, v in values.items() if k in RUN_MODEL_KEYS}
    before = len(problems)
    check_model_values(problems, point.where, overrides)
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
    if not NAME_RE.match(name):
        problems.add(f"{point.where}: run name {name!r} must match {NAME_RE.pattern} (it names a folder)")
        return None
    effective = {**model, **overrides}
    return RunSpec(name, cfg, params, effective, overrides, point.where)


def expand_runs(problems: Problems, runs_value: Any, model: Mapping[str, Any]) -> tuple[RunSpec, ...]:
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
    if not any(r.method == DENSE for r in runs) and model:
        if DENSE in origin:
            problems.add(f"{origin['dense'][1].where}: the name 'dense' is reserved for the dense baseline")
        else:
            cfg = HoliTomConfig(method=DENSE)
            runs.insert(0, RunSpec(DENSE, cfg, {"method": DENSE}, dict(model), {}, "auto (dense baseline)"))
    return tuple(runs)
