"""HoliTom inside transformers' LLaVA-OneVision (subclasses, probes, inner-merge decoder).

``HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(path, holitom=HoliTomConfig(...))`` loads any
LLaVA-OneVision checkpoint; ``generate(**processor_outputs)`` works as the stock model's and
``model.holitom_stats`` describes the last prefill.
"""

from lmms_holitom.models.llava_onevision import (
    SUPPORTED_TEXT_MODELS,
    HoliTomLlavaOnevisionForConditionalGeneration,
    HoliTomLlavaOnevisionModel,
    VideoSaliency,
    check_checkpoint,
)
from lmms_holitom.models.names import LMMS_LAB_TO_HF, resolve_model_name

__all__ = [
    "LMMS_LAB_TO_HF",
    "SUPPORTED_TEXT_MODELS",
    "HoliTomLlavaOnevisionForConditionalGeneration",
    "HoliTomLlavaOnevisionModel",
    "VideoSaliency",
    "check_checkpoint",
    "resolve_model_name",
]
