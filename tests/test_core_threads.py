"""`core.threads.intra_op_threads`, and the fact that makes `core.outer.compress_video_on_one_thread` (the vLLM
plugin's merge) safe: every outer merge gives bit-identical results on one CPU thread and on two."""

from __future__ import annotations

import pytest
import torch

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.outer import compress_video, compress_video_on_one_thread
from lmms_holitom.core.threads import intra_op_threads


def _video(frames: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(F, 196, 256) bf16 features with static stretches (pairs of near-equal frames), (F, 196) saliency and
    (F, 196, 32) keys: large enough that the merges' bigger operations run as parallel regions."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(frames // 2, 196, 256, generator=generator)
    features = base.repeat_interleave(2, dim=0) + 0.2 * torch.randn(frames, 196, 256, generator=generator)
    return (features.to(torch.bfloat16), torch.rand(frames, 196, generator=generator),
            torch.randn(frames, 196, 32, generator=generator))


@pytest.mark.parametrize("method", ["holitom_wo_m", "visionzip", "evs", "vidcom2"])
@pytest.mark.parametrize("ratio", [0.1, 0.25])
def test_every_merge_is_bit_identical_on_one_thread_and_two(method: str, ratio: float) -> None:
    config = HoliTomConfig(method=method, retain_ratio=ratio, budget="exact")
    features, attention, keys = _video(8, seed=int(ratio * 100))
    keys = keys if config.spec.keys else None
    with intra_op_threads(2):
        two = compress_video(features, attention, config, keys)
    one = compress_video_on_one_thread(features, attention, config, keys)
    assert torch.equal(one.tokens, two.tokens)
    assert torch.equal(one.frames, two.frames) and torch.equal(one.positions, two.positions)
    assert one.tokens.shape[0] == config.visual_budget(8, 196)


def test_the_count_is_restored_after_the_block_and_after_an_error() -> None:
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with intra_op_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"), intra_op_threads(other):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="count must be >= 1"), intra_op_threads(0):
        pass
