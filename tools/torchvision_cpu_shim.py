"""Make PyPI's torchvision importable beside a ``+cpu`` torch (vLLM's CPU build), for the vLLM venv.

PyPI's torchvision wheels are CUDA builds: their C extension cannot load beside a ``+cpu`` torch, and
``import torchvision`` then fails in ``torchvision/_meta_registrations.py`` with "operator torchvision::nms does not
exist", because it registers fake kernels for ``torchvision::nms`` / ``qnms`` without checking that the extension
defined them. vLLM's LLaVA code imports torchvision's pure-Python transforms (through transformers' Pixtral
processor), which work without the extension. ``tools/venv.sh vllm`` installs this module with a ``.pth`` line that
imports it at start-up; it defines those two operator schemas just before torchvision is first imported (torch is
not imported otherwise). Not needed where torchvision matches torch (a CUDA vLLM, or PyTorch's CPU wheels).
"""

import importlib.abc
import sys

_LIBRARY = None


class _DefineTorchvisionSchemas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        global _LIBRARY
        if name == "torchvision":
            sys.meta_path.remove(self)
            import torch

            try:
                _LIBRARY = torch.library.Library("torchvision", "DEF")
                _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
                _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            except RuntimeError:  # defined already (an extension that loads, or a second import)
                _LIBRARY = None
        return None


sys.meta_path.insert(0, _DefineTorchvisionSchemas())
