"""Our EVS and VidCom2 (`lmms_holitom.ops.prune`) select exactly what the installed vLLM selects, count as it
counts, and the recording the main suite compares with (``tests/fixtures/vllm_prune.json``) is what this vLLM
selects. Runs in the vLLM venv: ``make test-vllm``."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
import torch
from vllm.multimodal.video_prune import evs, vidcom2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from prune_cases import CASES, embeddings, retain_ratio
from record_prune import FIXTURE, record

from lmms_holitom.ops.prune import evs_count, evs_keep, vidcom2_count, vidcom2_keep

VLLM = {"evs": evs, "vidcom2": vidcom2}
OURS = {"evs": evs_keep, "vidcom2": vidcom2_keep}
COUNTS = {"evs": evs_count, "vidcom2": vidcom2_count}




@pytest.mark.parametrize("method", list(VLLM))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_same_selection_as_vllm(method: str, case: tuple) -> None:
    seed, frames, rows, cols, channels, q = case
    x = embeddings(seed, frames, rows, cols, channels)
    want = VLLM[method].compute_retention_mask(x.reshape(-1, channels), (frames, 2 * rows, 2 * cols), 2, q)
    got = OURS[method](x, retain_ratio(q)).reshape(-1)
    assert torch.equal(got, want)


@pytest.mark.parametrize("method", list(VLLM))
def test_bf16(method: str) -> None:
    """In bf16 EVS is equal too (a stable sort on both sides); VidCom2 is equal up to the order of exactly tied
    bf16 scores (vLLM's topk leaves it unspecified): every token only one side keeps ties a token only the other
    side keeps, and the counts are equal."""
    for seed, frames, rows, cols, channels, q in CASES:
        x = embeddings(seed, frames, rows, cols, channels).to(torch.bfloat16)
        want = VLLM[method].compute_retention_mask(x.reshape(-1, channels), (frames, 2 * rows, 2 * cols), 2, q)
        got = OURS[method](x, retain_ratio(q)).reshape(-1)
        assert int(got.sum()) == int(want.sum())
        if method == "evs":
            assert torch.equal(got, want)


@pytest.mark.parametrize("method", list(VLLM))
def test_count_rules_are_vllms(method: str) -> None:
    qs = [0.0, 0.1, 0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 0.999, 1 - 0.15, 1 - 0.1]
    for frames, n, q in itertools.product([1, 2, 3, 8, 10, 16, 32, 64], [1, 16, 49, 169, 196, 256], qs):
        want = VLLM[method].compute_retained_tokens_count(tokens_per_frame=n, num_frames=frames, q=q)
        assert COUNTS[method](frames, n, retain_ratio(q)) == want, (frames, n, q)


def test_the_recording_is_current() -> None:
    """``tests/fixtures/vllm_prune.json`` holds what this vLLM selects (re-record with ``make vllm-record``)."""
    assert json.loads(FIXTURE.read_text())["cases"] == record()["cases"]
