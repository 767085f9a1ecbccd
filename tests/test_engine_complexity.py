"""Complexity facts of a whole compressed prefill (engine + LLaVA adapter), independent of wall-clock time.

Every aten operator is counted with a `TorchDispatchMode`: a Python loop over tokens in a new stage (splice,
layout, positions, cache state) would make the count grow with the video's length, and every host
synchronisation shows up as ``_local_scalar_dense``/``nonzero``/``unique``/a device-to-host copy.
"""

from __future__ import annotations

import pytest
import torch
from op_counter import OpCounter

from lmms_holitom.config import HoliTomConfig


def prefill_ops(model, inputs, cfg) -> OpCounter:
    with torch.no_grad():
        video = model.model.get_video_features(inputs["pixel_values_videos"])  # vision side: not counted
        rest = {k: v for k, v in inputs.items() if k != "pixel_values_videos"}
        with OpCounter() as counter:
            model(**rest, mm_encoder_outputs={"video": video}, holitom=cfg)
    return counter


def outer_syncs(model, inputs, cfg) -> int:
    """Host syncs of the tensor layer's own outer merge on the same video (counted by tests/test_ops_complexity)."""
    from lmms_holitom.core.outer import compress_video

    if not cfg.outer_merge:
        return 0
    with torch.no_grad():
        video = model.model.get_video_features(inputs["pixel_values_videos"])
        saliency = video.holitom.saliency
        with OpCounter() as counter:
            compress_video(video.holitom.features[0], saliency.attention, cfg, keys=saliency.keys)
    return counter.syncs


@pytest.mark.parametrize("method", ["holitom", "visionzip", "fastv"])
def test_prefill_ops_do_not_grow_with_the_video(holitom_model, make_video_inputs, method):
    """Three segments either way (a a a b b c vs a×6 b×4 c×2), twice the frames: the engine's stages add the
    same operators. (HoliTom's own clustering batches differ with the segments' contents, so its total is only
    compared for the methods without temporal segments; host syncs are compared for all.)"""
    cfg = HoliTomConfig(method=method, retain_ratio=0.3, tau=0.8, merge_layer=2, merge_ratio=0.5)
    with holitom_model.holitom_override(cfg):
        runs = {}
        for pattern in ("aaabbc", "aaaaaabbbbcc"):
            inputs = make_video_inputs(pattern)
            runs[pattern] = (prefill_ops(holitom_model, inputs, cfg), outer_syncs(holitom_model, inputs, cfg))
    (short, short_outer), (long, long_outer) = runs.values()
    if method != "holitom":
        assert sum(short.ops.values()) == sum(long.ops.values()), (short.ops - long.ops) + (long.ops - short.ops)
    # the engine's own host syncs, each a fixed one whatever the length: "does the prompt hold the video token",
    # the placeholder rows of the splice, "is there padding", and the next decoding position
    assert short.syncs - short_outer == long.syncs - long_outer == 4, short.ops
