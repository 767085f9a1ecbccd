"""``holitom bench``: measured speed and memory of dense vs every method on one model.

One run builds (or loads) one model (LLaVA-OneVision, Qwen2.5-VL or Qwen3-VL, with the HoliTom class of its
``model_type``), one synthetic video and one prompt in that family's processor format, then measures every
setting (dense, HoliTom w/o M, HoliTom, VisionZip, FastV at the requested retain ratios) the same way:

* **TTFT**: wall time of ``generate(max_new_tokens=1)`` (device synchronised before and after);
* **stage times** from ``model.holitom_stats["timings_ms"]`` (the model's own timer: CUDA events on a GPU,
  ``perf_counter`` on a CPU): ``vision`` (tower + projector + pooling + saliency probe), ``outer_merge``,
  ``inner_merge``, ``llm`` (= the LLM prefill: decoder layers + LM head, includes ``inner_merge``);
  cross-checked by forward hooks (`meters.PhaseHooks`) on the vision tower and the LM head (``hooks_ms``);
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
(``stat="best"`` on a shared, noisy machine). Repeats of a figure that disagree (max / min >
`summary.DISAGREE_RATIO` = 1.5) are marked ``!`` in the table and the plot, with a warning naming them.

The **probe study** times the vision tower alone on the same frames three ways: as is (SDPA, no probe), with
the model's `VisionSaliencyProbe` on the feature layer (HoliTom's way), and an eager-attention copy of the
tower returning every layer's attention (``output_attentions=True``, the original code's way) — "probe
overhead %" and the peak memory of each; the probe is run at several chunk sizes to show memory O(chunk).

Models: ``--pretrained PATH|tiny|tiny-qwen2.5-vl|tiny-qwen3-vl`` or
``--shape tiny|0.5b|7b|72b|qwen2.5-vl-7b|qwen3-vl-8b|<preset>-layers=N`` (random weights, `lmms_holitom.shapes`).
For Qwen VL (`qwen`), ``--frames F`` are input frames: F/2 temporal groups of 448×448 px, each a HoliTom frame
of 256 (Qwen2.5-VL) / 196 (Qwen3-VL) tokens; the probe study times the encoder alone with and without
`QwenVisionSaliencyProbe` (no eager variant); on Qwen3-VL every inner-merge / FastV layer is at least the
deepstack stream count. The HoliTom model class (`lmms_holitom.hf.models`) runs every method; without it only
dense can be measured (stock transformers class).

Modules (each small, each with its own docstring):

* `settings` — `Setting`, `build_settings`, `paper_tau`: what one run measures;
* `options` — `BenchOptions` (what the CLI fills), `resolve_device`, `resolve_dtype`;
* `inputs` — `synthetic_video`, `synthetic_prompt`, `synthetic_text`, `tokens_per_frame`;
* `qwen` — Qwen VL's processor-format inputs (`qwen_inputs`) and cost-model shape (`qwen_shape`);
* `meters` — `Clock`, the memory meters, `RssSampler`, `PhaseHooks`, KV-cache bytes;
* `runner` — `load_model`, the `Runner` of ``generate`` calls and the measurement loop;
* `summary` — statistics, per-setting records, ratios to dense, targets (`SETTING_FIELDS`, `TIMING_FIELDS`),
  repeats that disagree (`DISAGREE_RATIO`, `disagreements`);
* `probe` — the probe study;
* `engine` — `run_bench`, which ties them together;
* `report` — `format_table`, `write_json`, `write_plot`;
* `figure` — `bench_figure`: one panel per stage, the statistic with its min–max, log panels for wide ranges.

``--backend vllm`` (run in an environment with vLLM; none of these modules imports the transformers backend, so
they load with the transformers release vLLM pins):

* `vllm_model` — random-weight LLaVA-OneVision checkpoints of a chosen shape (`VLLM_SHAPES`), written for vLLM;
* `vllm_options` — `VllmBenchOptions` and its settings (dense, then each method vLLM can run at each ratio);
* `vllm_measure` — in-process engines, batches of concurrent requests, the pruning's own time;
* `vllm_engine` — `run_vllm_bench`: engines started first, repeats round-robin, ratios to dense, targets;
* `vllm_report` — `format_vllm_table`, `vllm_figure`.
"""

from __future__ import annotations

from lmms_holitom.bench.engine import SCHEMA, run_bench
from lmms_holitom.bench.inputs import synthetic_prompt, synthetic_video, tokens_per_frame
from lmms_holitom.bench.meters import (
    Clock,
    CudaMemoryMeter,
    MemoryMeter,
    PhaseHooks,
    RssSampler,
    TrackedMemoryMeter,
)
from lmms_holitom.bench.options import BenchOptions, resolve_device, resolve_dtype
from lmms_holitom.bench.report import format_table, write_json, write_plot
from lmms_holitom.bench.runner import holitom_model_class, load_model
from lmms_holitom.bench.settings import DEFAULT_METHODS, Setting, build_settings, paper_tau
from lmms_holitom.bench.summary import SETTING_FIELDS, TIMING_FIELDS, summarize

__all__ = [
    "DEFAULT_METHODS",
    "SCHEMA",
    "SETTING_FIELDS",
    "TIMING_FIELDS",
    "BenchOptions",
    "Clock",
    "CudaMemoryMeter",
    "MemoryMeter",
    "PhaseHooks",
    "RssSampler",
    "Setting",
    "TrackedMemoryMeter",
    "build_settings",
    "format_table",
    "holitom_model_class",
    "load_model",
    "paper_tau",
    "resolve_device",
    "resolve_dtype",
    "run_bench",
    "summarize",
    "synthetic_prompt",
    "synthetic_video",
    "tokens_per_frame",
    "write_json",
    "write_plot",
]
