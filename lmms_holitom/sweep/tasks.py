"""lmms-eval task names: does a task exist, and which leaf tasks does a group (e.g. ``mvbench``) run.

Both answers come from lmms-eval's own `TaskManager` (its index of every task YAML, built-in and under
``include_path``). Building it takes several seconds, so it is built once per include path per process, only by
a sweep that is about to start a run (``--list``, ``--dry-run``, ``--emit slurm`` and a sweep with nothing left to
run never build it), and ``holitom sweep --no-task-check`` skips it.
"""

from __future__ import annotations

import difflib
import functools
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["check_tasks", "expand_tasks", "task_index"]


class _IgnoreTagsLoader(yaml.SafeLoader):
    """Reads lmms-eval task YAMLs, whose ``!function`` tags name Python callables."""


_IgnoreTagsLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


@functools.lru_cache(maxsize=4)
def _task_manager(include_path: str | None) -> Any:
    from loguru import logger  # lmms-eval logs every YAML it cannot parse at DEBUG level

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    from lmms_eval.tasks import TaskManager

    return TaskManager(verbosity="WARNING", include_path=include_path)


def task_index(include_path: Path | None = None) -> dict[str, dict[str, Any]]:
    """lmms-eval's task index: name -> ``{"type": "task"|"group"|"tag"|..., "yaml_path", "task"}``."""
    return _task_manager(str(include_path) if include_path else None).task_index


def check_tasks(tasks: tuple[str, ...], include_path: Path | None = None) -> list[str]:
    """One problem line per task name lmms-eval does not know (with close matches)."""
    index = task_index(include_path)
    problems = []
    for task in tasks:
        if task not in index:
            close = difflib.get_close_matches(task, list(index), n=3, cutoff=0.75)
            hint = f"; close: {', '.join(close)}" if close else ""
            where = " or under include_path " + str(include_path) if include_path else ""
            problems.append(f"tasks: unknown lmms-eval task {task!r} (not among lmms-eval's tasks{where}{hint})")
    return problems


def _members(entry: dict[str, Any]) -> list[str]:
    if entry.get("type") == "group" and entry.get("yaml_path") not in (None, -1):
        with open(entry["yaml_path"], encoding="utf-8") as f:
            data = yaml.load(f, Loader=_IgnoreTagsLoader) or {}
        items = data.get("task", [])
    else:
        items = entry.get("task", [])
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("task"), str):
            out.append(item["task"])
    return out


def expand_tasks(tasks: tuple[str, ...], include_path: Path | None = None) -> dict[str, list[str]]:
    """Each requested task -> the leaf tasks lmms-eval runs for it (itself when it is not a group/tag)."""
    index = task_index(include_path)

    def leaves(name: str, seen: frozenset[str]) -> list[str]:
        entry = index.get(name)
        if entry is None or entry.get("type") not in ("group", "tag") or name in seen:
            return [name]
        out: list[str] = []
        for member in _members(entry):
            out.extend(leaves(member, seen | {name}))
        return out or [name]

    return {t: leaves(t, frozenset()) for t in tasks}
