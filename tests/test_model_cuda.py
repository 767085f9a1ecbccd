"""The HoliTom model on a CUDA device (skipped without one): CUDA-event timings, dtype/device handling."""

from __future__ import annotations

import pytest
import torch

from lmms_holitom.config import HoliTomConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GEN = {"max_new_tokens": 4, "do_sample": False, "return_dict_in_generate": True, "output_logits": True}


@pytest.fixture(scope="module")
def cuda_model(tiny_model_path):
    from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration

    return HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(
        tiny_model_path, holitom=HoliTomConfig(method="dense"), dtype=torch.float32
    ).to("cuda").eval()


def to_cuda(inputs, dtype=None):
    return {k: v.to("cuda", dtype) if dtype is not None and v.is_floating_point() else v.to("cuda")
            for k, v in inputs.items()}


@pytest.mark.parametrize("sync", [False, True])
def test_cuda_timings_and_cache_consistency(cuda_model, tiny_video_inputs, sync):
    cfg = HoliTomConfig(method="holitom", retain_ratio=0.3, merge_layer=2)
    inputs = to_cuda(tiny_video_inputs)
    cuda_model.holitom_sync_timings = sync
    try:
        with torch.no_grad():
            cached = cuda_model.generate(**inputs, **GEN, holitom=cfg)
            assert cuda_model._holitom_timer is None if sync else cuda_model._holitom_timer is not None
            stats = cuda_model.holitom_stats  # resolves the events (one sync)
            uncached = cuda_model.generate(**inputs, **GEN, holitom=cfg, use_cache=False)
    finally:
        cuda_model.holitom_sync_timings = False
    t = stats["timings_ms"]
    assert t["vision"] > 0 and t["outer_merge"] > 0 and t["inner_merge"] > 0
    assert t["prefill"] >= t["vision"]
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.logits, uncached.logits):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=0)


@pytest.mark.parametrize("method", ["holitom", "visionzip", "fastv", "dense"])
def test_cuda_bf16_runs(tiny_model_path, tiny_video_inputs, method):
    from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration

    model = HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(
        tiny_model_path, holitom=HoliTomConfig(method=method, retain_ratio=0.3, merge_layer=2),
        dtype=torch.bfloat16,
    ).to("cuda").eval()
    with torch.no_grad():
        out = model.generate(**to_cuda(tiny_video_inputs, torch.bfloat16), **GEN)
    assert out.sequences.shape[1] == tiny_video_inputs["input_ids"].shape[1] + GEN["max_new_tokens"]
    assert model.holitom_stats["method"] == method
