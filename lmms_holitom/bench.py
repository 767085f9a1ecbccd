"""``holitom bench``: measured speed and memory of dense vs every method on one model.

One run builds (or loads) one LLaVA-OneVision model, one synthetic video and one prompt, then measures every
setting (dense, HoliTom w/o M, HoliTom, VisionZip, FastV at the requested retain ratios) the same way:

* **TTFT**: wall time of ``generate(max_new_tokens=1)`` (device synchronised before and after);
* **stage times** from ``model.holitom_stats["timings_ms"]`` (the model's own timer: CUDA events on a GPU,
  ``perf_counter`` on a CPU): ``vision`` (tower + projector + pooling + saliency probe), ``outer_merge``,
  ``inner_merge``, ``llm`` (= the LLM prefill: decoder layers + LM head, includes ``inner_merge``);
  cross-checked by forward hooks of this module on the vision tower and the LM head (``hooks_ms``);
* **decoding speed**: one ``generate(max_new_tokens=n, min_new_tokens=n)``; a hook on the LM head marks the
  end of the first token's logits inside that same call; ``decode tok/s = (n − 1) / (total − first token)``
  (``decode_tok_s``; the same with the median TTFT of the 1-token calls is ``decode_tok_s_vs_ttft_call``);
* **peak memory** in a separate, untimed call (``generate`` with n new tokens): on CUDA
  ``torch.cuda.max_memory_allocated`` above the memory allocated before the call (weights and inputs
  excluded); on a CPU the peak of *live tensor bytes allocated by aten ops* during the call, tracked
  exactly by a ``TorchDispatchMode`` (deterministic — the process RSS is also sampled, as a noisy extra);
  both split per phase (before vision / vision tower / merge + LLM prefill / decoding); ``llm_peak_mb`` is
  the peak after the vision tower (projector, pooling, merges, prefill, decoding), where the methods differ
  from dense by their shorter sequence, while the vision phase carries the saliency probe's O(chunk)
  scores; plus the exact size of the KV cache after the call;
* **visual tokens** (dense, entering the LLM, after the inner step) and **TFLOPs** (`lmms_holitom.flops`:
  the paper's convention with the measured visual count, the exact convention, and the vision tower).

Warm-up calls precede the timed ones; repeats are interleaved round-robin over the settings (so drift hits
every setting alike); median, min, max and "best" (min time / max speed) are reported, and every figure is
also given as a ratio to the dense setting of the same run (dense = 1.0), from the medians by default
(``stat="best"`` on a shared, noisy machine).

The **probe study** times the vision tower alone on the same frames three ways: as is (SDPA, no probe), with
the model's `VisionSaliencyProbe` on the feature layer (HoliTom's way), and an eager-attention copy of the
tower returning every layer's attention (``output_attentions=True``, the original code's way) — "probe
overhead %" and the peak memory of each; the probe is run at several chunk sizes to show memory O(chunk).

Models: ``--pretrained PATH|tiny`` or ``--shape tiny|0.5b|7b|72b|<preset>-layers=N`` (random weights,
`lmms_holitom.shapes`). The HoliTom model class (`lmms_holitom.models`) runs every method; without it only
dense can be measured (stock transformers class).
"""

from __future__ import annotations

import copy
import gc
import json
import math
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lmms_holitom.config import METHODS, HoliTomConfig

__all__ = [
    "DEFAULT_METHODS",
    "SETTING_FIELDS",
    "TIMING_FIELDS",
    "BenchOptions",
    "Setting",
    "build_settings",
    "format_table",
    "load_model",
    "paper_tau",
    "resolve_device",
    "resolve_dtype",
    "run_bench",
    "synthetic_prompt",
    "synthetic_video",
    "tokens_per_frame",
    "write_json",
    "write_plot",
]

DEFAULT_METHODS = ("dense", "holitom_wo_m", "holitom", "visionzip", "fastv")
SCHEMA = "holitom-bench/1"
_MB = 1024.0 * 1024.0

#: Keys every entry of ``result["settings"]`` has (tests check them).
SETTING_FIELDS = (
    "name", "method", "retain_ratio", "config", "visual_tokens", "prompt_tokens", "segments", "static_tokens",
    "tflops", "timings_ms", "hooks_ms", "decode_tok_s", "memory", "ratios", "speedups",
    "merge_overhead_pct_of_dense_prefill",
)
#: Keys of ``timings_ms`` (each a {median, min, max, values} summary).
TIMING_FIELDS = ("vision", "outer_merge", "inner_merge", "merge", "llm_prefill", "prefill", "ttft",
                 "decode_total", "first_token_in_decode_run")


# ---------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Setting:
    """One measured configuration: a display name, the `HoliTomConfig`, and its nominal retain ratio."""

    name: str
    config: HoliTomConfig
    retain_ratio: float | None = None


def paper_tau(retain_ratio: float) -> float:
    """The paper's threshold: T = 0.65 at retain 10 % (and below), 0.80 otherwise."""
    return 0.65 if retain_ratio <= 0.10 + 1e-9 else 0.80


def build_settings(
    methods: Sequence[str],
    retain_ratios: Sequence[float],
    layers: int,
    *,
    merge_layer: int = 18,
    merge_ratio: float = 0.5,
    tau: float | None = None,
    fastv_layer: int = 2,
    fastv_ratio: float | str = 0.8,
) -> list[Setting]:
    """The settings of one bench run, dense first.

    * ``dense`` once; ``holitom_wo_m``, ``holitom``, ``visionzip`` once per retain ratio;
    * ``tau=None``: the paper's rule (`paper_tau`); HoliTom's K is ``merge_layer`` (18), scaled to a
      shallower model by `shapes.scale_layer` (K = round(18/28 · layers) when 18 is not a layer of it);
    * ``fastv`` once at the paper's LLM-only setting (K = ``fastv_layer`` = 2, r = ``fastv_ratio`` = 0.8), or
      with ``fastv_ratio="match"`` once per retain ratio with r = 1 − retain (the same visual budget after K).
    """
    from lmms_holitom.shapes import scale_layer

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    ratios = list(dict.fromkeys(float(r) for r in retain_ratios))
    if not ratios and any(m in ("holitom", "holitom_wo_m", "visionzip") for m in methods):
        raise ValueError("--retain-ratios must list at least one ratio for holitom / holitom_wo_m / visionzip")
    k = scale_layer(merge_layer, layers) if layers >= 2 else None
    k_fastv = scale_layer(fastv_layer, layers) if layers >= 2 else None
    settings: list[Setting] = [Setting("dense", HoliTomConfig(method="dense"))]
    for method in dict.fromkeys(methods):
        if method == "dense":
            continue
        if method == "fastv":
            if k_fastv is None:
                raise ValueError("fastv needs a model with >= 2 decoder layers")
            if fastv_ratio == "match":
                for r in ratios:
                    cfg = HoliTomConfig(method="fastv", merge_layer=k_fastv, merge_ratio=round(1 - r, 6))
                    settings.append(Setting(f"fastv@{r:.2f}", cfg, r))
            else:
                r_fv = float(fastv_ratio)
                cfg = HoliTomConfig(method="fastv", merge_layer=k_fastv, merge_ratio=r_fv)
                settings.append(Setting(f"fastv K{k_fastv} r{r_fv:g}", cfg, None))
            continue
        for r in ratios:
            t = paper_tau(r) if tau is None else float(tau)
            if method == "holitom":
                if k is None:
                    raise ValueError("holitom's inner merge needs a model with >= 2 decoder layers")
                cfg = HoliTomConfig(method="holitom", retain_ratio=r, tau=t, merge_layer=k, merge_ratio=merge_ratio)
            elif method == "holitom_wo_m":
                cfg = HoliTomConfig(method="holitom_wo_m", retain_ratio=r, tau=t, merge_layer=None)
            else:  # visionzip: round(retain * N) tokens per frame (HoliTomConfig.visionzip_tokens)
                cfg = HoliTomConfig(method="visionzip", retain_ratio=r)
            settings.append(Setting(f"{method}@{r:.2f}", cfg, r))
    return settings


# ---------------------------------------------------------------------------------------------- inputs
def synthetic_video(frames: int, *, size: int = 384, scenes: int = 4, seed: int = 0) -> torch.Tensor:
    """``pixel_values_videos`` (1, F, 3, size, size), fp32 in [-1, 1] (SigLIP-normalised range), on the CPU.

    ``scenes`` scenes of smooth noise (24×24 noise upsampled bilinearly), each drifting slowly from frame to
    frame (a random walk of step 0.05 on the low-resolution noise), plus faint per-frame pixel noise: the
    temporal redundancy HoliTom's segmentation looks for, reproducible from ``seed``.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    gen = torch.Generator().manual_seed(seed)
    scenes = max(1, min(scenes, frames))
    per_scene = math.ceil(frames / scenes)
    low = 24
    clips: list[torch.Tensor] = []
    for _ in range(scenes):
        base = torch.randn(3, low, low, generator=gen)
        steps = 0.05 * torch.randn(per_scene, 3, low, low, generator=gen)
        clips.append(base + steps.cumsum(0))
    small = torch.cat(clips)[:frames]
    video = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    video = video + 0.02 * torch.randn(video.shape, generator=gen)
    return (0.6 * video).clamp_(-1.0, 1.0).unsqueeze(0).contiguous()


def _special_ids(model: Any) -> set[int]:
    cfg = model.config
    ids: set[int] = set()
    for source in (cfg, cfg.get_text_config(), getattr(model, "generation_config", None)):
        for name in ("image_token_index", "video_token_index", "image_token_id", "video_token_id",
                     "eos_token_id", "pad_token_id", "bos_token_id"):
            value = getattr(source, name, None) if source is not None else None
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(v for v in value if isinstance(v, int))
    return ids


def tokens_per_frame(config: Any) -> int:
    """Pooled tokens per frame of a LLaVA-OneVision config: ``ceil(side / 2)²`` (196 at 384/14)."""
    side = config.vision_config.image_size // config.vision_config.patch_size
    return math.ceil(side / 2) ** 2


def synthetic_prompt(model: Any, frames: int, *, text_tokens: int = 30, seed: int = 0) -> torch.Tensor:
    """``input_ids`` (1, L) as the processor lays out a video question: text, ``F·N + 1`` video placeholders, text.

    The ``text_tokens`` text ids (about half before the video, half after, like the chat template's system/user
    header and the question) are drawn reproducibly from ordinary ids of the vocabulary (the middle of the
    first 2000 ids, never a special id of the config), so no tokenizer is needed.
    """
    vocab = int(model.config.get_text_config().vocab_size)
    hi = min(2000, vocab - 64) if vocab > 128 else vocab
    lo = hi // 2
    special = _special_ids(model)
    pool = torch.tensor([i for i in range(lo, hi) if i not in special])
    if pool.numel() == 0:
        raise ValueError(f"no ordinary token ids to build a prompt from (vocab {vocab})")
    gen = torch.Generator().manual_seed(seed + 1)
    text = pool[torch.randint(0, pool.numel(), (text_tokens,), generator=gen)]
    before = text_tokens // 2
    video = torch.full((frames * tokens_per_frame(model.config) + 1,), int(model.config.video_token_index))
    return torch.cat([text[:before], video, text[before:]]).unsqueeze(0)


# ---------------------------------------------------------------------------------------------- timing
class Clock:
    """Time marks: CUDA events on a GPU (no host sync when recorded), ``perf_counter`` otherwise."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    @staticmethod
    def ms(a: Any, b: Any) -> float:
        if a is None or b is None:
            return float("nan")
        if isinstance(a, float):
            return (b - a) * 1000.0
        return float(a.elapsed_time(b))


class MemoryMeter:
    """Peak memory of one call, split into phases at hook points. Subclasses measure CUDA or CPU bytes."""

    measure = ""

    def start(self) -> None:
        self.base = self.current()
        self.phase_peaks: dict[str, int] = {}
        self._reset_peak()

    def boundary(self, phase: str) -> None:
        """End ``phase`` (the segment since the last boundary): record its peak above the start level."""
        peak = self.peak() - self.base
        self.phase_peaks[phase] = max(self.phase_peaks.get(phase, 0), peak)
        self._reset_peak()

    def overall(self) -> int:
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
        for key in [k for k, (r, _) in self._live.items() if r.expired()]:
            self.current -= self._live.pop(key)[1]
        self._live[ref.cdata] = (ref, nbytes)
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def purge(self) -> None:
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
        return (self.peak - self.base) / _MB if self._thread is not None else None


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
        tower = model.model.vision_tower
        head = model.get_output_embeddings()
        self._handles = [
            tower.register_forward_pre_hook(self._vision_pre),
            tower.register_forward_hook(self._vision_post),
            head.register_forward_hook(self._head_post),
        ]

    def reset(self, meter: MemoryMeter | None = None) -> None:
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
        for h in self._handles:
            h.remove()


def summarize(values: Iterable[float], higher_is_better: bool = False) -> dict[str, Any]:
    """``{median, min, max, best, values}`` of the finite values (NaN dropped; all-NaN -> None stats).

    ``best`` is the min for times (noise on a shared machine only adds time) and the max for speeds.
    """
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return {"median": None, "min": None, "max": None, "best": None, "values": vals}
    best = max(finite) if higher_is_better else min(finite)
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite), "best": best,
            "values": vals}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b) or b == 0:
        return None
    return a / b


def _cache_bytes(cache: Any) -> int:
    """Bytes of the key/value tensors held by a transformers cache (DynamicCache and friends)."""
    if cache is None:
        return 0
    total = 0
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            for name in ("keys", "values"):
                t = getattr(layer, name, None)
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total
    for name in ("key_cache", "value_cache"):  # older caches
        for t in getattr(cache, name, []) or []:
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


# ---------------------------------------------------------------------------------------------- options
@dataclass
class BenchOptions:
    """Everything one bench run needs (the CLI maps its flags onto this)."""

    pretrained: str | None = None
    shape: str | None = "tiny"
    frames: int = 32
    methods: tuple[str, ...] = DEFAULT_METHODS
    retain_ratios: tuple[float, ...] = (0.10, 0.25)
    merge_layer: int = 18
    merge_ratio: float = 0.5
    tau: float | None = None
    fastv_layer: int = 2
    fastv_ratio: float | str = 0.8
    new_tokens: int = 32
    warmup: int = 1
    repeats: int = 3
    device: str | None = None
    dtype: str = "auto"
    seed: int = 0
    text_tokens: int = 30
    scenes: int = 4
    memory: bool = True
    probe: bool = True
    probe_chunks: tuple[int, ...] = ()
    eager: bool = True
    threads: int | None = None
    attn_implementation: str = "sdpa"
    stat: str = "median"


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"dtype must be auto, fp32, bf16 or fp16, got {name!r}")
    return table[name]


def holitom_model_class() -> type | None:
    """`HoliTomLlavaOnevisionForConditionalGeneration` if `lmms_holitom.models` exports it, else None."""
    try:
        from lmms_holitom.models import HoliTomLlavaOnevisionForConditionalGeneration
    except ImportError:
        return None
    return HoliTomLlavaOnevisionForConditionalGeneration


def load_model(opts: BenchOptions, device: torch.device, dtype: torch.dtype) -> tuple[Any, str, bool]:
    """(model, label, holitom_capable): by shape (random weights) or by path; HoliTom class when available."""
    cls = holitom_model_class()
    if opts.pretrained:
        from lmms_holitom.tiny import resolve_pretrained

        path = resolve_pretrained(opts.pretrained)
        kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": opts.attn_implementation}
        if cls is not None:
            model = cls.from_pretrained(path, holitom=HoliTomConfig(method="dense"), **kwargs)
        else:
            from transformers import LlavaOnevisionForConditionalGeneration

            model = LlavaOnevisionForConditionalGeneration.from_pretrained(path, **kwargs)
        model = model.to(device).eval()
        label = f"pretrained={opts.pretrained}"
    else:
        from lmms_holitom.shapes import build_model

        model = build_model(opts.shape or "tiny", device=device, dtype=dtype, model_cls=cls, seed=opts.seed,
                            attn_implementation=opts.attn_implementation)
        label = f"shape={opts.shape or 'tiny'}"
    return model, label, cls is not None and hasattr(model, "set_holitom")


# ---------------------------------------------------------------------------------------------- runner
@dataclass
class _Record:
    """Raw measurements of one setting (lists over repeats)."""

    ttft: list[float] = field(default_factory=list)
    decode_total: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    decode_tok_s: list[float] = field(default_factory=list)
    hook_vision: list[float] = field(default_factory=list)
    hook_after_vision: list[float] = field(default_factory=list)
    stage: dict[str, list[float]] = field(default_factory=dict)
    stats: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    generated: int = 0


class _Runner:
    def __init__(self, model: Any, inputs: dict[str, torch.Tensor], opts: BenchOptions, device: torch.device,
                 holitom: bool) -> None:
        self.model = model
        self.inputs = inputs
        self.opts = opts
        self.device = device
        self.clock = Clock(device)
        self.hooks = PhaseHooks(model, self.clock)
        self.holitom = holitom
        gen = model.generation_config
        self.gen_kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1, "pad_token_id": gen.pad_token_id,
                                           "eos_token_id": gen.eos_token_id}

    def select(self, setting: Setting) -> None:
        if self.holitom:
            self.model.set_holitom(setting.config)
        elif setting.config.method != "dense":
            raise RuntimeError("the HoliTom model class is not available: only dense can be measured")

    def _generate(self, new_tokens: int, **extra: Any) -> Any:
        with torch.inference_mode():
            return self.model.generate(**self.inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                       **self.gen_kwargs, **extra)

    def ttft(self, rec: _Record | None) -> None:
        self.hooks.reset()
        self.clock.sync()
        start = self.clock.mark()
        self._generate(1)
        end = self.clock.mark()
        self.clock.sync()
        total = self.clock.ms(start, end)
        if rec is None:
            return
        rec.ttft.append(total)
        m = self.hooks.marks
        rec.hook_vision.append(self.clock.ms(m.get("vision_start"), m.get("vision_end")))
        rec.hook_after_vision.append(self.clock.ms(m.get("vision_end"), m.get("first_logits")))
        stats = getattr(self.model, "holitom_stats", None) if self.holitom else None
        if stats is not None:
            stats = copy.deepcopy(stats)
            for name, value in (stats.get("timings_ms") or {}).items():
                rec.stage.setdefault(name, []).append(float(value))
            rec.stats = stats

    def decode(self, rec: _Record | None) -> None:
        n = self.opts.new_tokens
        self.hooks.reset()
        self.clock.sync()
        start = self.clock.mark()
        out = self._generate(n)
        end = self.clock.mark()
        self.clock.sync()
        total = self.clock.ms(start, end)
        if rec is None:
            return
        first = self.clock.ms(start, self.hooks.marks.get("first_logits"))
        rec.decode_total.append(total)
        rec.first_token.append(first)
        rec.generated = int(out.shape[1] - self.inputs["input_ids"].shape[1])
        rest = total - first
        rec.decode_tok_s.append((n - 1) / (rest / 1000.0) if n > 1 and rest > 0 else float("nan"))

    def memory(self, rec: _Record) -> None:
        n = self.opts.new_tokens
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            meter: MemoryMeter = CudaMemoryMeter(self.device)
            rss = None
        else:
            meter = TrackedMemoryMeter()
            rss = RssSampler()
        with meter:
            meter.start()
            self.hooks.reset(meter)
            if rss is not None:
                with rss:
                    out = self._generate(n, return_dict_in_generate=True)
            else:
                out = self._generate(n, return_dict_in_generate=True)
            self.clock.sync()
            meter.boundary("decode")
            self.hooks.reset()
            cache = getattr(out, "cache", None)
            kv = _cache_bytes(cache if cache is not None else getattr(out, "past_key_values", None))
        del out
        phases = meter.phase_peaks
        rec.memory = {
            "measure": meter.measure,
            "peak_mb": meter.overall() / _MB,
            "llm_peak_mb": max(phases.get("merge_and_prefill", 0), phases.get("decode", 0)) / _MB,
            "phase_peak_mb": {k: v / _MB for k, v in phases.items()},
            "kv_cache_mb": kv / _MB,
            "rss_peak_delta_mb": rss.delta_mb if rss is not None else None,
        }


def _dense_stats(model: Any, input_ids: torch.Tensor, frames: int) -> dict[str, Any]:
    """Stats of a dense prefill for the stock class (which has no ``holitom_stats``)."""
    n = tokens_per_frame(model.config)
    length = int(input_ids.shape[1])
    return {"method": "dense", "frames": frames, "tokens_per_frame": n, "dense_tokens": frames * n + 1,
            "outer_tokens": frames * n + 1, "inner_tokens": frames * n + 1, "merge_layer": None,
            "segments": frames, "static_tokens": 0, "prompt_tokens_dense": length, "prompt_tokens": length}


def _flops(setting: Setting, stats: dict[str, Any], shape: Any, frames: int) -> dict[str, float]:
    from lmms_holitom.flops import setting_flops, vision_flops

    outer = int(stats["outer_tokens"])
    text = int(stats["prompt_tokens"]) - outer
    paper = setting_flops(setting.config, shape, frames, visual_tokens=max(outer - 1, 0), convention="paper")
    exact = setting_flops(setting.config, shape, frames, visual_tokens=outer, convention="exact", text_tokens=text)
    return {"paper": paper / 1e12, "exact": exact / 1e12, "vision": vision_flops(frames, shape) / 1e12}


def _decode_vs_ttft(rec: _Record, new_tokens: int) -> float | None:
    total, ttft = summarize(rec.decode_total)["median"], summarize(rec.ttft)["median"]
    if new_tokens < 2 or total is None or ttft is None or total <= ttft:
        return None
    return (new_tokens - 1) / ((total - ttft) / 1000.0)


def _setting_result(setting: Setting, rec: _Record, model: Any, input_ids: torch.Tensor, frames: int,
                    shape: Any, new_tokens: int) -> dict[str, Any]:
    stats = rec.stats or _dense_stats(model, input_ids, frames)
    stage = rec.stage
    have_stages = bool(stage)

    def st(name: str) -> list[float]:
        return stage.get(name, [])

    vision = st("vision") if have_stages else rec.hook_vision
    outer = st("outer_merge") if have_stages else [0.0] * len(rec.ttft)
    inner = st("inner_merge") if have_stages else [0.0] * len(rec.ttft)
    llm = st("llm") if have_stages else rec.hook_after_vision
    prefill = st("prefill") if have_stages else [a + b for a, b in zip(rec.hook_vision, rec.hook_after_vision)]
    timings = {
        "vision": summarize(vision),
        "outer_merge": summarize(outer),
        "inner_merge": summarize(inner),
        "merge": summarize(a + b for a, b in zip(outer, inner)),
        "llm_prefill": summarize(llm),
        "prefill": summarize(prefill),
        "ttft": summarize(rec.ttft),
        "decode_total": summarize(rec.decode_total),
        "first_token_in_decode_run": summarize(rec.first_token),
    }
    return {
        "name": setting.name,
        "method": setting.config.method,
        "retain_ratio": setting.retain_ratio,
        "config": setting.config.to_dict(),
        "visual_tokens": {"dense": int(stats["dense_tokens"]), "outer": int(stats["outer_tokens"]),
                          "inner": int(stats["inner_tokens"])},
        "prompt_tokens": {"dense": int(stats["prompt_tokens_dense"]), "compressed": int(stats["prompt_tokens"])},
        "segments": int(stats.get("segments", frames)),
        "static_tokens": int(stats.get("static_tokens", 0)),
        "tflops": _flops(setting, stats, shape, frames),
        "timings_ms": timings,
        "timings_source": "model.holitom_stats" if have_stages else "forward hooks (stock model)",
        "hooks_ms": {"vision_tower": summarize(rec.hook_vision),
                     "after_vision_to_first_logits": summarize(rec.hook_after_vision)},
        "decode_tok_s": summarize(rec.decode_tok_s, higher_is_better=True),
        # the same with the TTFT of the separate 1-token call: (n - 1) / (median total - median TTFT)
        "decode_tok_s_vs_ttft_call": _decode_vs_ttft(rec, new_tokens),
        "generated_tokens": rec.generated,
        "memory": rec.memory,
        "ratios": {},
        "speedups": {},
        "merge_overhead_pct_of_dense_prefill": None,
    }


def _add_ratios(results: list[dict[str, Any]], stat: str = "median") -> None:
    """Every figure as a ratio to dense (value / dense; dense = 1.0), plus speedups (dense / value).

    Timed figures use the statistic ``stat`` (``median`` or ``best``) of the repeats.
    """
    dense = results[0]

    def med(r: dict[str, Any], *path: str) -> float | None:
        node: Any = r
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
            if node is None:
                return None
        return node.get(stat) if isinstance(node, dict) and stat in node else node

    figures = {
        "ttft": ("timings_ms", "ttft"),
        "vision": ("timings_ms", "vision"),
        "llm_prefill": ("timings_ms", "llm_prefill"),
        "prefill": ("timings_ms", "prefill"),
        "decode_total": ("timings_ms", "decode_total"),
        "decode_tok_s": ("decode_tok_s",),
        "peak_memory": ("memory", "peak_mb"),
        "llm_peak_memory": ("memory", "llm_peak_mb"),
        "kv_cache": ("memory", "kv_cache_mb"),
        "tflops_paper": ("tflops", "paper"),
        "tflops_exact": ("tflops", "exact"),
        "visual_tokens_outer": ("visual_tokens", "outer"),
        "visual_tokens_inner": ("visual_tokens", "inner"),
    }
    dense_llm = med(dense, "timings_ms", "llm_prefill")
    for r in results:
        r["ratios"] = {k: _ratio(med(r, *p), med(dense, *p)) for k, p in figures.items()}
        r["speedups"] = {
            "ttft": _ratio(med(dense, "timings_ms", "ttft"), med(r, "timings_ms", "ttft")),
            "llm_prefill": _ratio(dense_llm, med(r, "timings_ms", "llm_prefill")),
            "decode": _ratio(med(r, "decode_tok_s"), med(dense, "decode_tok_s")),
        }
        merge = med(r, "timings_ms", "merge")
        pct = _ratio(merge, dense_llm)
        r["merge_overhead_pct_of_dense_prefill"] = None if pct is None else 100.0 * pct


# ---------------------------------------------------------------------------------------------- probe study
def _probe_study(model: Any, pixels: torch.Tensor, opts: BenchOptions, device: torch.device,
                 log: Callable[[str], None]) -> dict[str, Any]:
    stat = opts.stat
    """Vision tower alone: as is vs with `VisionSaliencyProbe` (per chunk size) vs eager all-layer attention."""
    try:
        from lmms_holitom.models.probes import VisionSaliencyProbe, feature_attention_module
    except ImportError as err:
        return {"skipped": f"lmms_holitom.models.probes unavailable: {err}"}
    tower = model.model.vision_tower
    frames = pixels.flatten(0, 1)
    clock = Clock(device)
    layer = model.config.vision_feature_layer
    module = feature_attention_module(tower, layer)
    default_chunk = int(getattr(model.model, "holitom_probe_chunk", getattr(model, "holitom_probe_chunk", 8)))
    chunks = list(dict.fromkeys([default_chunk, *opts.probe_chunks]))

    def measure(fn: Callable[[], Any]) -> dict[str, Any]:
        times = []
        for i in range(opts.warmup + opts.repeats):
            clock.sync()
            t0 = time.perf_counter()
            fn()
            clock.sync()
            if i >= opts.warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
        gc.collect()
        meter: MemoryMeter = CudaMemoryMeter(device) if device.type == "cuda" else TrackedMemoryMeter()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        with meter:
            meter.start()
            fn()
            clock.sync()
            meter.boundary("call")
        return {"time_ms": summarize(times), "peak_mb": meter.overall() / _MB}

    def plain() -> None:
        with torch.inference_mode():
            tower(frames, output_hidden_states=True)

    def with_probe(chunk: int) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode(), VisionSaliencyProbe(module, chunk, want_keys=True):
                tower(frames, output_hidden_states=True)
        return run

    out: dict[str, Any] = {"frames": int(frames.shape[0]), "feature_layer": layer,
                           "default_chunk": default_chunk, "variants": {}}
    log(f"probe study: vision tower on {frames.shape[0]} frames")
    out["variants"]["sdpa_no_probe"] = measure(plain)
    for c in chunks:
        out["variants"][f"probe_chunk{c}"] = measure(with_probe(c))
    if opts.eager:
        eager = copy.deepcopy(tower)
        if hasattr(eager, "set_attn_implementation"):
            eager.set_attn_implementation("eager")
        else:  # older transformers: the copy has its own (deep-copied) config
            eager.config._attn_implementation = "eager"

        def all_layers() -> None:
            with torch.inference_mode():
                eager(frames, output_hidden_states=True, output_attentions=True)

        try:
            out["variants"]["eager_all_layer_attention"] = measure(all_layers)
        except torch.OutOfMemoryError as err:  # pragma: no cover - GPU only
            out["variants"]["eager_all_layer_attention"] = {"error": f"out of memory: {err}"}
        del eager
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    base = out["variants"]["sdpa_no_probe"]
    probe = out["variants"][f"probe_chunk{default_chunk}"]
    eager_v = out["variants"].get("eager_all_layer_attention", {})
    out["probe_overhead_pct"] = (
        100.0 * (_ratio(probe["time_ms"][stat], base["time_ms"][stat]) - 1.0)
        if _ratio(probe["time_ms"][stat], base["time_ms"][stat]) is not None else None
    )
    eager_ratio = _ratio(eager_v.get("time_ms", {}).get(stat), base["time_ms"][stat])
    out["eager_overhead_pct"] = None if eager_ratio is None else 100.0 * (eager_ratio - 1.0)
    out["probe_extra_memory_mb"] = probe["peak_mb"] - base["peak_mb"]
    out["eager_extra_memory_mb"] = (eager_v["peak_mb"] - base["peak_mb"]) if "peak_mb" in eager_v else None
    out["probe_extra_memory_mb_by_chunk"] = {
        str(c): out["variants"][f"probe_chunk{c}"]["peak_mb"] - base["peak_mb"] for c in chunks
    }
    return out


# ---------------------------------------------------------------------------------------------- targets
def _targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets, each with its value, whether it applies here and whether it passes.

    Speed targets apply on CUDA only: merge overhead and TTFT/decoding speedups to the 7B decoder at 32 frames,
    probe overhead to the real SigLIP-so400m tower. The memory targets (deterministic) apply everywhere.
    """
    meta = result["meta"]
    cuda = meta["device"].startswith("cuda")
    is_7b = meta["decoder_layers"] == 28 and meta["hidden"] == 3584  # LLaVA-OV-7B's decoder (shape or checkpoint)
    on_target = cuda and meta["frames"] == 32 and is_7b
    so400m = meta.get("vision_hidden") == 1152 and meta.get("vision_layers") == 26  # the real SigLIP tower
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, op: str, threshold: float, applies: bool) -> None:
        ok = None
        if value is not None:
            ok = value <= threshold if op == "<=" else value >= threshold
        rows.append({"target": name, "value": value, "op": op, "threshold": threshold, "applies": applies,
                     "pass": ok if applies else None, "met": ok})

    for r in result["settings"]:
        if r["method"] == "holitom":
            add(f"merge overhead % of dense prefill [{r['name']}]", r["merge_overhead_pct_of_dense_prefill"],
                "<=", 3.0, on_target)
            if r["memory"] is not None:
                add(f"LLM-side peak memory / dense [{r['name']}]", r["ratios"]["llm_peak_memory"], "<=", 1.0, True)
            if r["retain_ratio"] is not None and abs(r["retain_ratio"] - 0.10) < 1e-9:
                add(f"TTFT speedup vs dense [{r['name']}]", r["speedups"]["ttft"], ">=", 2.3, on_target)
                add(f"decode speedup vs dense [{r['name']}]", r["speedups"]["decode"], ">=", 1.3, on_target)
    probe = result.get("probe") or {}
    if "probe_overhead_pct" in probe:
        add("probe overhead % of the vision tower", probe["probe_overhead_pct"], "<=", 10.0, cuda and so400m)
        eager_mb = probe.get("eager_extra_memory_mb")
        if eager_mb is not None:
            add("probe extra memory / eager extra memory", _ratio(probe["probe_extra_memory_mb"], eager_mb),
                "<=", 1.0, True)
    return rows


# ---------------------------------------------------------------------------------------------- entry
def run_bench(
    opts: BenchOptions, log: Callable[[str], None] | None = None, model: Any = None
) -> dict[str, Any]:
    """Run the whole bench and return the result dict (see the module docstring; written as JSON by the CLI).

    ``model``: an already built model (e.g. from `load_model`) to measure instead of building one from
    ``opts.pretrained`` / ``opts.shape``, so a study can reuse it across frame counts; it must be on
    ``opts.device``.
    """
    import transformers

    from lmms_holitom.flops import shape_from_hf_config

    log = log or (lambda msg: None)
    transformers.logging.set_verbosity_error()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {opts.new_tokens}")
    if opts.repeats < 1 or opts.warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    if opts.stat not in ("median", "best"):
        raise ValueError(f"stat must be 'median' or 'best', got {opts.stat!r}")
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    torch.manual_seed(opts.seed)

    t0 = time.perf_counter()
    if model is None:
        model, label, holitom = load_model(opts, device, dtype)
    else:
        label = f"pretrained={opts.pretrained}" if opts.pretrained else f"shape={opts.shape or 'tiny'}"
        holitom = hasattr(model, "set_holitom")
        dtype = next(model.parameters()).dtype
    build_s = time.perf_counter() - t0
    layers = int(model.config.get_text_config().num_hidden_layers)
    log(f"model {label} on {device} ({dtype}): {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params, "
        f"{layers} decoder layers, built in {build_s:.1f} s; HoliTom class: {holitom}")

    methods = tuple(opts.methods) if holitom else ("dense",)
    if not holitom and len(set(opts.methods) - {"dense"}):
        log("lmms_holitom.models does not export the HoliTom model yet: measuring dense only")
    settings = build_settings(methods, opts.retain_ratios, layers, merge_layer=opts.merge_layer,
                              merge_ratio=opts.merge_ratio, tau=opts.tau, fastv_layer=opts.fastv_layer,
                              fastv_ratio=opts.fastv_ratio)
    pixels = synthetic_video(opts.frames, scenes=opts.scenes, seed=opts.seed).to(device=device, dtype=dtype)
    input_ids = synthetic_prompt(model, opts.frames, text_tokens=opts.text_tokens, seed=opts.seed).to(device)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "pixel_values_videos": pixels}
    runner = _Runner(model, inputs, opts, device, holitom)
    records = {s.name: _Record() for s in settings}
    try:
        for s in settings:
            runner.select(s)
            for _ in range(opts.warmup):
                runner.ttft(None)
                runner.decode(None)
        for rep in range(opts.repeats):
            for s in settings:
                runner.select(s)
                runner.ttft(records[s.name])
                runner.decode(records[s.name])
            log(f"repeat {rep + 1}/{opts.repeats} done ({time.perf_counter() - t0:.1f} s)")
        if opts.memory:
            for s in settings:
                runner.select(s)
                runner.memory(records[s.name])
            log("memory pass done")
    finally:
        runner.hooks.remove()

    shape = shape_from_hf_config(model.config, name=label)
    results = [_setting_result(s, records[s.name], model, input_ids, opts.frames, shape, opts.new_tokens)
               for s in settings]
    _add_ratios(results, opts.stat)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "meta": {
            "model": label,
            "shape": opts.shape if not opts.pretrained else None,
            "pretrained": opts.pretrained,
            "model_class": type(model).__name__,
            "holitom_model": holitom,
            "decoder_layers": layers,
            "hidden": shape.hidden,
            "vision_hidden": shape.vision_hidden,
            "vision_layers": shape.vision_layers,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
            or platform.machine(),
            "dtype": str(dtype).replace("torch.", ""),
            "frames": opts.frames,
            "tokens_per_frame": tokens_per_frame(model.config),
            "prompt_tokens": int(input_ids.shape[1]),
            "text_tokens": opts.text_tokens,
            "new_tokens": opts.new_tokens,
            "warmup": opts.warmup,
            "repeats": opts.repeats,
            "stat": opts.stat,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "build_s": build_s,
            "memory_measure": (CudaMemoryMeter.measure if device.type == "cuda" else TrackedMemoryMeter.measure),
            "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
            "notes": [
                "ratios = value / dense (dense = 1.0); speedups = dense / value for times, value / dense for tok/s",
                "timings_ms.llm_prefill = the model's 'llm' stage (decoder + LM head, includes inner_merge); "
                "merge = outer_merge + inner_merge",
                "decode tok/s = (new_tokens - 1) / (total - first-token time), both in the same generate call",
                "tflops.paper counts visual tokens without the newline token (the paper's convention)",
            ],
        },
        "settings": results,
    }
    if opts.probe and holitom:
        result["probe"] = _probe_study(model, pixels, opts, device, log)
        outer = [r for r in results if r["method"] in ("holitom", "holitom_wo_m")]
        if outer and "variants" in result["probe"]:
            # the same overhead seen inside generate: the model's vision stage (tower + projector + pooling,
            # plus the probe and the pooling of its saliency for HoliTom) against dense's
            ratio = _ratio(outer[0]["timings_ms"]["vision"][opts.stat], results[0]["timings_ms"]["vision"][opts.stat])
            result["probe"]["pipeline_vision_overhead_pct"] = None if ratio is None else 100.0 * (ratio - 1.0)
            result["probe"]["pipeline_setting"] = outer[0]["name"]
    result["targets"] = _targets(result)
    result["meta"]["total_s"] = time.perf_counter() - t0
    return result


# ---------------------------------------------------------------------------------------------- output
def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    """The human-readable table (``meta.stat`` of the repeats; ``(x)`` = speedup vs dense, ratio for memory)."""
    meta = result["meta"]
    stat = meta.get("stat", "median")
    stat_label = "medians" if stat == "median" else "best of the repeats: min time, max tok/s"
    lines = [
        f"{meta['model']} ({meta['model_class']}), {meta['device']} {meta['device_name']}, {meta['dtype']}, "
        f"{meta['frames']} frames x {meta['tokens_per_frame']} tokens, prompt {meta['prompt_tokens']} tokens, "
        f"{meta['new_tokens']} new tokens, warmup {meta['warmup']}, repeats {meta['repeats']} ({stat_label})",
    ]
    head = (f"{'setting':<18} {'vis out/in':>11} {'TFLOPs':>7} {'vision':>8} {'merge':>7} {'prefill':>8} "
            f"{'TTFT ms':>8} {'(x)':>6} {'tok/s':>7} {'(x)':>6} {'peak MB':>8} {'(x)':>5} {'LLM MB':>7} {'(x)':>5} "
            f"{'KV MB':>7}")
    lines += [head, "-" * len(head)]
    for r in result["settings"]:
        t = r["timings_ms"]
        mem = r["memory"] or {}
        lines.append(
            f"{r['name']:<18} {r['visual_tokens']['outer']:>5}/{r['visual_tokens']['inner']:<5} "
            f"{_fmt(r['tflops']['paper'], '.3g'):>7} {_fmt(t['vision'][stat]):>8} "
            f"{_fmt(t['merge'][stat], '.2f'):>7} {_fmt(t['llm_prefill'][stat]):>8} "
            f"{_fmt(t['ttft'][stat]):>8} {_fmt(r['speedups']['ttft'], '.2f'):>6} "
            f"{_fmt(r['decode_tok_s'][stat]):>7} {_fmt(r['speedups']['decode'], '.2f'):>6} "
            f"{_fmt(mem.get('peak_mb')):>8} {_fmt(r['ratios']['peak_memory'], '.2f'):>5} "
            f"{_fmt(mem.get('llm_peak_mb')):>7} {_fmt(r['ratios']['llm_peak_memory'], '.2f'):>5} "
            f"{_fmt(mem.get('kv_cache_mb'), '.2f'):>7}"
        )
    lines.append("vision/merge/prefill/TTFT in ms; merge = outer + inner; prefill = LLM prefill (incl. inner merge); "
                 "(x) = speedup vs dense (memory: ratio to dense)")
    if result["settings"] and result["settings"][0].get("memory"):
        lines.append(f"peak MB: {result['meta']['memory_measure']}; LLM MB: the same after the vision tower "
                     "(projector, pooling, merge, prefill, decoding); KV MB: the cache after decoding")
    for r in result["settings"][1:]:
        if r["merge_overhead_pct_of_dense_prefill"] is not None and r["method"] != "fastv":
            lines.append(f"  {r['name']}: merge overhead {r['merge_overhead_pct_of_dense_prefill']:.2f} % of dense "
                         f"LLM prefill (outer {_fmt(r['timings_ms']['outer_merge'][stat], '.2f')} ms, inner "
                         f"{_fmt(r['timings_ms']['inner_merge'][stat], '.2f')} ms)")
    probe = result.get("probe")
    if probe and "variants" in probe:
        lines.append(f"probe study (vision tower alone, {probe['frames']} frames):")
        for name, v in probe["variants"].items():
            if "error" in v:
                lines.append(f"  {name:<28} {v['error']}")
                continue
            lines.append(f"  {name:<28} {_fmt(v['time_ms'][stat], '.2f'):>9} ms   peak {_fmt(v['peak_mb']):>9} MB")
        lines.append(f"  probe overhead {_fmt(probe['probe_overhead_pct'], '.1f')} % of the tower; eager all-layer "
                     f"attention {_fmt(probe['eager_overhead_pct'], '.1f')} %; extra memory probe "
                     f"{_fmt(probe['probe_extra_memory_mb'])} MB vs eager {_fmt(probe['eager_extra_memory_mb'])} MB")
        if probe.get("pipeline_vision_overhead_pct") is not None:
            lines.append(f"  inside generate: {probe['pipeline_setting']} vision stage "
                         f"{probe['pipeline_vision_overhead_pct']:+.1f} % vs dense "
                         "(tower + projector + pooling + probe)")
    targets = result.get("targets") or []
    if targets:
        lines.append("targets:")
        for t in targets:
            verdict = ("PASS" if t["pass"] else "FAIL") if t["applies"] else (
                "n/a here" + ("" if t["met"] is None else f", would {'pass' if t['met'] else 'fail'}"))
            lines.append(f"  {t['target']}: {_fmt(t['value'], '.3g')} {t['op']} {t['threshold']:g} -> {verdict}")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str))


def write_plot(result: dict[str, Any], path: str | Path) -> None:
    """Bar chart: TTFT and decoding speedups (and LLM prefill speedup) vs dense, per setting (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["settings"]
    names = [r["name"] for r in rows]
    series = [("TTFT speedup", [r["speedups"]["ttft"] for r in rows]),
              ("LLM prefill speedup", [r["speedups"]["llm_prefill"] for r in rows]),
              ("decode speed ratio", [r["speedups"]["decode"] for r in rows])]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.2))
    for i, (label, values) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("x dense (higher is faster)")
    meta = result["meta"]
    ax.set_title(f"{meta['model']}, {meta['frames']} frames, {meta['device']} ({meta['dtype']})")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
