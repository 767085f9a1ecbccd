"""Stage timers and the stats dict of the HoliTom model (CPU path; CUDA uses events, resolved lazily)."""

from __future__ import annotations

import time

from lmms_holitom.core.stats import STAGES, StageTimer, empty_stats

CONTRACT_KEYS = {
    "method", "frames", "tokens_per_frame", "dense_tokens", "outer_tokens", "inner_tokens", "merge_layer",
    "segments", "static_tokens", "prompt_tokens_dense", "prompt_tokens", "timings_ms",
}


def test_stage_timer_accumulates_and_absorbs():
    timer = StageTimer("cpu")
    with timer.stage("prefill"):
        with timer.stage("llm"):
            time.sleep(0.01)
        with timer.stage("llm"):
            time.sleep(0.01)
    encode = StageTimer("cpu", sync=True)  # sync is a no-op off CUDA
    with encode.stage("vision"):
        time.sleep(0.02)
    timer.absorb(encode, also_as="prefill")
    assert not timer.pending
    ms = timer.resolve()
    assert set(ms) == set(STAGES)
    assert ms["llm"] >= 20 and ms["vision"] >= 20
    assert ms["prefill"] >= ms["llm"] + ms["vision"]
    assert ms["outer_merge"] == ms["inner_merge"] == 0.0


def test_empty_stats_follow_the_contract():
    stats = empty_stats("holitom")
    assert set(stats) >= CONTRACT_KEYS
    assert {"vision", "outer_merge", "inner_merge", "prefill"} <= set(stats["timings_ms"])
    assert stats["frames"] == stats["outer_tokens"] == 0
