"""HoliTomConfig: defaults, coercion, validation messages, the original scripts' environment variables."""

from __future__ import annotations

import dataclasses

import pytest

from lmms_holitom import HoliTomConfig
from lmms_holitom.config import METHODS
from lmms_holitom.methods.visionzip import tokens_per_frame


def test_defaults_match_spec():
    cfg = HoliTomConfig()
    assert (cfg.method, cfg.retain_ratio, cfg.tau, cfg.merge_layer, cfg.merge_ratio) == ("holitom", 0.1, 0.8, 18, 0.5)
    assert (cfg.beta, cfg.contextual_ratio, cfg.knn_k, cfg.max_window_size, cfg.beta_merge) == (0.6, 0.0, 7, 1024, True)
    assert cfg.fidelity == "reference"
    assert cfg.inner_mode == "merge" and cfg.outer_merge


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        HoliTomConfig().tau = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("retain_ratio", 0.0, r"retain_ratio must be in \(0, 1\], got 0.0"),
        ("retain_ratio", 1.5, r"retain_ratio must be in \(0, 1\]"),
        ("retain_ratio", float("nan"), "retain_ratio must be a finite number"),
        ("tau", -2, r"tau must be in \[-1, inf\)"),
        ("merge_ratio", 1.0, r"merge_ratio must be in \[0, 1\)"),
        ("merge_layer", 0, "merge_layer must be an integer in \\[1, 1024\\]"),
        ("merge_layer", "abc", "merge_layer must be an integer"),
        ("beta", 1.2, r"beta must be in \[0, 1\]"),
        ("contextual_ratio", -0.1, r"contextual_ratio must be in \[0, 1\]"),
        ("knn_k", 0, "knn_k must be an integer in \\[1, 1000000\\]"),
        ("max_window_size", 0, "max_window_size must be an integer in \\[1, 4096\\]"),
        ("method", "tome", "method must be one of " + ", ".join(METHODS)),
        ("fidelity", "exact", "fidelity must be one of reference, clean"),
        ("beta_merge", "maybe", "beta_merge must be a boolean"),
        ("spatial_tokens", 0, "spatial_tokens must be an integer in \\[1, 1000000\\]"),
        # sizes have upper bounds (values.MAX_*): a typo cannot ask for an absurd window or neighbourhood
        ("merge_layer", 1025, "merge_layer must be an integer in \\[1, 1024\\] .*got 1025"),
        ("knn_k", 10**12, "knn_k must be an integer in \\[1, 1000000\\], got 1000000000000"),
        ("max_window_size", 4097, "max_window_size must be an integer in \\[1, 4096\\] \\(frames\\), got 4097"),
        ("spatial_tokens", 10**7, "spatial_tokens must be an integer in \\[1, 1000000\\] or none, got 10000000"),
    ],
)
def test_invalid_values_name_parameter_and_range(field, value, match):
    with pytest.raises(ValueError, match=match):
        HoliTomConfig(**{field: value})


def test_fastv_needs_merge_layer():
    with pytest.raises(ValueError, match="merge_layer must be set"):
        HoliTomConfig(method="fastv", merge_layer=None)


def test_from_dict_coerces_strings_and_rejects_unknown():
    cfg = HoliTomConfig.from_dict({"retain_ratio": "0.15", "tau": "0.8", "merge_layer": "none",
                                   "beta_merge": "false", "knn_k": "5"})
    assert cfg.retain_ratio == 0.15 and cfg.merge_layer is None and cfg.beta_merge is False and cfg.knn_k == 5
    assert cfg.inner_mode is None  # holitom without K is "w/o M"
    with pytest.raises(ValueError, match="unknown HoliTom parameter.*retain; valid: method, retain_ratio"):
        HoliTomConfig.from_dict({"retain": 0.1})


def test_from_env_full_holitom():
    env = {"WRAPPER": "holitom", "RETAIN_RATIO": "0.15", "T": "0.80", "HOLITOM_k": "18", "HOLITOM_r": "0.5",
           "BETA": "0.6", "D": "0.0", "K": "7", "MAX_WINDOW_SIZE": "1024"}
    cfg = HoliTomConfig.from_env(env)
    assert cfg == HoliTomConfig(method="holitom", retain_ratio=0.15, tau=0.8, merge_layer=18, merge_ratio=0.5)


def test_from_env_without_k_is_wo_m_and_no_beta():
    cfg = HoliTomConfig.from_env({"WRAPPER": "holitom", "RETAIN_RATIO": "0.1", "T": "0.65", "NO_BETA": "1",
                                  "HOLITOM_k": "18"})  # r missing: the original runs w/o M
    assert cfg.method == "holitom_wo_m" and cfg.tau == 0.65 and cfg.beta_merge is False
    assert cfg.inner_mode is None


def test_from_env_other_wrappers_and_overrides():
    assert HoliTomConfig.from_env({}).method == "dense"
    vz = HoliTomConfig.from_env({"WRAPPER": "visionzip", "SPATIAL_TOKENS": "30"})
    assert vz.method == "visionzip" and tokens_per_frame(vz, 196) == 30
    fv = HoliTomConfig.from_env({"WRAPPER": "fastv", "FASTV_k": "2", "FASTV_r": "0.75"})
    assert (fv.method, fv.merge_layer, fv.merge_ratio, fv.inner_mode) == ("fastv", 2, 0.75, "drop")
    over = HoliTomConfig.from_env({"WRAPPER": "holitom", "RETAIN_RATIO": "0.1"}, retain_ratio=0.25)
    assert over.retain_ratio == 0.25
    with pytest.raises(ValueError, match="WRAPPER must be one of"):
        HoliTomConfig.from_env({"WRAPPER": "prunevid"})
    with pytest.raises(ValueError, match="retain_ratio must be in"):
        HoliTomConfig.from_env({"WRAPPER": "holitom", "RETAIN_RATIO": "2"})


def test_visionzip_tokens_default_from_retain_ratio():
    assert tokens_per_frame(HoliTomConfig(method="visionzip", retain_ratio=0.25), 196) == 49
    assert tokens_per_frame(HoliTomConfig(method="visionzip", spatial_tokens=500), 196) == 196


def test_problems_lists_every_bad_field():
    assert HoliTomConfig.problems({"retain_ratio": 1.5, "tau": float("nan"), "merge_layer": -1}) == [
        "retain_ratio must be in (0, 1], got 1.5",
        "tau must be a finite number, got nan",
        "merge_layer must be an integer in [1, 1024] (a decoder layer index) or none, got -1",
    ]
    assert HoliTomConfig.problems({"retain_ratio": "0.2"}) == []
    with pytest.raises(ValueError, match=r"retain_ratio must be in \(0, 1\], got 1.5; tau must be a finite"):
        HoliTomConfig(retain_ratio=1.5, tau=float("nan"))


def test_empty_beta_merge_is_an_error_not_false():
    with pytest.raises(ValueError, match="beta_merge must be a boolean \\(true/false\\), got ''"):
        HoliTomConfig.from_dict({"beta_merge": ""})
    assert HoliTomConfig.from_env({"WRAPPER": "holitom", "NO_BETA": ""}).beta_merge is True  # empty env = unset


def test_lone_invalid_holitom_k_is_rejected_naming_the_variable():
    with pytest.raises(ValueError, match=r"HOLITOM_k \(merge_layer\): merge_layer must be an integer in \[1, 1024\]"):
        HoliTomConfig.from_env({"WRAPPER": "holitom", "HOLITOM_k": "-1"})
    with pytest.raises(ValueError, match=r"HOLITOM_r \(merge_ratio\): merge_ratio must be in \[0, 1\), got 2.0"):
        HoliTomConfig.from_env({"WRAPPER": "holitom", "HOLITOM_r": "2"})
    with pytest.raises(ValueError, match=r"FASTV_k \(merge_layer\)"):
        HoliTomConfig.from_env({"WRAPPER": "fastv", "FASTV_k": "0"})


def test_wrapper_error_lists_every_method():
    with pytest.raises(ValueError) as info:
        HoliTomConfig.from_env({"WRAPPER": "prunevid"})
    assert str(info.value) == f"WRAPPER must be one of {', '.join(METHODS)}, none (or unset), got 'prunevid'"
    assert HoliTomConfig.from_env({"WRAPPER": "holitom_wo_m"}).method == "holitom_wo_m"


def test_one_boolean_and_one_dtype_parser_everywhere() -> None:
    """The config's ``beta_merge`` and the lmms-eval model args (``use_cache``, ``truncation``) accept the same
    spellings; every entry point's dtype goes through `config.resolve_dtype`."""
    import torch

    from lmms_holitom.integrations.lmms_eval import settings
    from lmms_holitom.values import parse_bool, resolve_dtype

    assert settings.parse_bool is parse_bool
    for text, want in (("y", True), ("t", True), ("On", True), ("1", True), ("n", False), ("off", False)):
        assert parse_bool("use_cache", text) is want
        assert HoliTomConfig.from_dict({"beta_merge": text}).beta_merge is want
    with pytest.raises(ValueError, match="use_cache must be a boolean"):
        parse_bool("use_cache", "")
    cpu = torch.device("cpu")
    assert [resolve_dtype(v, cpu) for v in ("auto", "bf16", "torch.float16", "float32")] == [
        torch.float32, torch.bfloat16, torch.float16, torch.float32]
    with pytest.raises(ValueError, match="--dtype must be auto, float32"):
        resolve_dtype("int8", cpu, name="--dtype")


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_value_is_never_a_silent_none(empty: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``merge_layer=`` (model args, YAML ``""``, ``--merge-layer ""``) is an error, not None — which would run HoliTom
    without its inner merge while the logs say ``holitom``; ``none`` / ``null`` / None are the spellings of None."""
    from lmms_holitom.cli import main
    from lmms_holitom.integrations.lmms_eval.settings import resolve_holitom_config

    for field in ("merge_layer", "spatial_tokens"):
        with pytest.raises(ValueError, match=f"{field} must be an integer or none, got an empty value"):
            HoliTomConfig.from_dict({field: empty})
        assert HoliTomConfig.problems({field: empty}) == [f"{field} must be an integer or none, got an empty value"]
    with pytest.raises(ValueError, match="merge_layer must be an integer or none"):
        resolve_holitom_config({"merge_layer": empty}, environ={})
    assert main(["run", "missing.mp4", "-q", "?", "--merge-layer", empty]) == 2
    assert capsys.readouterr().err == "holitom run: error: merge_layer must be an integer or none, got an empty value\n"
    for spelling in ("none", "None", "null", None):
        assert HoliTomConfig.from_dict({"merge_layer": spelling}).inner_mode is None


def test_no_merge_layer_is_spelled_none_in_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``holitom flops --merge-layer none`` has no inner step; a negative layer is an error (it used to mean none)."""
    import json

    from lmms_holitom.cli import main

    assert main(["flops", "--merge-layer", "none", "--json"]) == 0
    assert round(json.loads(capsys.readouterr().out)["tflops"], 2) == 3.44  # HoliTom's outer merge alone, 640 tokens
    assert main(["flops", "--merge-layer", "-5"]) == 2
    assert capsys.readouterr().err == ("holitom flops: error: merge_layer must be an integer in [1, 1024] (a "
                                       "decoder layer index) or none, got -5\n")
