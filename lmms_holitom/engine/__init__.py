"""The HoliTom engine: one compressed prefill and cached decoding for any decoder, driven by a family adapter.

* `model.HoliTomModelMixin` — configuration, dispatch, stats, trace, cache preparation (mixed into each family's
  transformers class);
* `adapter` — what a family provides (`EncodedVideo`, `HoliTomAdapter`);
* `prefill.compressed_prefill` — the stages: encode -> outer merge -> layout -> splice -> positions -> decoder
  layers with the inner step -> cache state;
* `outer.compress_video` — the method switch over the pure tensor layer `lmms_holitom.ops`;
* `splice`, `decoder` (the decoder-layer loop, mirroring transformers; range: `compat`), `attention` (the inner merge's
  attention row), `cache` (`HoliTomCache`), `stats` (`HoliTomStats`, `StageTimer`), `trace` (`HoliTomTrace`).

No module here names a model family.
"""

from lmms_holitom.engine.cache import HoliTomCache, PrefillState, SequenceState
from lmms_holitom.engine.outer import compress_video
from lmms_holitom.engine.stats import STAGES, HoliTomStats, StageTimer
from lmms_holitom.engine.trace import NEWLINE_ORIGIN, HoliTomTrace

__all__ = [
    "NEWLINE_ORIGIN",
    "STAGES",
    "HoliTomCache",
    "HoliTomStats",
    "HoliTomTrace",
    "PrefillState",
    "SequenceState",
    "StageTimer",
    "compress_video",
]
