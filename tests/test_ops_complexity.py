"""Complexity facts of the tensor layer, independent of wall-clock time.

Every aten operator the tensor layer dispatches is counted with a `TorchDispatchMode`. A Python loop over
tokens or clusters would make the count grow with the number of tokens; a host synchronisation shows up as
``_local_scalar_dense`` (``.item()``, ``bool(tensor)``), ``nonzero`` or a data-dependent ``masked_select``.
"""

from __future__ import annotations

import pytest
import torch
from op_counter import OpCounter
from reference_loops import synthetic_video

from lmms_holitom import HoliTomConfig
from lmms_holitom.core.outer import compress_video
from lmms_holitom.ops import merge_inner


def _count(fn, *args, **kwargs) -> OpCounter:
    with OpCounter() as counter:
        fn(*args, **kwargs)
    return counter


@pytest.mark.parametrize("contextual_ratio", [0.0, 0.5])
def test_compress_video_op_count_does_not_grow_with_tokens(contextual_ratio):
    cfg = HoliTomConfig(retain_ratio=0.25, contextual_ratio=contextual_ratio)
    counts = {}
    for tokens, dim in [(49, 16), (196, 16), (196, 64)]:
        features, attention = synthetic_video(8, tokens, dim, scenes=2, seed=1)
        counts[tokens, dim] = _count(compress_video, features, attention, cfg)
    totals = {key: c.total for key, c in counts.items()}
    # the same segments (scenes) on every shape: the same operators, however many tokens per frame
    assert max(totals.values()) - min(totals.values()) <= 0.05 * min(totals.values()), totals
    # exactly one device-to-host copy: the small static-count table the dynamic programme reads
    assert all(c.syncs == 1 for c in counts.values()), {k: c.syncs for k, c in counts.items()}


@pytest.mark.parametrize("method", ["holitom", "visionzip"])
def test_plan_building_and_apply_have_no_loop_and_no_host_sync(method):
    cfg = HoliTomConfig(method=method, retain_ratio=0.25, contextual_ratio=0.5)
    builds, applies = {}, {}
    for tokens, dim in [(49, 16), (196, 16), (196, 64)]:
        features, attention = synthetic_video(8, tokens, dim, scenes=2, seed=1)
        keys = torch.randn(8, tokens, 4)
        with OpCounter() as counter:
            out = compress_video(features, attention, cfg, keys=keys)
        builds[tokens, dim] = counter
        stream = torch.randn(8, tokens, 2 * dim)
        applies[tokens, dim] = _count(out.plan.apply, stream)
        assert out.plan.num_outputs == out.num_tokens
    # building the plan is part of compress_video and adds no sync: HoliTom's one, VisionZip's three
    # finiteness checks (attention, features, keys); still no per-token operators
    syncs = {"holitom": 1, "visionzip": 3}[method]
    assert all(c.syncs == syncs for c in builds.values()), {k: c.syncs for k, c in builds.items()}
    totals = [c.total for c in builds.values()]
    assert max(totals) - min(totals) <= 0.05 * min(totals), totals
    # applying it: a fixed handful of operators and no sync at all
    assert len({c.total for c in applies.values()}) == 1 and all(c.total <= 6 for c in applies.values())
    assert all(c.syncs == 0 for c in applies.values()), [c.ops for c in applies.values()]


def test_compress_video_without_contextual_tokens_is_independent_of_frames():
    cfg = HoliTomConfig(retain_ratio=0.25)
    totals = [_count(compress_video, *synthetic_video(frames, 196, 16, scenes=2, seed=2), cfg).total
              for frames in (8, 32)]
    assert totals[0] == totals[1], totals


@pytest.mark.parametrize("fidelity", ["reference", "clean"])
def test_merge_inner_has_no_loop_and_no_host_sync(fidelity):
    counts = []
    for visual in (60, 650):
        hidden = torch.randn(visual + 50, 32)
        attention = torch.rand(visual)
        counts.append(_count(merge_inner, hidden, attention, 20, visual, 0.5, fidelity,
                             check_finite_attention=False))
    assert counts[0].total == counts[1].total
    assert counts[0].syncs == counts[1].syncs == 0, counts[1].ops
    # the validating form costs exactly the one sync of its finiteness check
    checked = _count(merge_inner, torch.randn(100, 8), torch.rand(60), 20, 60, 0.5, fidelity)
    assert checked.syncs == 1
