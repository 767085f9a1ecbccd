"""Which checkpoints the LLaVA adapter loads, and how (HF format, LLaVA-NeXT format, ``tiny``).

* `check_checkpoint`: a LLaVA-OneVision-architecture checkpoint with a supported decoder, else a ValueError
  naming the model_type found;
* `register_weight_conversions`: transformers maps stored key layouts by class name and skips classes defined
  outside transformers unless registered — register the stock mapping under our class name (the public
  extension point; nothing else changes);
* `load_checkpoint`: the one loading path of ``from_pretrained`` — LLaVA-NeXT checkpoints through `llava_next`,
  everything else through transformers — returning ``(model, loading_info or None)`` with the video layout set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SUPPORTED_TEXT_MODELS", "check_checkpoint", "load_checkpoint", "register_weight_conversions"]

#: Decoder families whose layers `hf.decoder` and `hf.attention` handle (q/k projections, rotate-half RoPE).
SUPPORTED_TEXT_MODELS = ("qwen2", "llama", "mistral")
HUB_KWARGS = (
    "cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies",
    "trust_remote_code",
)


def register_weight_conversions(class_name: str, model_type: str) -> None:
    """Register transformers' stored-key conversion of ``model_type`` under ``class_name``."""
    try:
        from transformers.conversion_mapping import (
            get_checkpoint_conversion_mapping,
            register_checkpoint_conversion_mapping,
        )
    except ImportError:  # a transformers without key conversions: checkpoints load by their own keys
        return
    mapping = get_checkpoint_conversion_mapping(model_type)
    if mapping is not None:
        register_checkpoint_conversion_mapping(class_name, mapping, overwrite=True)


def check_checkpoint(pretrained: str | os.PathLike, config: Any = None, **hub_kwargs: Any) -> None:
    """Raise a ValueError naming the model_type found unless ``pretrained`` is a LLaVA-OneVision checkpoint."""
    from transformers import PretrainedConfig

    if config is None or isinstance(config, (str, os.PathLike)):
        source = pretrained if config is None else config
        try:
            config_dict, _ = PretrainedConfig.get_config_dict(source, **hub_kwargs)
        except OSError as err:
            raise OSError(f"cannot read the config of {str(source)!r}: {err}") from err
        model_type = config_dict.get("model_type")
        archs = config_dict.get("architectures") or []
        text_type = (config_dict.get("text_config") or {}).get("model_type", "qwen2")
    else:
        model_type = getattr(config, "model_type", None)
        archs = getattr(config, "architectures", None) or []
        text_type = getattr(getattr(config, "text_config", None), "model_type", "qwen2")
    if model_type != "llava_onevision":
        found = f"model_type {model_type!r}" + (f" ({', '.join(archs)})" if archs else "")
        raise ValueError(
            f"{str(pretrained)!r} is not a LLaVA-OneVision checkpoint: expected model_type 'llava_onevision' "
            f"(HF format) or a LLaVA-NeXT LlavaQwenForCausalLM checkpoint, found {found}. HoliTom's LLaVA adapter "
            "runs llava-hf/llava-onevision-*-hf, lmms-lab/llava-onevision-qwen2-*-ov and lmms-lab/LLaVA-Video-7B-Qwen2."
        )
    if text_type not in SUPPORTED_TEXT_MODELS:
        raise ValueError(
            f"{str(pretrained)!r} has a {text_type!r} language model; HoliTom's decoder supports "
            f"{', '.join(SUPPORTED_TEXT_MODELS)}"
        )


def _is_llava_next(name: Any, hub_kwargs: Mapping[str, Any]) -> bool:
    if not isinstance(name, (str, os.PathLike)):
        return False
    from lmms_holitom.hf.models.llava_next import is_llava_next_checkpoint

    return is_llava_next_checkpoint(os.fspath(name), **hub_kwargs)


def load_checkpoint(
    cls: type,
    hf_from_pretrained: Callable[..., Any],
    name: str | os.PathLike,
    model_args: tuple,
    layout_overrides: Mapping[str, Any],
    kwargs: dict[str, Any],
) -> tuple[Any, dict | None]:
    """Load ``name`` as ``cls``: ``(model, loading_info)`` (info only with ``output_loading_info=True``).

    Args:
        hf_from_pretrained: transformers' ``from_pretrained`` bound to ``cls`` (the HF-format path).
        layout_overrides: ``mm_spatial_pool_mode`` / ``mm_spatial_pool_stride`` / ``mm_newline_position`` given by
            the caller (they win over the checkpoint's).
    """
    from lmms_holitom.hf.models.layout import VideoLayout
    from lmms_holitom.testing import resolve_pretrained

    if isinstance(name, (str, os.PathLike)):
        name = resolve_pretrained(os.fspath(name))
    want_info = bool(kwargs.get("output_loading_info", False))
    hub_kwargs = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
    if _is_llava_next(name, hub_kwargs):
        from lmms_holitom.hf.models.llava_next import load_llava_next

        model, layout, info = load_llava_next(
            cls, os.fspath(name), layout_overrides=dict(layout_overrides), hf_from_pretrained=hf_from_pretrained,
            **kwargs,
        )
    else:
        check_checkpoint(name, kwargs.get("config"), **hub_kwargs)
        loaded = hf_from_pretrained(name, *model_args, **kwargs)
        model, info = loaded if want_info else (loaded, None)
        layout = VideoLayout.from_config_dict(model.config.to_dict(), **layout_overrides)
    model.video_layout = layout
    return model, (info if want_info else None)


def load_family_checkpoint(
    cls: type,
    hf_from_pretrained: Callable[..., Any],
    model_type: str,
    name: str | os.PathLike,
    model_args: tuple,
    kwargs: dict[str, Any],
    *,
    holitom: Any,
    probe_chunk: int,
    sync_timings: bool,
) -> Any:
    """``from_pretrained`` of a family whose checkpoints are HF format only (Qwen-VL): ``name`` resolved (built-in
    tiny models), its model_type checked (a ValueError naming the one found), loaded, configured."""
    from transformers import PretrainedConfig

    from lmms_holitom.testing import resolve_pretrained

    if isinstance(name, (str, os.PathLike)):
        name = resolve_pretrained(os.fspath(name))
        hub_kwargs = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        try:
            found = PretrainedConfig.get_config_dict(name, **hub_kwargs)[0].get("model_type")
        except OSError as err:
            raise OSError(f"cannot read the config of {str(name)!r}: {err}") from err
        if found != model_type:
            raise ValueError(
                f"{str(name)!r} is not a {model_type} checkpoint: expected model_type {model_type!r}, found {found!r} "
                f"(use the HoliTom class of that family)"
            )
    want_info = bool(kwargs.get("output_loading_info", False))
    loaded = hf_from_pretrained(name, *model_args, **kwargs)
    model, info = loaded if want_info else (loaded, None)
    model.holitom_probe_chunk = int(probe_chunk)
    model.holitom_sync_timings = sync_timings
    if holitom is not None:
        model.set_holitom(holitom)
    return (model, info) if want_info else model
