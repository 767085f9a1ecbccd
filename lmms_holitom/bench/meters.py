"""Instruments of the bench: a clock, per-phase peak-memory meters, an RSS sampler and phase hooks.

* `Clock`: CUDA events on a GPU, ``perf_counter`` on a CPU;
* `MemoryMeter`: the peak bytes of one call, split into phases at hook points — `CudaMemoryMeter`
  (``torch.cuda.max_memory_allocated``) or `TrackedMemoryMeter` (the exact peak of live tensor bytes that aten
  ops allocate, via a ``TorchDispatchMode``; deterministic on a CPU); `fresh_meter` picks one for a device;
* `RssSampler`: the process RSS sampled in a thread (noisy, informational);
* `PhaseHooks`: forward hooks on the vision tower and the LM head marking the phases of one ``generate``;
* `cache_bytes`: the exact size of a transformers KV cache.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "MB",
    "vision_module",
    "Clock",
    "CudaMemoryMeter",
    "MemoryMeter",
    "PhaseHooks",
    "RssSampler",
    "TrackedMemoryMeter",
    "cache_bytes",
    "fresh_meter",
]

MB = 1024.0 * 1024.0


class Clock:
    """Time marks: CUDA events on a GPU (no host sync when recorded), ``perf_counter`` otherwise."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        """Wait for the device (a no-op on a CPU)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def mark(self) -> Any:
        """A time mark: a recorded CUDA event, or ``perf_counter()`` seconds."""
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    @staticmethod
    def ms(a: Any, b: Any) -> float:
        """Milliseconds from mark ``a`` to mark ``b`` (NaN when either is missing)."""
        if a is None or b is None:
            return float("nan")
        if isinstance(a, float):
            return (b - a) * 1000.0
        return float(a.elapsed_time(b))


class MemoryMeter:
    """Peak memory of one call, split into phases at hook points. Subclasses measure CUDA or CPU bytes."""

    measure = ""

    def start(self) -> None:
        """Take the start level and begin the first phase."""
        self.base = self.current()
        self.phase_peaks: dict[str, int] = {}
        self._reset_peak()

    def boundary(self, phase: str) -> None:
        """End ``phase`` (the segment since the last boundary): record its peak above the start level."""
        peak = self.peak() - self.base
        self.phase_peaks[phase] = max(self.phase_peaks.get(phase, 0), peak)
        self._reset_peak()

    def overall(self) -> int:
        """The peak over every phase (bytes above the start level)."""
        return max(self.phase_peaks.values(), default=0)

    def current(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def peak(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reset_peak(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> MemoryMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class CudaMemoryMeter(MemoryMeter):
    """``torch.cuda.max_memory_allocated`` (the caching allocator's live tensor bytes; no sync needed)."""

    measure = "cuda max_memory_allocated above the bytes allocated before the call (weights, inputs excluded)"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def current(self) -> int:
        return int(torch.cuda.memory_allocated(self.device))

    def peak(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.device))

    def _reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of storages created by aten ops while active, and their running peak.

    A storage is counted once (views share it) from the op that returned it until it is freed (checked
    through a weak reference each time a new storage appears, so the peak is exact at allocation points).
    Storages that existed before (weights, inputs) are never counted.
    """

    def __init__(self) -> None:
        super().__init__()
        from torch.multiprocessing.reductions import StorageWeakRef

        self._ref = StorageWeakRef
        self._live: dict[int, tuple[Any, int]] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        nbytes = int(storage.nbytes())
        if nbytes == 0:
            return
        ref = self._ref(storage)
        known = self._live.get(ref.cdata)
        if known is not None and not known[0].expired():
            return
        self.purge()
        self._live[ref.cdata] = (ref, nbytes)
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def purge(self) -> None:
        """Forget the storages freed since the last look."""
        for key in [k for k, (r, _) in self._live.items() if r.expired()]:
            self.current -= self._live.pop(key)[1]


class TrackedMemoryMeter(MemoryMeter):
    """CPU: exact peak of live tensor bytes allocated by aten ops during the call (a TorchDispatchMode)."""

    measure = ("peak bytes of live tensors allocated by aten ops during the call (TorchDispatchMode; weights and "
               "inputs excluded; allocator caching and non-tensor memory not counted)")

    def __init__(self) -> None:
        self.mode = _LiveTensorBytes()

    def __enter__(self) -> TrackedMemoryMeter:
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mode.__exit__(*exc)

    def current(self) -> int:
        self.mode.purge()
        return self.mode.current

    def peak(self) -> int:
        return self.mode.peak

    def _reset_peak(self) -> None:
        self.mode.purge()
        self.mode.peak = self.mode.current


def fresh_meter(device: torch.device) -> MemoryMeter:
    """A meter for ``device`` after a garbage collection (and, on CUDA, a sync and an emptied cache)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        return CudaMemoryMeter(device)
    return TrackedMemoryMeter()


class RssSampler:
    """Samples the process RSS in a thread (every ``interval`` s): a noisy, informational CPU figure."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = 0
        self.base = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        try:
            import psutil
        except ImportError:  # optional
            return self
        proc = psutil.Process()
        self.base = self.peak = proc.memory_info().rss

        def loop() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, proc.memory_info().rss)
                time.sleep(self.interval)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def delta_mb(self) -> float | None:
        """Peak RSS above the start, in MB; None without psutil."""
        return (self.peak - self.base) / MB if self._thread is not None else None


class PhaseHooks:
    """Forward hooks marking phase boundaries of one ``generate`` call.

    Marks: ``vision_start`` (first vision-tower call starts), ``vision_end`` (last vision-tower call before the
    first logits ends), ``first_logits`` (the LM head's first call ends = the first token's logits). With a
    `MemoryMeter`, the same points end the memory phases ``before_vision``, ``vision``, ``merge_and_prefill``;
    ``decode`` is ended by the caller.
    """

    def __init__(self, model: Any, clock: Clock) -> None:
        self.clock = clock
        self.meter: MemoryMeter | None = None
        self.marks: dict[str, Any] = {}
        tower = vision_module(model)
        head = model.get_output_embeddings()
        self._handles = [
            tower.register_forward_pre_hook(self._vision_pre),
            tower.register_forward_hook(self._vision_post),
            head.register_forward_hook(self._head_post),
        ]

    def reset(self, meter: MemoryMeter | None = None) -> None:
        """Forget the marks before a new call (and attach ``meter``, or none)."""
        self.marks = {}
        self.meter = meter

    def _vision_pre(self, *_: Any) -> None:
        if "vision_start" not in self.marks:
            if self.meter is not None:
                self.meter.boundary("before_vision")
            self.marks["vision_start"] = self.clock.mark()

    def _vision_post(self, *_: Any) -> None:
        if "first_logits" not in self.marks:
            self.marks["vision_end"] = self.clock.mark()
            if self.meter is not None:
                self.meter.boundary("vision")

    def _head_post(self, *_: Any) -> None:
        if "first_logits" not in self.marks:
            self.marks["first_logits"] = self.clock.mark()
            if self.meter is not None:
                self.meter.boundary("merge_and_prefill")

    def remove(self) -> None:
        """Remove the hooks from the model."""
        for h in self._handles:
            h.remove()


def vision_module(model: Any) -> Any:
    """The vision encoder of a model: LLaVA-OneVision's ``model.vision_tower`` or Qwen VL's ``model.visual``."""
    inner = model.model
    tower = getattr(inner, "vision_tower", None)
    return tower if tower is not None else inner.visual


def cache_bytes(cache: Any) -> int:
    """Bytes of the key/value tensors held by a transformers cache (DynamicCache and friends)."""
    if cache is None:
        return 0
    layers = getattr(cache, "layers", None)
    if layers is not None:
        tensors = [getattr(layer, name, None) for layer in layers for name in ("keys", "values")]
    else:  # older caches
        tensors = [t for name in ("key_cache", "value_cache") for t in getattr(cache, name, []) or []]
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
