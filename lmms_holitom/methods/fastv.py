"""``fastv``: FastV (Chen et al., ECCV 2024) — no outer merge; at decoder layer K the visual tokens the last prompt
token attends to least are dropped (algorithm §6.6). Its defaults are the paper's LLM-only setting, K = 2 and
r = 0.8 (80 % of the visual tokens dropped after layer 2), everywhere a FastV configuration leaves them unset."""

from __future__ import annotations

from lmms_holitom.methods.base import Method

__all__ = ["METHOD"]

METHOD = Method(
    name="fastv",
    label="FastV",
    reads=frozenset({"merge_layer", "merge_ratio", "fidelity"}),
    headline=("merge_layer", "merge_ratio"),
    defaults={"merge_layer": 2, "merge_ratio": 0.8},
    inner="drop",
    reference="FastV, arXiv 2403.06764 (K = 2, R = 50 % in its paper; HoliTom's tables use r = 0.8)",
)
