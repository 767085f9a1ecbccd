"""`LmmsInterface`: the part of lmms-eval's model interface that every model of this plugin answers alike — the
transformers models (`base.HoliTomLmms`) and ``vllm_holitom`` (`vllm_model.VllmHoliTom`).

Import-light on purpose (lmms-eval's base class, model-arg parsing): ``vllm_holitom`` runs in a vLLM environment,
where the transformers models' modules are not needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from lmms_eval.api.model import lmms

from lmms_holitom.integrations.lmms_eval.model_args import build_from_model_args
from lmms_holitom.integrations.lmms_eval.settings import parse_on_video_error

__all__ = ["LmmsInterface"]

_Model = TypeVar("_Model", bound="LmmsInterface")


class LmmsInterface(lmms):
    """lmms-eval's construction from ``--model_args`` and the properties it reads; a subclass sets `MODEL_ID` and,
    in its constructor, ``_config``, ``_rank``, ``_world_size``, ``batch_size_per_gpu`` and ``on_video_error``."""

    is_simple = True
    MODEL_ID: ClassVar[str] = ""
    _config: Any
    _rank: int
    _world_size: int
    batch_size_per_gpu: int

    @classmethod
    def create_from_arg_string(
        cls: type[_Model], arg_string: str | Mapping[str, Any], additional_config: dict | None = None
    ) -> _Model:
        """What lmms-eval calls with ``--model_args`` and its own ``--batch_size``/``--device`` flags
        (`model_args.build_from_model_args`: a key given twice, or any bad setting under lmms-eval's command line,
        is a one-line error)."""
        return build_from_model_args(cls.MODEL_ID, cls, arg_string, additional_config)

    @property
    def config(self):
        return self._config

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def on_video_error(self) -> str:
        """``record`` or ``fail``; assigning ``raise`` (the former name) sets ``fail``."""
        return self._on_video_error

    @on_video_error.setter
    def on_video_error(self, value: str) -> None:
        self._on_video_error = parse_on_video_error(value)

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError(f"{self.MODEL_ID} does not implement generate_until_multi_round")
