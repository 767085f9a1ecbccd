"""Model families as small adapters of the HoliTom engine (`lmms_holitom.engine`), one module each.

* LLaVA-OneVision and LLaVA-Video: `llava_onevision` (+ `llava_vision` the vision side, `llava_layout` the
  layouts, `probes` the SigLIP saliency probe, `checkpoints` / `llava_next` loading, `processing` processors);
* Qwen2.5-VL and Qwen3-VL: `qwen2_5_vl`, `qwen3_vl` (+ `qwen_common` what they share, `qwen_vision` the
  saliency probe of their vision encoders);
* a new family goes in a new module here: a subclass of the transformers class and
  `engine.model.HoliTomModelMixin`, implementing `engine.adapter.HoliTomAdapter`.

``HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(path, holitom=HoliTomConfig(...))`` loads any
LLaVA-OneVision checkpoint; ``generate(**processor_outputs)`` works as the stock model's and ``model.holitom_stats``
describes the last prefill.
"""

from lmms_holitom.models.checkpoints import SUPPORTED_TEXT_MODELS, check_checkpoint
from lmms_holitom.models.layout import VideoLayout
from lmms_holitom.models.llava_onevision import HoliTomLlavaOnevisionForConditionalGeneration
from lmms_holitom.models.llava_vision import HoliTomLlavaOnevisionModel
from lmms_holitom.models.names import resolve_model_name
from lmms_holitom.models.probes import VideoSaliency
from lmms_holitom.models.qwen2_5_vl import HoliTomQwen2_5_VLForConditionalGeneration
from lmms_holitom.models.qwen3_vl import HoliTomQwen3VLForConditionalGeneration

__all__ = [
    "SUPPORTED_TEXT_MODELS",
    "HoliTomLlavaOnevisionForConditionalGeneration",
    "HoliTomLlavaOnevisionModel",
    "HoliTomQwen2_5_VLForConditionalGeneration",
    "HoliTomQwen3VLForConditionalGeneration",
    "VideoLayout",
    "VideoSaliency",
    "check_checkpoint",
    "load_processor",
    "resolve_model_name",
]


def load_processor(path_or_name: str, **kwargs: object) -> object:
    """The processor of a checkpoint (HF or LLaVA-NeXT format); see `processing.load_processor`."""
    from lmms_holitom.models.processing import load_processor as load

    return load(path_or_name, **kwargs)
