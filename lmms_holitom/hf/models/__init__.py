"""Model families as small adapters of the HoliTom engine (`lmms_holitom.hf`), one module each.

* LLaVA-OneVision and LLaVA-Video: `llava_onevision` (+ `llava_vision` the vision side, `llava_layout` the
  layouts, `probes` the SigLIP saliency probe, `checkpoints` / `llava_next` loading, `processing` processors);
* Qwen2.5-VL, Qwen3-VL (+ MoE) and Qwen3.5 (+ MoE, hybrid linear attention): `qwen2_5_vl`, `qwen3_vl`, `qwen3_5`
  (+ `qwen_common` what they share, `qwen_vision` the saliency probe of their vision encoders);
* a new family goes in a new module here: a subclass of the transformers class and
  `hf.model.HoliTomModelMixin`, implementing `hf.adapter.HoliTomAdapter`.

``HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(path, holitom=HoliTomConfig(...))`` loads any
LLaVA-OneVision checkpoint; ``generate(**processor_outputs)`` works as the stock model's and ``model.holitom_stats``
describes the last prefill.
"""

from lmms_holitom.hf.models.checkpoints import SUPPORTED_TEXT_MODELS, check_checkpoint
from lmms_holitom.hf.models.layout import VideoLayout
from lmms_holitom.hf.models.llava_onevision import HoliTomLlavaOnevisionForConditionalGeneration
from lmms_holitom.hf.models.llava_vision import HoliTomLlavaOnevisionModel
from lmms_holitom.hf.models.names import resolve_model_name
from lmms_holitom.hf.models.probes import VideoSaliency
from lmms_holitom.hf.models.qwen2_5_vl import HoliTomQwen2_5_VLForConditionalGeneration
from lmms_holitom.hf.models.qwen3_5 import (
    HoliTomQwen3_5ForConditionalGeneration,
    HoliTomQwen3_5MoeForConditionalGeneration,
)
from lmms_holitom.hf.models.qwen3_vl import (
    HoliTomQwen3VLForConditionalGeneration,
    HoliTomQwen3VLMoeForConditionalGeneration,
)

__all__ = [
    "SUPPORTED_TEXT_MODELS",
    "HoliTomLlavaOnevisionForConditionalGeneration",
    "HoliTomLlavaOnevisionModel",
    "HoliTomQwen2_5_VLForConditionalGeneration",
    "HoliTomQwen3VLForConditionalGeneration",
    "HoliTomQwen3VLMoeForConditionalGeneration",
    "HoliTomQwen3_5ForConditionalGeneration",
    "HoliTomQwen3_5MoeForConditionalGeneration",
    "VideoLayout",
    "VideoSaliency",
    "check_checkpoint",
    "load_processor",
    "model_class_for",
    "resolve_model_name",
]


def model_class_for(path_or_name: str) -> type:
    """The HoliTom class for a checkpoint (folder, hub id or built-in tiny name), by its config's ``model_type``.

    Raises:
        OSError: the checkpoint's config.json cannot be read.
        ValueError: a model_type no HoliTom class loads (the message names it and the supported ones).
    """
    from transformers import PretrainedConfig

    by_model_type: dict[str, type] = {  # llava / llava_qwen: LLaVA-NeXT-format checkpoints
        "llava_onevision": HoliTomLlavaOnevisionForConditionalGeneration,
        "llava": HoliTomLlavaOnevisionForConditionalGeneration,
        "llava_qwen": HoliTomLlavaOnevisionForConditionalGeneration,
        "qwen2_5_vl": HoliTomQwen2_5_VLForConditionalGeneration,
        "qwen3_vl": HoliTomQwen3VLForConditionalGeneration,
        "qwen3_vl_moe": HoliTomQwen3VLMoeForConditionalGeneration,
        "qwen3_5": HoliTomQwen3_5ForConditionalGeneration,
        "qwen3_5_moe": HoliTomQwen3_5MoeForConditionalGeneration,
    }
    name = resolve_model_name(path_or_name)
    try:
        model_type = PretrainedConfig.get_config_dict(name)[0].get("model_type")
    except OSError as err:
        raise OSError(f"cannot read the config of {str(path_or_name)!r}: {err}") from err
    if model_type not in by_model_type:
        raise ValueError(
            f"{str(path_or_name)!r} has model_type {model_type!r}, which HoliTom does not load "
            f"(supported: {', '.join(by_model_type)})"
        )
    return by_model_type[model_type]


def load_processor(path_or_name: str, **kwargs: object) -> object:
    """The processor of a checkpoint (HF or LLaVA-NeXT format); see `processing.load_processor`."""
    from lmms_holitom.hf.models.processing import load_processor as load

    return load(path_or_name, **kwargs)
