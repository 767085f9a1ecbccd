"""The vLLM plugin's settings (``hf_overrides={"holitom": {...}}``), validated without vLLM: what runs, what is
refused (one line naming the field and why), and the placeholder counts the prompt processor will use."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.integrations.vllm.settings import (
    DEFAULT_METHOD,
    VLLM_METHODS,
    HoliTomVllmError,
    video_token_count,
    vllm_settings,
)
from lmms_holitom.methods import method_names
from lmms_holitom.ops.budget import exact_count


def settings(entry):
    return vllm_settings(SimpleNamespace(holitom=entry))


def test_no_entry_is_inert():
    assert vllm_settings(SimpleNamespace()) is None
    assert video_token_count(None, 8, 196) == 8 * 196


def test_default_is_holitoms_outer_merge_at_the_exact_budget():
    config = settings({"retain_ratio": 0.1})
    assert (config.method, config.budget, config.retain_ratio) == (DEFAULT_METHOD, "exact", 0.1) == (
        "holitom_wo_m", "exact", 0.1)
    assert video_token_count(config, 32, 196) == exact_count(32, 196, 0.1) == 32 * 20


def test_json_string_entry_as_vllm_serve_passes_it():
    assert settings(json.dumps({"method": "visionzip", "retain_ratio": 0.25})) == HoliTomConfig(
        method="visionzip", retain_ratio=0.25)


@pytest.mark.parametrize(("entry", "needle"), [
    ({"method": "holitom"}, "method='holitom' cannot run in vLLM: it merges at decoder layer K"),
    ({"method": "fastv"}, "method='fastv' cannot run in vLLM: it drops tokens at decoder layer K"),
    ({"method": "nope"}, "hf_overrides.holitom: method must be one of"),
    ({"retain_ratio": 1.5}, "hf_overrides.holitom: retain_ratio must be in (0, 1], got 1.5"),
    ({"retain_ratio": ""}, "hf_overrides.holitom: retain_ratio"),
    ({"budget": "adaptive"}, "budget='adaptive' cannot run in vLLM"),
    ({"colour": 1}, "unknown HoliTom parameter(s) colour"),
    ("{not json", "hf_overrides.holitom is not valid JSON"),
    ([1, 2], "hf_overrides.holitom must be a mapping"),
])
def test_refused_in_one_line(entry, needle):
    with pytest.raises(HoliTomVllmError) as err:
        settings(entry)
    message = str(err.value)
    assert needle in message and "\n" not in message


def test_methods_vllm_runs_have_no_step_at_layer_k():
    from lmms_holitom.methods import get_method

    assert set(VLLM_METHODS) < set(method_names())
    for name in method_names():
        refused = get_method(name).inner is not None
        if refused:
            with pytest.raises(HoliTomVllmError):
                settings({"method": name})
        else:
            assert name in VLLM_METHODS and settings({"method": name}).method == name


@pytest.mark.parametrize("method", VLLM_METHODS)
@pytest.mark.parametrize(("frames", "per_frame", "ratio"), [(8, 196, 0.25), (32, 196, 0.1), (5, 169, 0.15)])
def test_counts_are_the_methods_budget(method, frames, per_frame, ratio):
    config = settings({"method": method, "retain_ratio": ratio})
    assert video_token_count(config, frames, per_frame) == config.visual_budget(frames, per_frame)
    if method == "holitom_wo_m":
        assert video_token_count(config, frames, per_frame) == exact_count(frames, per_frame, ratio)
