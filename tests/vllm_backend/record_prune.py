"""Record vLLM's EVS and VidCom2 selections on `prune_cases.CASES` into ``tests/fixtures/vllm_prune.json``.

Run in the vLLM venv (``make vllm-record``); the main suite compares ``lmms_holitom.ops.prune`` with the
recording, ``make test-vllm`` checks that the recording is what the installed vLLM selects.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prune_cases import CASES, embeddings

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vllm_prune.json"


def vllm_selection(method: str, case: tuple) -> list[int]:
    """The flat indices vLLM keeps for one case (its ``compute_retention_mask`` on the (F·N, C) embeddings)."""
    import vllm
    from vllm.multimodal.video_prune import evs, vidcom2

    seed, frames, rows, cols, channels, q = case
    x = embeddings(seed, frames, rows, cols, channels).reshape(-1, channels)
    fn = {"evs": evs.compute_retention_mask, "vidcom2": vidcom2.compute_retention_mask}[method]
    assert vllm.__version__
    mask = fn(x, (frames, 2 * rows, 2 * cols), 2, q)  # the pre-merge grid, spatial merge 2
    return mask.nonzero().squeeze(-1).tolist()


def record() -> dict:
    import vllm

    return {
        "vllm": vllm.__version__,
        "torch": torch.__version__,
        "cases": [
            {"case": list(case), **{m: vllm_selection(m, case) for m in ("evs", "vidcom2")}} for case in CASES
        ],
    }


if __name__ == "__main__":
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(record(), indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {FIXTURE}")
