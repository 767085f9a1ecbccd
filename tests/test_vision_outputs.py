"""Typed vision outputs: every family's ``get_video_features`` returns the stock output class (subclassed) with a
``holitom`` field; with ``return_dict=False`` exactly the stock tuple; the stock part equals the stock model's."""

from __future__ import annotations

import pytest
import torch
from method_checks import FAMILIES, tiny_family

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.hf.outputs import HoliTomVision, holitom_vision


def _stock(name: str):
    from transformers import (
        LlavaOnevisionForConditionalGeneration,
        Qwen2_5_VLForConditionalGeneration,
        Qwen3VLForConditionalGeneration,
    )

    from lmms_holitom.testing import resolve_pretrained

    cls = {"tiny": LlavaOnevisionForConditionalGeneration, "tiny-qwen2.5-vl": Qwen2_5_VLForConditionalGeneration,
           "tiny-qwen3-vl": Qwen3VLForConditionalGeneration}[name]
    return cls.from_pretrained(resolve_pretrained(name)).eval()


def _same(a: object, b: object) -> bool:
    """Equal tensors, or equal nestings of lists / tuples of them (None for None)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a is None and b is None


@pytest.mark.parametrize("family", FAMILIES)
def test_get_video_features_is_typed_and_its_tuple_is_the_stock_one(family: str) -> None:
    model, inputs = tiny_family(family)
    stock = _stock(family)
    model.set_holitom(HoliTomConfig(method="holitom_wo_m", retain_ratio=0.3))
    kwargs = {"video_grid_thw": inputs["video_grid_thw"]} if "video_grid_thw" in inputs else {}
    pixels = inputs["pixel_values_videos"]
    with torch.no_grad():
        typed = model.get_video_features(pixels, return_dict=True, **kwargs)
        as_tuple = model.get_video_features(pixels, return_dict=False, **kwargs)
        want = stock.get_video_features(pixels, return_dict=True, **kwargs)
    assert isinstance(typed, type(want))  # a subclass of the stock output class
    vision = holitom_vision(typed)
    assert isinstance(vision, HoliTomVision) and vision.saliency is not None and vision.timer is not None
    stock_tuple = want.to_tuple()
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(stock_tuple)
    assert _same(as_tuple, stock_tuple) and _same(typed.to_tuple(), stock_tuple)
    assert holitom_vision(want) is None and holitom_vision(None) is None  # a stock output has none
    model.set_holitom(HoliTomConfig(method="evs", retain_ratio=0.3))
    with torch.no_grad():
        assert holitom_vision(model.get_video_features(pixels, **kwargs)).saliency is None  # EVS needs no probe


@pytest.mark.parametrize("family", FAMILIES)
def test_one_runtime_state_per_model(family: str) -> None:
    """The model and its vision side share one `HoliTomRuntime`: no copies of the config to keep in step."""
    from lmms_holitom.core.state import HoliTomRuntime

    model, _ = tiny_family(family)
    runtime = model.holitom_runtime
    assert isinstance(runtime, HoliTomRuntime) and model.model.holitom_runtime is runtime
    cfg = model.set_holitom(HoliTomConfig(method="evs", retain_ratio=0.5))
    assert runtime.config is cfg is model.holitom and not hasattr(model.model, "holitom_encode")
    model.holitom_probe_chunk = 3
    assert runtime.probe_chunk == 3
    model.holitom_probe_chunk = 8
