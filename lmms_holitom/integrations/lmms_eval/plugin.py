"""Entry point of the ``lmms_eval.models`` group: registers ``llava_onevision_holitom``, ``qwen2_5_vl_holitom``,
``qwen3_vl_holitom`` (Qwen3-VL and its MoE), ``qwen3_5_holitom`` (Qwen3.5 and its MoE) and ``vllm_holitom`` (vLLM
with the HoliTom plugin; needs a vLLM environment).

Kept import-light on purpose: lmms-eval loads every entry point whenever ``lmms_eval.models`` is imported,
and an exception here silently stops all plugin loading. The model classes are imported only when selected.
"""

from __future__ import annotations

MODEL_ID = "llava_onevision_holitom"
CLASS_PATH = "lmms_holitom.integrations.lmms_eval.llava.LlavaOneVisionHoliTom"
#: model id -> class path, every model the plugin registers
MODELS = {
    MODEL_ID: CLASS_PATH,
    "qwen2_5_vl_holitom": "lmms_holitom.integrations.lmms_eval.qwen.Qwen2_5_VLHoliTom",
    "qwen3_vl_holitom": "lmms_holitom.integrations.lmms_eval.qwen.Qwen3VLHoliTom",
    "qwen3_5_holitom": "lmms_holitom.integrations.lmms_eval.qwen.Qwen3_5HoliTom",
    "vllm_holitom": "lmms_holitom.integrations.lmms_eval.vllm_model.VllmHoliTom",
}


def manifests():
    """Return the `ModelManifest` list lmms-eval registers (called lazily by lmms-eval)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [
        ModelManifest(model_id=model_id, simple_class_path=path, aliases=("holitom",) if model_id == MODEL_ID else ())
        for model_id, path in MODELS.items()
    ]
