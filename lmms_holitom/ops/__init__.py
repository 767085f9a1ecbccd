"""The pure tensor layer of lmms-holitom (no model or transformers imports).

"algorithm §x" everywhere in this package means section x of docs/algorithm.md.

Public API:

* `frame_similarity(features) -> (F-1, N) fp32` — algorithm §2.1;
* `segment_video(similarity, tau, max_window_size) -> (segments, reduced)` — algorithm §2.2–2.4;
* `renormalised_ratio(retain_ratio, F, N, reduced) -> r'` — algorithm §2.5;
* outer merges, each with explicit arguments, returning a `CompressedVideo` (tokens + `MergePlan`):
  `holitom_merge(features, attention, *, retain_ratio, tau, max_window_size, contextual_ratio, knn_k,
  beta, beta_merge)` — algorithm §2–§5; `visionzip_merge(features, attention, keys, *, tokens, dominant)` —
  §7; `identity_merge(features)` (dense / FastV); `fit_to_count(video, features, attention, count)` reconciles a
  HoliTom merge to `exact_count(F, N, retain_ratio)` tokens — §5c. The method switch over a configuration,
  ``compress_video(features, attention, config, keys=None)``, lives in ``lmms_holitom.core.outer``;
* `MergePlan` — the sparse (M x F·N) matrix of an outer merge: ``plan.apply(x)`` merges any tensor
  aligned with the features, ``plan.origins()`` gives each output's (frame, spatial index);
* `merge_inner(hidden, attention, start, length, ratio, fidelity, mode) -> (hidden_out, keep)` — §6;
  `merge_inner_plan(...) -> (hidden_out, keep, InnerPlan)`: the same merge as a plan for aligned tensors;
* DPC-kNN: `dpc_knn_centres(x, clusters, k)`, `cluster_merge(x, centres, beta, beta_merge)`,
  `dpc_knn_merge(x, clusters, k, beta, beta_merge)`, and the ragged-batch engine
  `dpc_knn_ragged(rows, sizes, clusters, ks, beta, beta_merge)` — algorithm §4c;
* `pairwise_distance(x)` — the fp32 ``cdist / sqrt(E)`` used by DPC-kNN.

Everything is deterministic (ties go to the lower index; no RNG), vectorised (loops only over segments or
frames), works on any device, keeps the heavy tensors in the input dtype and does similarity and distance
arithmetic in fp32.
"""

from lmms_holitom.ops.budget import exact_count, fit_to_count
from lmms_holitom.ops.cluster import (
    cluster_merge,
    dpc_knn_centres,
    dpc_knn_merge,
    dpc_knn_ragged,
    pairwise_distance,
)
from lmms_holitom.ops.compress import CompressedVideo, identity_merge, visionzip_merge
from lmms_holitom.ops.holitom import holitom_merge
from lmms_holitom.ops.inner import merge_inner, merge_inner_plan
from lmms_holitom.ops.plan import InnerPlan, MergePlan
from lmms_holitom.ops.segment import frame_similarity, renormalised_ratio, segment_video

__all__ = [
    "CompressedVideo",
    "InnerPlan",
    "MergePlan",
    "cluster_merge",
    "dpc_knn_centres",
    "dpc_knn_merge",
    "dpc_knn_ragged",
    "exact_count",
    "fit_to_count",
    "frame_similarity",
    "holitom_merge",
    "identity_merge",
    "merge_inner",
    "merge_inner_plan",
    "pairwise_distance",
    "renormalised_ratio",
    "segment_video",
    "visionzip_merge",
]
