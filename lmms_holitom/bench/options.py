"""The options of one bench run (`BenchOptions`, which the CLI fills from its flags) and their device/dtype."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmms_holitom.bench.settings import DEFAULT_METHODS
from lmms_holitom.config import DEFAULTS
from lmms_holitom.values import resolve_dtype as _resolve_dtype

__all__ = ["BenchOptions", "resolve_device", "resolve_dtype"]

@dataclass
class BenchOptions:
    """Everything one bench run needs (the CLI maps its flags onto this)."""

    pretrained: str | None = None
    shape: str | None = "tiny"
    frames: int = 32
    methods: tuple[str, ...] = DEFAULT_METHODS
    retain_ratios: tuple[float, ...] = (0.10, 0.25)
    merge_layer: int = DEFAULTS["merge_layer"]
    merge_ratio: float = 0.5
    tau: float | None = None
    budget: str = DEFAULTS["budget"]
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
    """``None`` / ``""`` / ``auto``: CUDA when available, else the CPU; a CUDA name without CUDA is an error."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA, fp32 otherwise; else fp32 / bf16 / fp16 or their long names (`config.resolve_dtype`)."""
    return _resolve_dtype(name, device, name="--dtype")
