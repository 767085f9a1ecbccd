"""The measurement loop: load the model, then time and meter ``generate`` for every setting.

`load_model` builds a model by shape (random weights) or loads a checkpoint, with the HoliTom class when
`lmms_holitom.hf.models` exports it. `Runner` makes the three kinds of call on one setting (a 1-token call for
TTFT and the stage times, an n-token call for the decoding speed, an untimed n-token call for memory) and
appends what it measured to the setting's `Record`; `measure_settings` runs warm-ups, then interleaves the
repeats round-robin over the settings (so drift hits every setting alike), then the memory pass.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lmms_holitom.bench.meters import MB, Clock, PhaseHooks, RssSampler, cache_bytes, fresh_meter
from lmms_holitom.bench.options import BenchOptions
from lmms_holitom.bench.settings import Setting
from lmms_holitom.config import HoliTomConfig
from lmms_holitom.layer_kinds import FULL_ATTENTION, merge_layers
from lmms_holitom.methods import DENSE

__all__ = ["Record", "Runner", "holitom_model_class", "load_model", "measure_settings", "model_label"]


_FAMILY_CLASSES = {"llava_onevision": "HoliTomLlavaOnevisionForConditionalGeneration",
                   "qwen2_5_vl": "HoliTomQwen2_5_VLForConditionalGeneration",
                   "qwen3_vl": "HoliTomQwen3VLForConditionalGeneration",
                   "qwen3_vl_moe": "HoliTomQwen3VLMoeForConditionalGeneration",
                   "qwen3_5": "HoliTomQwen3_5ForConditionalGeneration",
                   "qwen3_5_moe": "HoliTomQwen3_5MoeForConditionalGeneration"}


def holitom_model_class(family: str = "llava_onevision") -> type | None:
    """The HoliTom class of a family (a config ``model_type``) if `lmms_holitom.hf.models` exports it, else None."""
    try:
        import lmms_holitom.hf.models as models
    except ImportError:
        return None
    return getattr(models, _FAMILY_CLASSES.get(family, ""), None)


def model_label(opts: BenchOptions) -> str:
    """``pretrained=<path>`` or ``shape=<shape>``: how the result names the model."""
    return f"pretrained={opts.pretrained}" if opts.pretrained else f"shape={opts.shape or 'tiny'}"


def _checkpoint_class(name: str) -> type:
    """The HoliTom class of a checkpoint by its config's ``model_type`` (`models.model_class_for`).

    Without the models package: the stock LLaVA-OneVision class (dense only). ValueError for another family.
    """
    try:
        from lmms_holitom.hf.models import model_class_for
    except ImportError:
        from transformers import LlavaOnevisionForConditionalGeneration

        return LlavaOnevisionForConditionalGeneration
    try:
        return model_class_for(name)
    except OSError as err:
        raise ValueError(f"--pretrained {name}: {err}") from None


def _check_qwen3_depth(shape: Any, methods: tuple[str, ...] = ()) -> None:
    """ValueError, before the model is built, for a Qwen3-VL(-MoE) shape too shallow for any inner-merge layer after
    its deepstack injections, or a hybrid shape (Qwen3.5) with no layer after a full-attention layer while
    ``methods`` need an inner step."""
    from lmms_holitom.methods import get_method

    kinds = shape.llm.kinds
    if set(kinds) != {FULL_ATTENTION} and any(get_method(m).inner is not None for m in methods):
        allowed = merge_layers(kinds)
        if not allowed:
            need = kinds.index(FULL_ATTENTION) + 2 if FULL_ATTENTION in kinds else len(kinds) + 1
            base = shape.name.split("-layers=")[0]
            raise ValueError(f"shape {shape.name!r}: the inner merge / FastV need a layer K whose layer K-1 is full "
                             f"attention; this hybrid decoder has none, so it needs at least {need} decoder layers "
                             f"(e.g. {base}-layers={need + 3}, two full-attention layers)")
    streams = len(shape.vision.get("deepstack_visual_indexes", ()))
    if shape.family in ("qwen3_vl", "qwen3_vl_moe") and shape.llm.layers <= streams:
        raise ValueError(f"shape {shape.name!r}: Qwen3-VL adds {streams} deepstack streams after decoder layers "
                         f"0..{streams - 1}, so it needs at least {streams + 1} decoder layers "
                         f"(e.g. {shape.name.split('-layers=')[0]}-layers={streams + 1})")


def load_model(opts: BenchOptions, device: torch.device, dtype: torch.dtype) -> tuple[Any, str, bool]:
    """(model, label, holitom_capable): by shape (random weights) or by path; HoliTom class of the family.

    The family comes from the shape (`shapes.BenchShape.family`) or the checkpoint's ``model_type``
    (LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL).
    """
    if opts.pretrained:
        from lmms_holitom.testing import resolve_pretrained

        path = resolve_pretrained(opts.pretrained)
        cls = _checkpoint_class(path)
        kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": opts.attn_implementation}
        if hasattr(cls, "set_holitom"):
            kwargs["holitom"] = HoliTomConfig(method=DENSE)
        model = cls.from_pretrained(path, **kwargs).to(device).eval()
    else:
        from lmms_holitom.shapes import build_model, parse_shape

        shape = parse_shape(opts.shape or "tiny")
        _check_qwen3_depth(shape, tuple(opts.methods))
        cls = holitom_model_class(shape.family)
        model = build_model(shape, device=device, dtype=dtype, model_cls=cls, seed=opts.seed,
                            attn_implementation=opts.attn_implementation)
    return model, model_label(opts), hasattr(model, "set_holitom")


@dataclass
class Record:
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


class Runner:
    """Greedy ``generate`` calls on fixed inputs, timed by a `Clock` and split into phases by `PhaseHooks`.

    ``rec=None`` makes a call a warm-up (measured, not recorded).
    """

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
        """Switch the model to ``setting`` (only dense without the HoliTom class)."""
        if self.holitom:
            self.model.set_holitom(setting.config)
        elif setting.config.method != DENSE:
            raise RuntimeError("the HoliTom model class is not available: only dense can be measured")

    def _generate(self, new_tokens: int, **extra: Any) -> Any:
        with torch.inference_mode():
            return self.model.generate(**self.inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                       **self.gen_kwargs, **extra)

    def _timed(self, new_tokens: int) -> tuple[Any, Any, float]:
        """(output, start mark, total ms) of one synchronised ``generate`` call with fresh phase marks."""
        self.hooks.reset()
        self.clock.sync()
        start = self.clock.mark()
        out = self._generate(new_tokens)
        end = self.clock.mark()
        self.clock.sync()
        return out, start, self.clock.ms(start, end)

    def ttft(self, rec: Record | None) -> None:
        """A 1-token call: TTFT, the hooks' vision / after-vision times and the model's own stage times."""
        _, _, total = self._timed(1)
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

    def decode(self, rec: Record | None) -> None:
        """An n-token call: decode tok/s = (n − 1) / (total − the first token's logits, in the same call)."""
        n = self.opts.new_tokens
        out, start, total = self._timed(n)
        if rec is None:
            return
        first = self.clock.ms(start, self.hooks.marks.get("first_logits"))
        rec.decode_total.append(total)
        rec.first_token.append(first)
        rec.generated = int(out.shape[1] - self.inputs["input_ids"].shape[1])
        rest = total - first
        rec.decode_tok_s.append((n - 1) / (rest / 1000.0) if n > 1 and rest > 0 else float("nan"))

    def memory(self, rec: Record) -> None:
        """An untimed n-token call: peak memory per phase, the LLM-side peak and the KV cache's size."""
        meter = fresh_meter(self.device)
        rss = None if self.device.type == "cuda" else RssSampler()
        with meter:
            meter.start()
            self.hooks.reset(meter)
            if rss is not None:
                with rss:
                    out = self._generate(self.opts.new_tokens, return_dict_in_generate=True)
            else:
                out = self._generate(self.opts.new_tokens, return_dict_in_generate=True)
            self.clock.sync()
            meter.boundary("decode")
            self.hooks.reset()
            cache = getattr(out, "cache", None)
            kv = cache_bytes(cache if cache is not None else getattr(out, "past_key_values", None))
        del out
        phases = meter.phase_peaks
        rec.memory = {
            "measure": meter.measure,
            "peak_mb": meter.overall() / MB,
            "llm_peak_mb": max(phases.get("merge_and_prefill", 0), phases.get("decode", 0)) / MB,
            "phase_peak_mb": {k: v / MB for k, v in phases.items()},
            "kv_cache_mb": kv / MB,
            "rss_peak_delta_mb": rss.delta_mb if rss is not None else None,
        }


def measure_settings(model: Any, inputs: dict[str, torch.Tensor], settings: Sequence[Setting], opts: BenchOptions,
                     device: torch.device, holitom: bool, log: Callable[[str], None],
                     t0: float) -> dict[str, Record]:
    """Warm-ups, then ``opts.repeats`` rounds over the settings, then (``opts.memory``) the memory pass.

    ``t0`` (a ``perf_counter`` time) is the start of the run, for the progress lines.
    """
    runner = Runner(model, inputs, opts, device, holitom)
    records = {s.name: Record() for s in settings}
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
    return records
