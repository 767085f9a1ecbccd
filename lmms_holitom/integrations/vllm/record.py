"""`save_record`: one ``RECORD_ENV`` file (a compressed video, or the positions a prefill step gave its rows), written
so that concurrent writers (ranks, processes) never collide and a reader never sees half a file."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch

from lmms_holitom.integrations.vllm.settings import RECORD_ENV

__all__ = ["save_record"]

_RECORDED = itertools.count()


def save_record(payload: dict) -> None:
    """Save ``payload`` into the folder ``RECORD_ENV`` names: a file per record and process, renamed into place."""
    folder = Path(os.environ[RECORD_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{os.getpid()}-{next(_RECORDED):06d}.pt"
    torch.save(payload, folder / f".{name}.tmp")
    os.replace(folder / f".{name}.tmp", folder / name)
