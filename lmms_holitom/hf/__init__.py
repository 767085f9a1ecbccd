"""The transformers backend of HoliTom: one compressed prefill and cached decoding for any transformers decoder,
driven by a family adapter (the framework-free parts every backend shares are `lmms_holitom.core`).

* `model.HoliTomModelMixin` — configuration, dispatch, stats, trace, cache preparation (mixed into each family's
  transformers class);
* `adapter` — what a family provides (`HoliTomAdapter`, returning `core.video.EncodedVideo`);
* `prefill.compressed_prefill` — the stages: encode -> outer merge (`core.outer`) -> layout -> splice (`core.splice`)
  -> positions -> decoder layers with the inner step -> cache state;
* `decoder` (the decoder-layer loop, mirroring transformers; range: `compat`), `attention` (the inner merge's
  attention row), `cache` (`HoliTomCache`), `outputs` (typed vision outputs).

No module here names a model family.
"""

from lmms_holitom.core.outer import compress_video
from lmms_holitom.core.state import PrefillState, SequenceState
from lmms_holitom.core.stats import STAGES, HoliTomStats, StageTimer
from lmms_holitom.core.trace import NEWLINE_ORIGIN, HoliTomTrace
from lmms_holitom.hf.cache import HoliTomCache

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
