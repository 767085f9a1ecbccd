"""``holitom bench`` on the tiny shape (CPU, seconds): every JSON field, ratios, token counts, memory.

No wall-clock assertions: times on a shared CPU are noise. What is asserted is structural (fields, dense = 1.0,
positive ratios) or deterministic (visual tokens, FLOPs, KV-cache bytes, and the peak of live tensor bytes that
aten ops allocate during the call — exact on a CPU, see `lmms_holitom.bench.meters.TrackedMemoryMeter`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import lmms_holitom.hf.models  # noqa: F401  (the HoliTom classes the bench drives)
from lmms_holitom.bench import (
    SETTING_FIELDS,
    TIMING_FIELDS,
    BenchOptions,
    build_settings,
    format_table,
    paper_tau,
    run_bench,
    synthetic_video,
    write_json,
    write_plot,
)
from lmms_holitom.config import METHODS
from lmms_holitom.shapes import build_model, parse_shape, scale_layer


@pytest.fixture(scope="module")
def result() -> dict:
    """One small bench: 4 frames, every method at retain 0.25, 3 new tokens, 1 repeat, probe study on."""
    opts = BenchOptions(shape="tiny", device="cpu", frames=4, scenes=2, retain_ratios=(0.25,), new_tokens=3,
                        warmup=0, repeats=1, probe_chunks=(1,))
    return run_bench(opts)


def _by_method(result: dict, method: str) -> dict:
    return next(r for r in result["settings"] if r["method"] == method)


def test_every_field_present(result: dict) -> None:
    assert result["schema"] == "holitom-bench/1"
    # every method of the registry, in its order (one retain ratio)
    assert [r["method"] for r in result["settings"]] == list(METHODS)
    for r in result["settings"]:
        assert set(SETTING_FIELDS) <= set(r), set(SETTING_FIELDS) - set(r)
        assert set(TIMING_FIELDS) <= set(r["timings_ms"])
        for name in ("ttft", "llm_prefill", "vision", "decode_total"):
            stats = r["timings_ms"][name]
            assert stats["median"] is not None and stats["min"] <= stats["median"] <= stats["max"]
            assert stats["best"] == stats["min"]
        assert r["decode_tok_s"]["best"] == r["decode_tok_s"]["max"]
        assert set(r["visual_tokens"]) == {"dense", "outer", "inner"}
        assert set(r["tflops"]) == {"paper", "exact", "vision"}
        assert r["decode_tok_s"]["median"] > 0
        assert r["generated_tokens"] == 3
        mem = r["memory"]
        assert {"peak_mb", "llm_peak_mb", "phase_peak_mb", "kv_cache_mb", "measure"} <= set(mem)
        assert set(mem["phase_peak_mb"]) == {"before_vision", "vision", "merge_and_prefill", "decode"}
    meta = result["meta"]
    for key in ("device", "dtype", "frames", "prompt_tokens", "new_tokens", "torch", "transformers", "memory_measure"):
        assert key in meta
    assert meta["prompt_tokens"] == 4 * 196 + 1 + 30


def test_ratios_positive_and_dense_is_one(result: dict) -> None:
    dense = result["settings"][0]
    for key, value in dense["ratios"].items():
        assert value == pytest.approx(1.0), key
    for key, value in dense["speedups"].items():
        assert value == pytest.approx(1.0), key
    for r in result["settings"]:
        for key, value in {**r["ratios"], **r["speedups"]}.items():
            assert value is not None and value > 0 and math.isfinite(value), (r["name"], key)


def test_visual_tokens_and_flops_shrink(result: dict) -> None:
    dense, holitom = _by_method(result, "dense"), _by_method(result, "holitom")
    assert dense["visual_tokens"] == {"dense": 785, "outer": 785, "inner": 785}
    assert holitom["visual_tokens"]["outer"] < dense["visual_tokens"]["outer"]
    assert holitom["visual_tokens"]["inner"] < holitom["visual_tokens"]["outer"]  # the inner merge at K
    wo_m = _by_method(result, "holitom_wo_m")
    assert wo_m["visual_tokens"]["inner"] == wo_m["visual_tokens"]["outer"]
    fastv = _by_method(result, "fastv")
    assert fastv["visual_tokens"]["outer"] == 785 and fastv["visual_tokens"]["inner"] < 785
    for r in result["settings"][1:]:
        assert r["tflops"]["paper"] < dense["tflops"]["paper"]
        assert r["ratios"]["tflops_exact"] < 1.0
    assert holitom["prompt_tokens"]["compressed"] == holitom["visual_tokens"]["outer"] + 30


def test_memory_holitom_not_above_dense(result: dict) -> None:
    """Deterministic CPU measure: LLM-side peak of live tensor bytes and the KV cache of HoliTom <= dense.

    (The vision-phase peak includes the saliency probe's O(chunk) scores, which on the tiny model outweigh its
    whole LLM — reported, not asserted; see the probe study.)
    """
    dense = _by_method(result, "dense")["memory"]
    for method in ("holitom", "holitom_wo_m"):
        mem = _by_method(result, method)["memory"]
        assert mem["llm_peak_mb"] <= dense["llm_peak_mb"]
        assert mem["kv_cache_mb"] < dense["kv_cache_mb"]
    assert _by_method(result, "holitom")["memory"]["kv_cache_mb"] < _by_method(result, "holitom_wo_m")["memory"][
        "kv_cache_mb"]


def test_probe_study(result: dict) -> None:
    probe = result["probe"]
    assert {"sdpa_no_probe", "probe_chunk8", "probe_chunk1", "eager_all_layer_attention"} <= set(probe["variants"])
    assert probe["probe_overhead_pct"] is not None and probe["eager_overhead_pct"] is not None
    # O(chunk): the probe's extra memory shrinks with the chunk and stays under eager all-layer attention
    by_chunk = probe["probe_extra_memory_mb_by_chunk"]
    assert by_chunk["1"] < by_chunk["8"]
    assert probe["probe_extra_memory_mb"] < probe["eager_extra_memory_mb"]


def test_outputs(result: dict, tmp_path: Path) -> None:
    table = format_table(result)
    for r in result["settings"]:
        assert r["name"] in table
    path = tmp_path / "bench.json"
    write_json(result, path)
    loaded = json.loads(path.read_text())
    assert loaded["settings"][0]["ratios"]["ttft"] == pytest.approx(1.0)
    pytest.importorskip("matplotlib")
    fig = write_plot(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert "1 repeat per setting: no spread shown" in fig.get_supxlabel()
    assert any(t["target"].startswith("LLM-side peak memory") for t in result["targets"])


def test_cli_dense_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lmms_holitom.cli import main

    out = tmp_path / "b.json"
    code = main(["bench", "--shape", "tiny", "--device", "cpu", "--frames", "2", "--methods", "dense",
                 "--new-tokens", "2", "--warmup", "0", "--repeats", "1", "--no-probe", "--no-memory",
                 "--json", str(out), "--quiet"])
    assert code == 0
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["settings"]] == ["dense"]
    out = capsys.readouterr().out
    assert "dense" in out
    # one repeat has no spread: the table says that disagreeing repeats (DISAGREE_RATIO) cannot be seen
    assert "1 repeat per setting: no spread, so disagreeing repeats cannot be seen (use --repeats 3)" in out


# ---------------------------------------------------------------------------------------------- pieces
def test_settings_rules() -> None:
    settings = build_settings(["dense", "holitom", "holitom_wo_m", "visionzip", "fastv"], [0.10, 0.25], layers=28)
    names = [s.name for s in settings]
    assert names == ["dense", "holitom@0.10", "holitom@0.25", "holitom_wo_m@0.10", "holitom_wo_m@0.25",
                     "visionzip@0.10", "visionzip@0.25", "fastv K2 r0.8"]
    by = {s.name: s.config for s in settings}
    assert by["holitom@0.10"].tau == 0.65 and by["holitom@0.25"].tau == 0.80
    assert by["holitom@0.10"].merge_layer == 18 and by["holitom_wo_m@0.10"].inner_mode is None
    assert by["fastv K2 r0.8"].merge_layer == 2 and by["fastv K2 r0.8"].merge_ratio == 0.8
    small = {s.name: s.config for s in build_settings(["holitom", "fastv"], [0.1], layers=4, fastv_ratio="match")}
    assert small["holitom@0.10"].merge_layer == 3  # round(18 / 28 * 4)
    assert small["fastv@0.10"].merge_layer == 2 and small["fastv@0.10"].merge_ratio == pytest.approx(0.9)
    assert paper_tau(0.1) == 0.65 and paper_tau(0.15) == 0.8
    assert scale_layer(18, 24) == 18 and scale_layer(18, 8) == 5 and scale_layer(2, 2) == 1
    with pytest.raises(ValueError):
        build_settings(["nope"], [0.1], layers=28)


def test_shapes_match_published_checkpoints() -> None:
    model = build_model("7b", device="meta", dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    assert params == pytest.approx(8.03e9, rel=2e-3)  # LLaVA-OneVision-Qwen2-7B: 8.03 B
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.num_hidden_layers, text.hidden_size, text.num_key_value_heads) == (28, 3584, 4)
    assert (vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers) == (1152, 4304, 26)
    assert model.config.video_token_index == 151647
    short = parse_shape("72b-layers=3")
    assert (short.llm.layers, short.llm.hidden, short.llm.heads) == (3, 8192, 64)
    assert parse_shape("0.5b").tie_word_embeddings and not parse_shape("7b").tie_word_embeddings
    with pytest.raises(ValueError):
        parse_shape("13b")


def test_synthetic_video_has_temporal_redundancy() -> None:
    video = synthetic_video(8, scenes=2, seed=0)
    assert video.shape == (1, 8, 3, 384, 384) and video.abs().max() <= 1.0
    flat = video[0].flatten(1)
    cos = torch.nn.functional.cosine_similarity(flat[:-1], flat[1:], dim=1)
    assert cos[[0, 1, 2, 4, 5, 6]].min() > 0.9  # within a scene
    assert cos[3] < 0.5  # the cut between scenes
    assert torch.equal(video, synthetic_video(8, scenes=2, seed=0))


def test_stock_class_fallback_measures_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the HoliTom class the bench still measures dense on transformers' stock model (forward hooks)."""
    import lmms_holitom.bench.runner as runner

    monkeypatch.setattr(runner, "holitom_model_class", lambda family="llava_onevision": None)
    opts = BenchOptions(shape="tiny", device="cpu", frames=2, new_tokens=2, warmup=0, repeats=1, probe=False)
    result = run_bench(opts)
    assert result["meta"]["model_class"] == "LlavaOnevisionForConditionalGeneration"
    (dense,) = result["settings"]
    assert dense["timings_source"].startswith("forward hooks")
    assert dense["visual_tokens"]["outer"] == 2 * 196 + 1
    assert dense["timings_ms"]["vision"]["median"] > 0 and dense["memory"]["kv_cache_mb"] > 0
