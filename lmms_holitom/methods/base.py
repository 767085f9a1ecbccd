"""What a method is: the `Method` record each module of `lmms_holitom.methods` defines.

A method says which configuration fields it reads, which of them name a run, its own defaults of shared fields,
which signals of the vision tower it needs (the saliency probe, the pooled keys), its outer merge (a function of
the features, or none: every token enters the LLM), its step at decoder layer K (merge, drop or none), and how many
visual tokens the cost model counts for it. The registry (`lmms_holitom.methods`) is the one list of methods:
the config's validation, the CLI's choices, ``flops``, ``bench``, studies, reports and plots all read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import Tensor

    from lmms_holitom.config import HoliTomConfig
    from lmms_holitom.ops import CompressedVideo

__all__ = ["InnerMode", "Method", "OuterMerge"]

InnerMode = Literal["merge", "drop"]
#: ``outer(features (F, N, E), attention (F, N) or None, keys (F, N, Dk) or None, config) -> CompressedVideo``
OuterMerge = Callable[["Tensor", "Tensor | None", "Tensor | None", "HoliTomConfig"], "CompressedVideo"]
#: ``budget(config, frames, tokens_per_frame) -> visual tokens entering the LLM`` (the cost model's count)
Budget = Callable[["HoliTomConfig", int, int], int]


def all_tokens(config: HoliTomConfig, frames: int, tokens_per_frame: int) -> int:
    """Every visual token: ``F · N``."""
    return frames * tokens_per_frame


@dataclass(frozen=True)
class Method:
    """One token-reduction method.

    Attributes:
        name: the value of ``HoliTomConfig.method`` (``holitom``, ``evs``...).
        label: how tables and plots name it (``HoliTom w/o M``).
        reads: the `HoliTomConfig` fields it reads (``method`` aside); the others are irrelevant to it (a study
            drops them from its model_args and run names).
        headline: the fields a run of it is named by, in order (``holitom-r0.10-t0.65-k18-m0.5``).
        defaults: its own defaults of shared fields (FastV: ``merge_layer`` 2, ``merge_ratio`` 0.8), applied
            wherever a configuration of it leaves them unset.
        saliency: it needs the vision tower's attention (the saliency probe runs while the video is encoded).
        keys: it needs the pooled key vectors of that attention layer.
        outer: its merge before the LLM, or None (every visual token enters the LLM).
        inner: its step at decoder layer ``merge_layer`` (``merge``: HoliTom, ``drop``: FastV), or None; a
            config with ``merge_layer`` None has no inner step.
        budget: visual tokens entering the LLM as the cost model counts them (the paper's tables: a target, not
            a measurement); ``F · N`` by default.
        reference: where the method comes from (paper, and the code it must equal where there is one).
    """

    name: str
    label: str
    reads: frozenset[str]
    headline: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    saliency: bool = False
    keys: bool = False
    outer: OuterMerge | None = None
    inner: InnerMode | None = None
    budget: Budget = all_tokens
    reference: str = ""

    def inner_mode(self, merge_layer: int | None) -> InnerMode | None:
        """Its step at layer K for a configuration with this ``merge_layer`` (None: no step)."""
        return self.inner if merge_layer is not None else None
