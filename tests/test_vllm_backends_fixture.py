"""The transformers side of the cross-backend fixture (``tests/fixtures/vllm_backends.json``) is current: recording
it again here gives the same prompt lengths, origins, M-RoPE positions and tokens, and the same rows (Qwen3-VL: and
deepstack rows) and log-probabilities to rounding. (The vLLM suite, ``make test-vllm``, compares vLLM with this
fixture.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "vllm_backend"))

from backend_cases import CASES, model_of  # noqa: E402
from record_backends import FIXTURE, record_case  # noqa: E402

RECORDED = json.loads(FIXTURE.read_text())


def test_fixture_has_every_case():
    assert list(RECORDED) == [case for case, _, _ in CASES]


@pytest.mark.parametrize(("case", "name", "settings"), CASES, ids=[c for c, _, _ in CASES])
def test_fixture_is_current(case, name, settings):
    got, want = record_case(name, settings), RECORDED[case]
    assert (want["settings"], want["prompt"], want["model"]) == (settings, name, model_of(name))
    for key in ("weights", "prompt_tokens", "origins", "positions", "prompt_positions", "tokens"):
        assert got[key] == want[key], key
    for key in ("row_sums", "row_norms", "logprobs", "deepstack_sums", "deepstack_norms"):
        if want[key] is None:
            assert got[key] is None, key
            continue
        torch.testing.assert_close(torch.tensor(got[key]), torch.tensor(want[key]), atol=1e-4, rtol=1e-5)
