"""``holitom`` and ``holitom_wo_m``: HoliTom (algorithm §2–§6) — the outer merge (temporal segments, static tokens,
per-frame dominant and contextual tokens) to about ``retain_ratio`` of the tokens, and for ``holitom`` the inner
merge at decoder layer K (``merge_layer``, ``merge_ratio``); ``holitom_wo_m`` is the outer merge alone. With
``budget: exact`` the outer merge is reconciled to exactly ``F · ceil(retain_ratio · N)`` tokens (§5c)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmms_holitom.methods.base import Method

if TYPE_CHECKING:
    from torch import Tensor

    from lmms_holitom.config import HoliTomConfig
    from lmms_holitom.ops import CompressedVideo

__all__ = ["METHOD", "WO_M"]

_OUTER_FIELDS = frozenset({"retain_ratio", "tau", "beta", "contextual_ratio", "knn_k", "max_window_size",
                           "beta_merge", "fidelity", "budget"})


def _outer(features: Tensor, attention: Tensor | None, keys: Tensor | None, config: HoliTomConfig) -> CompressedVideo:
    from lmms_holitom.ops import fit_to_count, holitom_merge

    if attention is None:
        raise ValueError(f"attention must be given (an (F, N) tensor) for method {config.method!r}")
    out = holitom_merge(
        features, attention, retain_ratio=config.retain_ratio, tau=config.tau,
        max_window_size=config.max_window_size, contextual_ratio=config.contextual_ratio, knn_k=config.knn_k,
        beta=config.beta, beta_merge=config.beta_merge,
    )
    if config.budget != "exact":
        return out
    frames, tokens = int(features.shape[0]), int(features.shape[1])
    return fit_to_count(out, features, attention, _budget(config, frames, tokens))


def _budget(config: HoliTomConfig, frames: int, tokens: int) -> int:
    """The paper's count, `ops.exact_count`: ``F · ceil(retain_ratio · N)`` (its tables' TFLOPs); the merge meets
    it exactly with ``budget: exact`` and adapts per video otherwise."""
    from lmms_holitom.ops import exact_count

    return exact_count(frames, tokens, config.retain_ratio)


METHOD = Method(
    name="holitom",
    label="HoliTom",
    reads=_OUTER_FIELDS | {"merge_layer", "merge_ratio"},
    headline=("retain_ratio", "tau", "merge_layer", "merge_ratio"),
    saliency=True,
    outer=_outer,
    inner="merge",
    budget=_budget,
    reference="HoliTom, NeurIPS 2025 (arXiv 2505.21334); the authors' code, cokeshao/HoliTom",
)

WO_M = Method(
    name="holitom_wo_m",
    label="HoliTom w/o M",
    reads=_OUTER_FIELDS,
    headline=("retain_ratio", "tau"),
    saliency=True,
    outer=_outer,
    budget=_budget,
    reference=METHOD.reference,
)
