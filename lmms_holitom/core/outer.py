"""The outer-merge stage: the merge of `lmms_holitom.ops` that a `HoliTomConfig`'s method asks for.

`compress_video(features, attention, config, keys=None) -> CompressedVideo` looks the method up in the registry
(`lmms_holitom.methods`): its ``outer`` merge, or `ops.identity_merge` for a method without one (dense, FastV); and
adds the ``method`` to the stats. `compress_video_on_one_thread` is the same on one CPU intra-op thread (what the
vLLM plugin runs; `lmms_holitom.core.threads` says why).
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.threads import intra_op_threads
from lmms_holitom.ops import CompressedVideo, identity_merge
from lmms_holitom.ops._checks import check_features, check_keys

__all__ = ["compress_video", "compress_video_on_one_thread"]


def compress_video(
    features: Tensor, attention: Tensor | None, config: HoliTomConfig, keys: Tensor | None = None
) -> CompressedVideo:
    """Compress one video's visual tokens as ``config.method`` prescribes.

    Args:
        features: (F, N, E) projected, pooled features (fp32/fp16/bf16, any device).
        attention: (F, N) saliency of each token (moved to the features' device); required by the methods that
            read it (``Method.saliency``: HoliTom, VisionZip), validated when given.
        config: the method and its parameters.
        keys: (F, N, Dk) pooled key vectors, required for ``visionzip`` only (checked when given).

    Returns:
        `CompressedVideo` (tokens, origins, segments, `MergePlan`, stats with ``method``) of the method's outer
        merge (its module in `lmms_holitom.methods` says which); without one (``dense`` / ``fastv``) the identity:
        tokens = ``features.reshape(F*N, E)``, segments ``[(f, f)]``, reduced 0, r' reported as 1.0.

    Raises:
        ValueError: bad shapes/ranks, mismatched F/N, empty video, NaN/inf in features, attention or keys,
            a signal the method needs missing, config not a HoliTomConfig.
    """
    if not isinstance(config, HoliTomConfig):
        raise ValueError(f"config must be a HoliTomConfig, got {type(config).__name__}")
    F, N, _ = check_features(features).shape
    if keys is not None:
        check_keys(keys, F, N)
    spec = config.spec
    out = identity_merge(features, attention) if spec.outer is None else spec.outer(features, attention, keys, config)
    return dataclasses.replace(out, stats={"method": config.method, **out.stats})


def compress_video_on_one_thread(
    features: Tensor, attention: Tensor | None, config: HoliTomConfig, keys: Tensor | None = None
) -> CompressedVideo:
    """`compress_video` with torch's CPU intra-op threads set to 1 for the call: the same result bit for bit
    (``tests/test_core_threads.py``), without a busy CPU's waits at every parallel region. ``keys`` are passed on
    only to a method that reads them (VisionZip)."""
    with intra_op_threads(1):
        return compress_video(features, attention, config, keys if config.spec.keys else None)
