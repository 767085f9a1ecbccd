"""Per-prefill statistics (`HoliTomStats`) and stage timings (`StageTimer`) of the HoliTom engine.

Timing policy (no extra host syncs in the hot path):

* CPU: ``time.perf_counter`` around each stage (CPU work is synchronous, so this is exact);
* CUDA, default: a pair of CUDA events per stage, recorded asynchronously; they are resolved (one
  ``Event.synchronize`` on the last event, then ``elapsed_time``) only when ``model.holitom_stats`` is first
  read, so a prefill adds no host sync at all;
* ``sync=True`` (``model.holitom_sync_timings = True``): ``torch.cuda.synchronize`` at the start and end of
  each stage and ``perf_counter`` — wall-clock per stage, at the cost of one sync per stage boundary.

Stages: ``vision`` (vision tower + projector + pooling + attention probe), ``outer_merge`` (`compress_video`
and shortening the sequence), ``inner_merge`` (last-token attention row at layer K-1 and `merge_inner`),
``llm`` (the decoder layers, norm and LM head; includes ``inner_merge``) and ``prefill`` (the whole prefill:
all of the above). ``generate`` encodes images/videos before its first forward (transformers 5.x); the model's
``get_video_features`` times itself, and that vision time is added to ``prefill`` too, so ``prefill`` is always
vision + merges + LLM.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

__all__ = ["STAGES", "HoliTomStats", "StageTimer", "empty_stats"]

STAGES = ("vision", "outer_merge", "inner_merge", "llm", "prefill")


class StageTimer:
    """Times named stages of one forward pass; repeated stages accumulate.

    Args:
        device: the device the work runs on (CUDA -> events, anything else -> perf_counter).
        sync: synchronise CUDA at each stage boundary and use wall-clock time instead of events.
    """

    def __init__(self, device: torch.device | str, sync: bool = False) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda" and torch.cuda.is_available()
        self.sync = sync
        self._ms: dict[str, float] = {}
        self._events: list[tuple[str, Any, Any]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.cuda and not self.sync:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                self._events.append((name, start, end))
            return
        if self.cuda:
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize(self.device)
            self._ms[name] = self._ms.get(name, 0.0) + (time.perf_counter() - t0) * 1000.0

    def absorb(self, other: StageTimer, also_as: str | None = None) -> None:
        """Add ``other``'s stages to this timer; with ``also_as``, count each of them under that name too
        (e.g. the vision stage that ``generate`` ran before the prefill forward also counts as ``prefill``)."""
        for name, start, end in other._events:
            self._events.append((name, start, end))
            if also_as is not None:
                self._events.append((also_as, start, end))
        for name, ms in other._ms.items():
            self._ms[name] = self._ms.get(name, 0.0) + ms
            if also_as is not None:
                self._ms[also_as] = self._ms.get(also_as, 0.0) + ms

    @property
    def pending(self) -> bool:
        return bool(self._events)

    def resolve(self) -> dict[str, float]:
        """Stage -> milliseconds (stages that did not run are 0.0). Resolves CUDA events (one sync)."""
        if self._events:
            for _, _, end in self._events:  # waits once, for the latest; the others are then done
                end.synchronize()
            for name, start, end in self._events:
                self._ms[name] = self._ms.get(name, 0.0) + float(start.elapsed_time(end))
            self._events.clear()
        return {name: round(self._ms.get(name, 0.0), 4) for name in STAGES}


@dataclass(frozen=True)
class HoliTomStats(Mapping):
    """What one prefill did (read-only; also a Mapping, so ``stats["outer_tokens"]`` and ``dict(stats)`` work).

    Attributes:
        method: the HoliTom method of the prefill.
        frames: F, frames of the video (0 without a video).
        tokens_per_frame: N, visual tokens of one dense frame before newlines.
        dense_tokens: visual tokens of the dense video, newlines included (what the processor's placeholders
            count).
        outer_tokens: visual tokens entering the LLM (after the outer merge), newlines included.
        inner_tokens: visual tokens in layers >= merge_layer (= outer_tokens without an inner step).
        merge_layer: K of the inner step, or None.
        segments: temporal segments (F without temporal merging).
        static_tokens: static (segment-merged) tokens entering the LLM.
        prompt_tokens_dense / prompt_tokens: prompt length before / after the outer merge.
        probe_peak_elements: elements of the largest score tensor the vision probe created.
        timings_ms: stage -> milliseconds (`STAGES`).
    """

    method: str
    frames: int = 0
    tokens_per_frame: int = 0
    dense_tokens: int = 0
    outer_tokens: int = 0
    inner_tokens: int = 0
    merge_layer: int | None = None
    segments: int = 0
    static_tokens: int = 0
    prompt_tokens_dense: int = 0
    prompt_tokens: int = 0
    probe_peak_elements: int = 0
    timings_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def __getitem__(self, key: str) -> object:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def replace(self, **changes: object) -> HoliTomStats:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        """A plain dict (JSON-ready) of every field."""
        return asdict(self)


def empty_stats(method: str, merge_layer: int | None = None) -> HoliTomStats:
    """The stats of a prefill without a video (text and/or images only)."""
    return HoliTomStats(method=method, merge_layer=merge_layer)
