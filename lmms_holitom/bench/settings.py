"""What one bench run measures: the `Setting` list (dense first, then every method at every retain ratio).

Pure functions of the requested methods, retain ratios and decoder depth: `paper_tau` (the paper's threshold
rule) and `build_settings` (HoliTom's K and FastV's K scaled to shallow models by `shapes.scale_layer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lmms_holitom.config import DEFAULTS, METHODS, HoliTomConfig
from lmms_holitom.layer_kinds import FULL_ATTENTION, merge_layers
from lmms_holitom.methods import DENSE, get_method
from lmms_holitom.shapes import scale_layer

__all__ = ["DEFAULT_METHODS", "Setting", "build_settings", "paper_tau"]

DEFAULT_METHODS = METHODS  #: every method of the registry


@dataclass(frozen=True)
class Setting:
    """One measured configuration: a display name, the `HoliTomConfig`, and its nominal retain ratio."""

    name: str
    config: HoliTomConfig
    retain_ratio: float | None = None


def paper_tau(retain_ratio: float) -> float:
    """The paper's threshold: T = 0.65 at retain 10 % (and below), 0.80 otherwise."""
    return 0.65 if retain_ratio <= 0.10 + 1e-9 else 0.80


def _fastv_settings(method: str, ratios: list[float], k_fastv: int | None, fastv_ratio: float | str) -> list[Setting]:
    """FastV once at (K, r), or with ``fastv_ratio="match"`` once per retain ratio with r = 1 − retain."""
    if k_fastv is None:
        raise ValueError(f"{method} needs a model with >= 2 decoder layers")
    if fastv_ratio == "match":
        return [Setting(f"{method}@{r:.2f}", HoliTomConfig(method=method, merge_layer=k_fastv,
                                                           merge_ratio=round(1.0 - r, 6)), r) for r in ratios]
    r_fv = float(fastv_ratio)
    cfg = HoliTomConfig(method=method, merge_layer=k_fastv, merge_ratio=r_fv)
    return [Setting(f"{method} K{k_fastv} r{r_fv:g}", cfg, None)]


def _ratio_config(method: str, r: float, tau: float | None, k: int | None, merge_ratio: float,
                  budget: str = DEFAULTS["budget"]) -> HoliTomConfig:
    """The config of a method that reads ``retain_ratio``, at ``r``: the paper's T where it reads ``tau``,
    HoliTom's K and r where it has an inner step, and ``budget`` where it reads it and it is not the default."""
    spec = get_method(method)
    values: dict[str, object] = {"method": method, "retain_ratio": r}
    if "budget" in spec.reads and budget != DEFAULTS["budget"]:
        values["budget"] = budget
    if "tau" in spec.reads:
        values["tau"] = paper_tau(r) if tau is None else tau
    if spec.inner is not None:
        values.update(merge_layer=k, merge_ratio=merge_ratio)
    return HoliTomConfig(**values)


def _at_least(layer: int, min_layer: int, layers: int) -> int:
    """``max(layer, min_layer)``; ValueError when that is not a layer before the last (``< layers``)."""
    if min_layer >= layers:
        raise ValueError(f"the inner merge / FastV need a decoder layer K with {min_layer} <= K < {layers}: "
                         f"use a model with more than {min_layer} decoder layers")
    return max(layer, min_layer)


def _after_full_attention(layer: int | None, layer_types: tuple[str, ...]) -> int | None:
    """The merge layer nearest ``layer`` whose layer K-1 is full attention (a tie: the deeper one)."""
    allowed = merge_layers(layer_types)
    if not allowed:
        first = layer_types.index(FULL_ATTENTION) + 2 if FULL_ATTENTION in layer_types else None
        need = f"at least {first} decoder layers" if first else "a full-attention layer"
        raise ValueError(f"the inner merge / FastV need a layer K after a full-attention layer (K-1 full attention): "
                         f"this {len(layer_types)}-layer hybrid decoder has none; use {need}")
    return None if layer is None else min(allowed, key=lambda a: (abs(a - layer), -a))


def build_settings(
    methods: Sequence[str],
    retain_ratios: Sequence[float],
    layers: int,
    *,
    merge_layer: int = DEFAULTS["merge_layer"],
    merge_ratio: float = 0.5,
    tau: float | None = None,
    fastv_layer: int = 2,
    fastv_ratio: float | str = 0.8,
    min_layer: int = 1,
    budget: str = DEFAULTS["budget"],
    layer_types: tuple[str, ...] | None = None,
) -> list[Setting]:
    """The settings of one bench run, dense first.

    * ``dense`` once; every method that reads ``retain_ratio`` (HoliTom, VisionZip, ...) once per ratio;
    * ``tau=None``: the paper's rule (`paper_tau`); HoliTom's K is ``merge_layer`` (18), scaled to a
      shallower model by `shapes.scale_layer` (K = round(18/28 · layers) when 18 is not a layer of it);
    * ``fastv`` once at the paper's LLM-only setting (K = ``fastv_layer`` = 2, r = ``fastv_ratio`` = 0.8), or
      with ``fastv_ratio="match"`` once per retain ratio with r = 1 − retain (the same visual budget after K);
    * both K are raised to ``min_layer`` at least (Qwen3-VL: its deepstack stream count, 3 on Qwen3-VL-8B, as
      no token may be cut before the last injection), kept below ``layers``;
    * ``budget``: HoliTom's outer-merge count, ``adaptive`` or ``exact`` (algorithm §5c);
    * ``layer_types`` (a hybrid decoder, e.g. Qwen3.5): both K then move to the nearest layer whose layer K-1 is
      full attention (`layer_kinds.merge_layers`; a tie to the deeper one: 18 -> 20 and FastV's 2 -> 4 on 32
      layers); ValueError when there is none.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    ratios = list(dict.fromkeys(float(r) for r in retain_ratios))
    by_ratio = [m for m in dict.fromkeys(methods) if "retain_ratio" in get_method(m).reads]
    if not ratios and by_ratio:
        raise ValueError(f"--retain-ratios must list at least one ratio for {' / '.join(by_ratio)}")
    k = _at_least(scale_layer(merge_layer, layers), min_layer, layers) if layers >= 2 else None
    k_fastv = _at_least(scale_layer(fastv_layer, layers), min_layer, layers) if layers >= 2 else None
    if layer_types is not None and any(get_method(m).inner is not None for m in methods):
        k, k_fastv = _after_full_attention(k, layer_types), _after_full_attention(k_fastv, layer_types)
    settings: list[Setting] = [Setting(DENSE, HoliTomConfig(method=DENSE))]
    for method in dict.fromkeys(methods):
        spec = get_method(method)
        if method in by_ratio:
            settings += [Setting(f"{method}@{r:.2f}", _ratio_config(method, r, tau, k, merge_ratio, budget), r)
                         for r in ratios]
        elif spec.inner is not None:  # FastV: no outer merge, a drop at K
            settings += _fastv_settings(method, ratios, k_fastv, fastv_ratio)
    return settings
