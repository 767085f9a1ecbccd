"""What one ``holitom bench --backend vllm`` run measures: `VllmBenchOptions` and its settings (no vLLM import).

Every method vLLM can run through the plugin (`integrations.vllm.settings.VLLM_METHODS`) at every retain ratio,
HoliTom's outer merge at its exact budget (vLLM sizes the placeholders before the encoder runs), plus ``dense``
(the stock vLLM path). EVS and VidCom2 are ours (`lmms_holitom.methods`, run by the plugin): vLLM 0.32 has neither
for LLaVA-OneVision, so they are labelled ``(ours)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmms_holitom.bench.settings import Setting, build_settings
from lmms_holitom.bench.vllm_model import VllmShape, resolve_vllm_shape
from lmms_holitom.integrations.vllm.settings import VLLM_METHODS

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_VLLM_METHODS", "OURS", "STEP_POLICIES", "VllmBenchOptions", "label",
           "vllm_bench_settings"]

DEFAULT_VLLM_METHODS = ("holitom_wo_m", "visionzip", "evs", "vidcom2")
DEFAULT_CONCURRENCY = (1, 4, 16)
#: ``--step-tokens`` policies besides an integer (`vllm_measure.step_budget`)
STEP_POLICIES = ("default", "prompt")
MAX_STEP_TOKENS = 1_048_576
#: methods vLLM ships for other families only: here they run from `lmms_holitom.methods` through our plugin
OURS = ("evs", "vidcom2")


@dataclass(frozen=True)
class VllmBenchOptions:
    """One vLLM bench run (validated here, once)."""

    shape: str | None = None
    frames: int = 8
    methods: tuple[str, ...] = DEFAULT_VLLM_METHODS
    retain_ratios: tuple[float, ...] = (0.10, 0.25)
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    repeats: int = 2
    warmup: int = 1
    new_tokens: int = 16
    dtype: str = "bf16"
    seed: int = 0
    scenes: int = 4
    stat: str = "median"
    step_tokens: str = "default"

    def __post_init__(self) -> None:
        resolve_vllm_shape(self.shape)
        bad = [m for m in self.methods if m not in VLLM_METHODS]
        if bad:
            raise ValueError(f"--methods {','.join(bad)} cannot run with --backend vllm (they act at decoder layer "
                             f"K); allowed: {', '.join(VLLM_METHODS)}")
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError(f"--concurrency must list integers >= 1, got {self.concurrency!r}")
        if self.dtype not in ("bf16", "fp32"):
            raise ValueError(f"--dtype must be bf16 or fp32 with --backend vllm, got {self.dtype!r}")
        if self.step_tokens not in STEP_POLICIES and not (self.step_tokens.isdigit() and
                                                          1 <= int(self.step_tokens) <= MAX_STEP_TOKENS):
            raise ValueError(f"--step-tokens must be default, prompt or an integer in [1, {MAX_STEP_TOKENS}], got "
                             f"{self.step_tokens!r}")

    @property
    def model_shape(self) -> VllmShape:
        return resolve_vllm_shape(self.shape)


def label(setting: Setting) -> str:
    """The display name: ``evs (ours)@0.10`` for the methods vLLM does not ship for this family."""
    method = setting.config.method
    return setting.name.replace(method, f"{method} (ours)", 1) if method in OURS else setting.name


def vllm_bench_settings(opts: VllmBenchOptions) -> list[Setting]:
    """dense, then each method at each retain ratio (HoliTom w/o M at its exact budget)."""
    methods = [m for m in opts.methods if m != "dense"]
    return build_settings(methods, opts.retain_ratios, opts.model_shape.text_layers, budget="exact")
