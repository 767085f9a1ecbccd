"""LLaVA-NeXT-format checkpoints (``lmms-lab/llava-onevision-qwen2-*``, ``lmms-lab/LLaVA-Video-7B-Qwen2``) loaded
into transformers' native LLaVA-OneVision classes, without LLaVA-NeXT's ``llava`` package.

Such a checkpoint has ``model_type: "llava"`` (or ``"llava_qwen"``), ``architectures: ["LlavaQwenForCausalLM"]``,
the Qwen2 settings at the top level of its config, ``mm_*`` settings for the vision side, and LLaVA-NeXT's weight
names (``model.vision_tower.vision_tower.*``, ``model.mm_projector.{0,2}.*``, ``model.layers.*``). The mapping below
follows transformers' ``models/llava_onevision/convert_llava_onevision_weights_to_hf.py`` (the reference), with the
transformers 5.x module layout (``model.language_model``, ``model.vision_tower``, ``model.multi_modal_projector``).

LLaVA-NeXT's SigLIP tower (``llava/model/multimodal_encoder/siglip_encoder.py``) deletes the last encoder layer,
replaces the head by an identity and returns ``hidden_states[-1]`` of what is left, all 729 patches; it never reads
``mm_vision_select_layer`` / ``mm_vision_select_feature``. In transformers terms: ``num_hidden_layers`` = the
tower's minus one, ``vision_use_head=False``, ``vision_feature_layer=-1``, ``vision_feature_select_strategy="full"``
(what the reference conversion writes too).

Public: `is_llava_next_checkpoint`, `read_llava_next_config`, `llava_next_config`, `convert_key`, `KEY_MAPPING`,
`load_llava_next_tokenizer`, `load_llava_next`.

Over 300 lines on purpose: one checkpoint format's facts (config, key mapping, tokenizer, loading) in one place.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lmms_holitom.hf.models.layout import VideoLayout

__all__ = [
    "HUB_KWARGS",
    "KEY_MAPPING",
    "SIGLIP_SO400M_384",
    "LlavaNextCheckpointError",
    "convert_key",
    "hub_kwargs",
    "is_llava_next_checkpoint",
    "llava_next_config",
    "load_llava_next",
    "load_llava_next_tokenizer",
    "read_llava_next_config",
]

logger = logging.getLogger(__name__)

#: from_pretrained keyword arguments that say where files come from (forwarded to config/tokenizer look-ups).
HUB_KWARGS = ("cache_dir", "revision", "local_files_only", "token", "force_download", "proxies", "subfolder")
MODEL_TYPES = ("llava", "llava_qwen")
QWEN2_ARCHITECTURE = "LlavaQwenForCausalLM"
IMAGE_TOKEN, VIDEO_TOKEN = "<image>", "<video>"

#: google/siglip-so400m-patch14-384, the tower every lmms-lab OneVision / LLaVA-Video checkpoint names: the
#: ``vision_config`` of its hub ``config.json`` (27 layers; other fields are SiglipVisionConfig's defaults). These are
#: also transformers' LlavaOnevisionConfig default vision sub-config (there with the last layer already dropped).
SIGLIP_SO400M_384: dict[str, Any] = {
    "model_type": "siglip_vision_model",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 384,
    "patch_size": 14,
}
SIGLIP_SO400M_NAME = "siglip-so400m-patch14-384"

#: LLaVA-NeXT key (regex) -> transformers 5.x LlavaOnevisionForConditionalGeneration key; applied in order, each
#: matching rule fires (transformers' ``key_mapping`` semantics). ``model.image_newline`` and ``lm_head.*`` keep
#: their names.
KEY_MAPPING: dict[str, str] = {
    r"^model\.vision_tower\.vision_tower\.": "model.vision_tower.",
    r"^model\.mm_projector\.0\.": "model.multi_modal_projector.linear_1.",
    r"^model\.mm_projector\.2\.": "model.multi_modal_projector.linear_2.",
    r"^model\.embed_tokens\.": "model.language_model.embed_tokens.",
    r"^model\.layers\.": "model.language_model.layers.",
    r"^model\.norm\.": "model.language_model.norm.",
}
_IGNORED_KEYS = re.compile(r"\.rotary_emb\.inv_freq$")


class LlavaNextCheckpointError(ValueError):
    """A LLaVA-NeXT checkpoint with a setting this package does not support, or whose weights do not fit."""


def convert_key(key: str) -> str:
    """The transformers name of LLaVA-NeXT weight ``key`` (`KEY_MAPPING` applied in order)."""
    for pattern, replacement in KEY_MAPPING.items():
        key = re.sub(pattern, replacement, key, count=1)
    return key


def hub_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The `HUB_KWARGS` present in ``kwargs``."""
    return {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}


def _config_file(path_or_name: str | os.PathLike, **hub: Any) -> Path | None:
    """``config.json`` of a local folder or hub id (HF cache first; a download only where the hub allows it)."""
    folder = Path(path_or_name)
    sub = hub.get("subfolder") or ""
    if folder.is_dir():
        file = folder / sub / "config.json"
        return file if file.is_file() else None
    from transformers.utils import cached_file

    try:
        file = cached_file(
            str(path_or_name),
            "config.json",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub,
        )
    except (OSError, ValueError):  # not a hub id, no such repo, offline and not cached
        return None
    return Path(file) if file else None


def read_llava_next_config(path_or_name: str | os.PathLike, **kwargs: Any) -> dict[str, Any] | None:
    """The config dict of a LLaVA-NeXT checkpoint, or None when ``path_or_name`` is not one (or has no config)."""
    file = _config_file(path_or_name, **hub_kwargs(kwargs))
    if file is None:
        return None
    config = json.loads(file.read_text())
    if config.get("model_type") not in MODEL_TYPES:
        return None
    archs = config.get("architectures") or []
    is_next = "mm_vision_tower" in config or any(a.startswith("Llava") and a.endswith("ForCausalLM") for a in archs)
    return config if is_next else None


def is_llava_next_checkpoint(path_or_name: str | os.PathLike, **kwargs: Any) -> bool:
    """Whether ``path_or_name`` (local folder or hub id) is a LLaVA-NeXT-format checkpoint (reads config.json).

    Any from_pretrained kwargs may be passed; only `HUB_KWARGS` are used.
    """
    return read_llava_next_config(path_or_name, **kwargs) is not None



# ---------------------------------------------------------------------------------------------- config building


def _unsupported(setting: str, value: Any, allowed: str) -> LlavaNextCheckpointError:
    return LlavaNextCheckpointError(
        f"{setting}={value!r} is not supported in a LLaVA-NeXT checkpoint (supported: {allowed})"
    )


#: setting -> values we support (the evaluated checkpoints' values); anything else is an error naming it.
_REQUIRED: dict[str, tuple[Any, ...]] = {
    "mm_projector_type": ("mlp2x_gelu",),
    "mm_patch_merge_type": ("spatial_unpad",),
    "mm_resampler_type": (None,),
    "mm_use_im_start_end": (False, None),
    "mm_use_im_patch_token": (False, None),
    "add_faster_video": (False, None),
    "rope_scaling": (None,),
}


def _check_settings(config: Mapping[str, Any]) -> None:
    """Raise `LlavaNextCheckpointError` for a setting we do not implement (see `_REQUIRED`)."""
    archs = config.get("architectures") or [QWEN2_ARCHITECTURE]
    if list(archs) != [QWEN2_ARCHITECTURE]:
        raise _unsupported("architectures", archs, f"[{QWEN2_ARCHITECTURE!r}] (a Qwen2 LLM)")
    for key, allowed in _REQUIRED.items():
        if config.get(key) not in allowed:
            raise _unsupported(key, config.get(key), ", ".join(repr(v) for v in allowed))
    aspect = config.get("image_aspect_ratio")
    if not (isinstance(aspect, str) and re.fullmatch(r"anyres_max_\d+", aspect)):
        raise _unsupported("image_aspect_ratio", aspect, "'anyres_max_<N>'")
    for key, nominal in (("mm_vision_select_layer", -2), ("mm_vision_select_feature", "patch")):
        if config.get(key, nominal) != nominal:
            logger.warning(
                "lmms-holitom: %s=%r: LLaVA-NeXT's SigLIP tower ignores it (it drops the last layer and keeps every "
                "patch); loading the checkpoint as LLaVA-NeXT runs it", key, config.get(key)
            )


def _tower_config_dict(name: str, cache_dir: str | None) -> dict[str, Any]:
    """The config.json of tower ``name``: a local folder, else the HF cache (no download), else the built-in
    `SIGLIP_SO400M_384` when ``name``'s last part is ``siglip-so400m-patch14-384``."""
    file = Path(name) / "config.json"
    if not file.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir)
        except ValueError:  # not a valid repo id (e.g. an absolute path that is absent here)
            cached = None
        file = Path(cached) if isinstance(cached, str) else None
    if file is not None:
        return json.loads(file.read_text())
    if Path(name).name == SIGLIP_SO400M_NAME:
        return dict(SIGLIP_SO400M_384)
    raise LlavaNextCheckpointError(
        f"mm_vision_tower={name!r}: no config.json in such a folder or in the HF cache, and only "
        f"{SIGLIP_SO400M_NAME}'s numbers are built in (download the tower's config.json, or pass its dict)"
    )


def _siglip_vision_config(tower: Mapping[str, Any], name: str):
    """SiglipVisionConfig of LLaVA-NeXT's tower built from ``tower`` (its config.json): last layer dropped, no head."""
    from transformers import SiglipVisionConfig

    if tower.get("model_type") == "siglip":
        tower = tower.get("vision_config") or {}
    model_type = tower.get("model_type", "siglip_vision_model")
    if model_type != "siglip_vision_model":
        raise _unsupported("mm_vision_tower", f"{name} ({model_type})", "SigLIP towers (siglip_vision_model)")
    keys = ("hidden_size", "intermediate_size", "num_attention_heads", "num_channels", "image_size", "patch_size",
            "hidden_act", "layer_norm_eps", "attention_dropout")
    layers = int(tower.get("num_hidden_layers", SiglipVisionConfig().num_hidden_layers))
    return SiglipVisionConfig(
        **{k: tower[k] for k in keys if k in tower}, num_hidden_layers=layers - 1, vision_use_head=False
    )


def _qwen2_config(config: Mapping[str, Any]):
    """Qwen2Config from the checkpoint's top-level LLM fields (``rope_theta`` -> ``rope_parameters``)."""
    import dataclasses

    from transformers import Qwen2Config

    skip = {"architectures", "transformers_version", "dtype", "rope_parameters", "layer_types"}
    fields = {f.name for f in dataclasses.fields(Qwen2Config)} - skip
    rope = config.get("rope_parameters") or {"rope_type": "default", "rope_theta": float(config.get("rope_theta", 1e4))}
    return Qwen2Config(**{k: config[k] for k in fields if k in config}, rope_parameters=rope, dtype=_dtype(config))


def _dtype(config: Mapping[str, Any]) -> str | None:
    return config.get("torch_dtype") or config.get("dtype")


def _grid_pinpoints(value: Any, image_size: int) -> list[list[int]] | None:
    """LLaVA-NeXT ``image_grid_pinpoints`` ((width, height) pairs, or ``"(1x1),...,(6x6)"`` in tiles of
    ``image_size``) as transformers' (height, width) list; None (absent) keeps transformers' default."""
    if value is None:
        return None
    if isinstance(value, str):
        ends = re.findall(r"\((\d+)x(\d+)\)", value)
        if not ends:
            raise _unsupported("image_grid_pinpoints", value, "a list of [width, height] or '(AxB),...,(CxD)'")
        (a, b), (c, d) = (tuple(map(int, e)) for e in (ends[0], ends[-1]))
        value = [[i * image_size, j * image_size] for i in range(a, c + 1) for j in range(b, d + 1)]
    return [[int(h), int(w)] for w, h in value]


def llava_next_config(
    config_dict: Mapping[str, Any],
    vision_config_dict: Mapping[str, Any] | None = None,
    *,
    image_token_id: int | None = None,
    video_token_id: int | None = None,
    cache_dir: str | None = None,
):
    """LlavaOnevisionConfig of a LLaVA-NeXT checkpoint's ``config_dict``.

    ``vision_config_dict``: the config.json of the ``mm_vision_tower`` checkpoint (before LLaVA-NeXT drops its last
    layer); None reads it from that folder / the HF cache (``cache_dir``), else the built-in so400m numbers.
    ``image_token_id`` / ``video_token_id``: the ids of ``<image>`` / ``<video>`` (`load_llava_next_tokenizer`);
    None keeps transformers' defaults. Unsupported settings raise `LlavaNextCheckpointError` naming them.
    """
    from transformers import LlavaOnevisionConfig

    _check_settings(config_dict)
    tower_name = str(config_dict.get("mm_vision_tower") or "")
    if not tower_name and vision_config_dict is None:
        raise _unsupported("mm_vision_tower", None, "a SigLIP checkpoint name or folder")
    tower = vision_config_dict if vision_config_dict is not None else _tower_config_dict(tower_name, cache_dir)
    vision = _siglip_vision_config(tower, tower_name)
    mm_hidden = config_dict.get("mm_hidden_size", vision.hidden_size)
    if mm_hidden != vision.hidden_size:
        raise LlavaNextCheckpointError(
            f"mm_hidden_size={mm_hidden} does not match the vision tower's hidden_size={vision.hidden_size}"
        )
    ids = {"image_token_index": image_token_id, "video_token_index": video_token_id}
    ids = {k: v for k, v in ids.items() if v is not None}
    return LlavaOnevisionConfig(
        vision_config=vision,
        text_config=_qwen2_config(config_dict),
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio=config_dict["image_aspect_ratio"],
        image_grid_pinpoints=_grid_pinpoints(config_dict.get("image_grid_pinpoints"), vision.image_size),
        tie_word_embeddings=bool(config_dict.get("tie_word_embeddings", False)),
        dtype=_dtype(config_dict),
        **ids,
    )


# ------------------------------------------------------------------------------------------------------ loading


def load_llava_next_tokenizer(path_or_name: str | os.PathLike, **kwargs: Any):
    """The checkpoint's tokenizer with ``<image>`` and ``<video>`` added as special tokens (where absent).

    LLaVA-NeXT marks images with the index -200 instead; transformers' models need real ids. Only `HUB_KWARGS`
    of ``kwargs`` are used.
    """
    from transformers import AddedToken, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path_or_name), **hub_kwargs(kwargs))
    vocab = tokenizer.get_vocab()
    new = [AddedToken(t, special=True, normalized=False) for t in (IMAGE_TOKEN, VIDEO_TOKEN) if t not in vocab]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    return tokenizer


def _check_loading(info: Mapping[str, Any], source: str) -> None:
    """Raise when the converted weights do not cover the model exactly (a randomly initialised part)."""
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or () if not _IGNORED_KEYS.search(str(k)))
        if keys:
            shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
            problems.append(f"{len(keys)} {kind.replace('_', ' ')}: {shown}")
    if problems:
        raise LlavaNextCheckpointError(
            f"{source}: LLaVA-NeXT weights do not fit after key conversion; " + "; ".join(problems)
        )


def _fit_embeddings(model: Any, needed: int) -> None:
    """Grow the embedding matrix to ``needed`` rows if the added token ids fall outside it (rows not used)."""
    rows = model.get_input_embeddings().weight.shape[0]
    if needed > rows:
        model.resize_token_embeddings(needed, mean_resizing=False)


def load_llava_next(
    cls: type,
    path_or_name: str | os.PathLike,
    *,
    layout_overrides: Mapping[str, Any] | None = None,
    hf_from_pretrained: Callable[..., Any] | None = None,
    **hf_kwargs: Any,
) -> tuple[Any, VideoLayout, dict[str, Any]]:
    """Load a LLaVA-NeXT checkpoint into ``cls`` (a LlavaOnevisionForConditionalGeneration subclass).

    Builds the config (`llava_next_config`), renames the weights with `KEY_MAPPING` while transformers streams the
    safetensors shards (``from_pretrained(key_mapping=...)``), checks that nothing is missing or left over, and adds
    the ``<image>``/``<video>`` ids. ``layout_overrides``: ``mm_spatial_pool_mode`` / ``mm_spatial_pool_stride`` /
    ``mm_newline_position`` (None = keep the checkpoint's). ``hf_kwargs`` go to transformers' ``from_pretrained``
    (dtype, device_map, attn_implementation, cache_dir, local_files_only, revision, ...); ``config`` and
    ``key_mapping`` cannot be given. ``hf_from_pretrained``: transformers' ``from_pretrained`` bound to ``cls``
    (default: the stock ``PreTrainedModel.from_pretrained`` on ``cls``, so that an override of it in ``cls`` is not
    re-entered). The video layout is also written onto ``model.config`` under its LLaVA-NeXT
    names.

    Returns ``(model, layout, loading_info)``; ``loading_info`` is transformers' dict (missing_keys, ...).
    """
    from transformers import PreTrainedModel

    for bad in ("config", "key_mapping"):
        if bad in hf_kwargs:
            raise TypeError(f"{bad}= cannot be given for a LLaVA-NeXT checkpoint (it is built from the checkpoint)")
    hf_kwargs.pop("output_loading_info", None)  # always computed
    raw = read_llava_next_config(path_or_name, **hf_kwargs)
    if raw is None:
        raise LlavaNextCheckpointError(f"{path_or_name}: not a LLaVA-NeXT checkpoint (config.json model_type 'llava')")
    layout = VideoLayout.from_config_dict(raw, **dict(layout_overrides or {}))
    tokenizer = load_llava_next_tokenizer(path_or_name, **hf_kwargs)
    image_id, video_id = tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, VIDEO_TOKEN])
    config = llava_next_config(
        raw, image_token_id=image_id, video_token_id=video_id, cache_dir=hf_kwargs.get("cache_dir")
    )
    for key, value in layout.to_config_dict().items():
        setattr(config, key, value)
    if hf_from_pretrained is None:
        hf_from_pretrained = PreTrainedModel.from_pretrained.__func__.__get__(cls)
    model, info = hf_from_pretrained(
        path_or_name, config=config, key_mapping=KEY_MAPPING, output_loading_info=True, **hf_kwargs
    )
    _check_loading(info, str(path_or_name))
    _fit_embeddings(model, max(image_id, video_id) + 1)
    return model, layout, info
