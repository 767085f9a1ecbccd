"""Entry point of the ``lmms_eval.models`` group: registers ``llava_onevision_holitom``.

Kept import-light on purpose: lmms-eval loads every entry point whenever ``lmms_eval.models`` is imported,
and an exception here silently stops all plugin loading. The model class itself
(`lmms_holitom.lmms_eval_model.LlavaOneVisionHoliTom`) is imported only when the model is selected.
"""

from __future__ import annotations

MODEL_ID = "llava_onevision_holitom"
CLASS_PATH = "lmms_holitom.lmms_eval_model.LlavaOneVisionHoliTom"


def manifests():
    """Return the `ModelManifest` list lmms-eval registers (called lazily by lmms-eval)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH, aliases=("holitom",))]
