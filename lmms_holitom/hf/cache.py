"""The cache of a compressed prefill: a `DynamicCache` that also knows what the shortened sequence looks like.

After a HoliTom prefill the layers hold different lengths (layers >= K hold fewer visual tokens) and the cached
prompt is shorter than the caller's ``input_ids``. ``generate`` keeps counting positions and mask columns on the
un-shortened prompt, so decoding takes them from here instead (docs/algorithm.md §10).

State is per sequence (`SequenceState`), so ragged compressed sequences in one batch are an extension of this
class, not a rewrite; today the engine runs batch size 1.
"""

from __future__ import annotations

from transformers.cache_utils import DynamicCache

from lmms_holitom.core.state import PrefillState

__all__ = ["HoliTomCache"]


class HoliTomCache(DynamicCache):
    """`DynamicCache` plus the `PrefillState` of the compressed prefill that filled it (None until then).

    ``generate`` gets one through the model's ``_prepare_cache_for_generation``; a forward with ``use_cache``
    and no cache creates one.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.prefill_state: PrefillState | None = None
