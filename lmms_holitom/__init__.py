"""lmms-holitom: HoliTom (holistic token merging for video LLMs) as an lmms-eval plugin.

Light on import: only the config is loaded eagerly; the tensor layer (`lmms_holitom.ops`), the FLOPs
model (`lmms_holitom.flops`) and the transformers subclasses (`lmms_holitom.hf.models`) are imported on use.
"""

from lmms_holitom.config import FIDELITIES, METHODS, HoliTomConfig

__version__ = "0.2.0"
__all__ = ["FIDELITIES", "METHODS", "HoliTomConfig", "__version__"]
