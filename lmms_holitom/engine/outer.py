"""The outer-merge stage: which merge of `lmms_holitom.ops` a `HoliTomConfig` asks for.

`compress_video(features, attention, config, keys=None) -> CompressedVideo` is the method switch over the
explicit-argument merges of the tensor layer (``holitom`` / ``holitom_wo_m``: `ops.holitom_merge`;
``visionzip``: `ops.visionzip_merge`; ``dense`` / ``fastv``: `ops.identity_merge`) and adds the
``method`` (and VisionZip's reported ratio) to the stats.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.ops import (
    CompressedVideo,
    holitom_merge,
    identity_merge,
    renormalised_ratio,
    visionzip_merge,
)
from lmms_holitom.ops._checks import check_features, check_keys

__all__ = ["compress_video"]


def compress_video(
    features: Tensor, attention: Tensor, config: HoliTomConfig, keys: Tensor | None = None
) -> CompressedVideo:
    """Compress one video's visual tokens as ``config.method`` prescribes.

    Args:
        features: (F, N, E) projected, pooled features (fp32/fp16/bf16, any device).
        attention: (F, N) saliency of each token (moved to the features' device).
        config: the method and its parameters.
        keys: (F, N, Dk) pooled key vectors, required for ``visionzip`` only (checked when given).

    Returns:
        `CompressedVideo` (tokens, origins, segments, `MergePlan`, stats with ``method``). Methods:
        ``holitom`` / ``holitom_wo_m`` (algorithm §2–§5; every segment keeps at least one token);
        ``visionzip`` (§7, F * ``config.visionzip_tokens(N)`` tokens, segments ``[(f, f)]``, r' reported
        as ``min(retain_ratio, 1)``); ``dense`` / ``fastv`` (identity: tokens =
        ``features.reshape(F*N, E)``, segments ``[(f, f)]``, reduced 0, r' reported as 1.0).

    Raises:
        ValueError: bad shapes/ranks, mismatched F/N, empty video, NaN/inf in features, attention or keys,
            missing keys for visionzip, config not a HoliTomConfig.
    """
    if not isinstance(config, HoliTomConfig):
        raise ValueError(f"config must be a HoliTomConfig, got {type(config).__name__}")
    F, N, _ = check_features(features).shape
    extra: dict[str, object] = {}
    if config.method == "visionzip":
        if keys is None:
            raise ValueError("keys must be given (an (F, N, Dk) tensor) for method 'visionzip', got None")
        per_frame = config.visionzip_tokens(N)
        dominant = int(per_frame * config.dominant_ratio)
        out = visionzip_merge(features, attention, keys, tokens=per_frame, dominant=dominant)
        extra["renormalised_ratio"] = renormalised_ratio(config.retain_ratio, F, N, 0)
    else:
        if keys is not None:
            check_keys(keys, F, N)
        if config.method in ("dense", "fastv"):
            out = identity_merge(features, attention)
        else:
            out = holitom_merge(
                features,
                attention,
                retain_ratio=config.retain_ratio,
                tau=config.tau,
                max_window_size=config.max_window_size,
                contextual_ratio=config.contextual_ratio,
                knn_k=config.knn_k,
                beta=config.beta,
                beta_merge=config.beta_merge,
            )
    stats = {"method": config.method, **out.stats}
    stats.update(extra)  # keeps the key's place
    return dataclasses.replace(out, stats=stats)
