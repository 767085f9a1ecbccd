"""Tasks that lmms-eval scores on a remote server, and the answers they leave behind when it is unreachable.

lmms-eval 0.7.3's ``egoschema`` (the full 5031-question set; its labels are not public) saves the answers
as ``<output_path>/submissions/inference_results_egoschema_MC_<date>.json`` and then POSTs them to
EgoSchema's validation server. Offline the POST fails after minutes of retries, the aggregation raises,
lmms-eval writes **no results file for any task of that invocation**, and still exits 0. A sweep run in that
state is ``pending-scoring``: the answers are kept, nothing is scored, and it is not rerun. Offline studies
use ``egoschema_subset`` (500 questions with public labels, scored locally).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["REMOTE_SCORED", "answers_file", "remote_scoring_notice"]

#: task -> glob of the answers file its aggregation writes under lmms-eval's ``--output_path``.
REMOTE_SCORED: dict[str, str] = {"egoschema": "inference_results_egoschema_*.json"}


def answers_file(lmms_dir: Path, task: str) -> Path | None:
    """The newest answers file a remote-scored ``task`` saved under ``lmms_dir`` (None: none, or not such a task)."""
    pattern = REMOTE_SCORED.get(task)
    if pattern is None or not Path(lmms_dir).is_dir():
        return None
    files = sorted(Path(lmms_dir).rglob(pattern), key=lambda p: p.name)
    return files[-1] if files else None


def remote_scoring_notice(tasks: Iterable[str]) -> str | None:
    """One warning paragraph when ``tasks`` include a remote-scored task, else None."""
    remote = [t for t in tasks if t in REMOTE_SCORED]
    if not remote:
        return None
    others = [t for t in tasks if t not in REMOTE_SCORED]
    text = (f"{', '.join(remote)} is scored by a remote server (EgoSchema's validation server): without network "
            "access its runs end as pending-scoring (answers saved, no score); use egoschema_subset offline")
    if others:
        text += (f"; offline, its failed scoring also leaves {', '.join(others)} of the same run without results "
                 "(lmms-eval writes no results file), so put it in a study of its own")
    return text
