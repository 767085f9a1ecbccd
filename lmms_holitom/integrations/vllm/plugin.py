"""Entry point of the ``vllm.general_plugins`` group (run in every vLLM process).

Registers our subclass for each architecture in `FAMILIES`. The classes behave as vLLM's own unless the model's
config has a ``holitom`` entry, so installing the package changes nothing for models run without it. Import-light:
the family modules (which import vLLM's model code) load only when vLLM builds such a model.
"""

from __future__ import annotations

__all__ = ["FAMILIES", "register"]

#: vLLM architecture name -> our class ("module:Class")
FAMILIES = {
    "LlavaOnevisionForConditionalGeneration": (
        "lmms_holitom.integrations.vllm.llava_onevision:HoliTomLlavaOnevisionForConditionalGeneration"
    ),
    "Qwen2_5_VLForConditionalGeneration": (
        "lmms_holitom.integrations.vllm.qwen2_5_vl:HoliTomQwen2_5_VLForConditionalGeneration"
    ),
    "Qwen3VLForConditionalGeneration": "lmms_holitom.integrations.vllm.qwen3_vl:HoliTomQwen3VLForConditionalGeneration",
    "Qwen3VLMoeForConditionalGeneration": (
        "lmms_holitom.integrations.vllm.qwen3_vl:HoliTomQwen3VLMoeForConditionalGeneration"
    ),
    "Qwen3_5ForConditionalGeneration": "lmms_holitom.integrations.vllm.qwen3_vl:HoliTomQwen3_5ForConditionalGeneration",
    "Qwen3_5MoeForConditionalGeneration": (
        "lmms_holitom.integrations.vllm.qwen3_vl:HoliTomQwen3_5MoeForConditionalGeneration"
    ),
}


def register() -> None:
    """Register every family's class with vLLM's model registry (idempotent)."""
    from vllm import ModelRegistry

    for architecture, target in FAMILIES.items():
        ModelRegistry.register_model(architecture, target)
