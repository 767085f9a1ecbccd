"""``holitom bench`` on Qwen2.5-VL and Qwen3-VL: the tiny models end to end through the CLI, the synthetic
processor-format inputs against the real processor, and the published shapes' class and cost-model geometry.

No wall-clock assertions (times on a shared CPU are noise): token counts, FLOPs, layout and fields.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from lmms_holitom.bench.qwen import qwen_inputs, qwen_shape
from lmms_holitom.config import HoliTomConfig
from lmms_holitom.flops import PRESETS, setting_flops
from lmms_holitom.methods import METHODS as REGISTRY

#: tiny model -> (model_type, HoliTom class name, tokens per temporal group at 448 px)
TINY = {"tiny-qwen2.5-vl": ("qwen2_5_vl", "HoliTomQwen2_5_VLForConditionalGeneration", 256),
        "tiny-qwen3-vl": ("qwen3_vl", "HoliTomQwen3VLForConditionalGeneration", 196)}
METHODS = ["dense", "holitom_wo_m", "holitom", "visionzip", "fastv"]


@pytest.fixture(scope="module", params=list(TINY))
def bench_run(request, tmp_path_factory) -> tuple[str, dict, str]:
    """(name, JSON result, table) of ``holitom bench --pretrained <tiny Qwen>``: 4 frames, 1 repeat, 2 new tokens."""
    from lmms_holitom.cli import main

    out = tmp_path_factory.mktemp("bench") / "bench.json"
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        code = main(["bench", "--pretrained", request.param, "--device", "cpu", "--frames", "4", "--retain-ratios",
                     "0.25", "--new-tokens", "2", "--warmup", "0", "--repeats", "1", "--quiet", "--json", str(out)])
    assert code == 0
    return request.param, json.loads(out.read_text()), table.getvalue()


def test_every_method_measured_with_fewer_visual_tokens(bench_run) -> None:
    name, result, _ = bench_run
    family, cls, n = TINY[name]
    meta = result["meta"]
    assert result["schema"] == "holitom-bench/1" and meta["family"] == family
    assert meta["model_class"] == cls and meta["holitom_model"] is True
    assert (meta["frames"], meta["holitom_frames"], meta["tokens_per_frame"]) == (4, 2, n)
    rows = {r["method"]: r for r in result["settings"]}
    assert list(rows) == list(REGISTRY)  # the CLI's default: every method of the registry
    dense = rows["dense"]["visual_tokens"]
    assert dense == {"dense": 2 * n, "outer": 2 * n, "inner": 2 * n}
    for method in [m for m, spec in REGISTRY.items() if spec.outer is not None]:
        assert rows[method]["visual_tokens"]["outer"] < dense["outer"], method
    assert rows["holitom"]["visual_tokens"]["inner"] < rows["holitom"]["visual_tokens"]["outer"]
    assert rows["fastv"]["visual_tokens"]["outer"] == dense["outer"]
    assert rows["fastv"]["visual_tokens"]["inner"] < dense["inner"]
    for r in result["settings"]:
        assert r["generated_tokens"] == 2
        assert r["timings_source"] == "model.holitom_stats"
        for stage in ("vision", "llm_prefill", "ttft", "decode_total"):
            assert r["timings_ms"][stage]["median"] > 0, (r["name"], stage)
        assert r["memory"]["kv_cache_mb"] > 0
        assert r["speedups"]["ttft"] > 0 and r["decode_tok_s"]["median"] > 0
    assert rows["holitom"]["memory"]["kv_cache_mb"] < rows["dense"]["memory"]["kv_cache_mb"]


def test_tflops_use_the_qwen_geometry(bench_run) -> None:
    """The paper-convention TFLOPs are the cost model's at the measured visual count (no newline token)."""
    _, result, _ = bench_run
    meta = result["meta"]
    rows = {r["method"]: r for r in result["settings"]}
    dense = rows["dense"]
    text = dense["prompt_tokens"]["dense"] - dense["visual_tokens"]["outer"]
    assert text > meta["text_tokens"]  # the vision markers (and Qwen3-VL's timestamps) are text rows
    from transformers import AutoConfig

    from lmms_holitom.testing import resolve_pretrained

    shape = qwen_shape(AutoConfig.from_pretrained(resolve_pretrained(meta["pretrained"])), name=meta["model"])
    for method in ("dense", "holitom"):
        r = rows[method]
        cfg = HoliTomConfig(**{k: v for k, v in r["config"].items() if k in HoliTomConfig.__dataclass_fields__})
        want = setting_flops(cfg, shape, 2, visual_tokens=r["visual_tokens"]["outer"]) / 1e12
        assert r["tflops"]["paper"] == pytest.approx(want, rel=1e-12)
    assert rows["holitom"]["tflops"]["paper"] < dense["tflops"]["paper"]


def test_probe_cost_in_the_table(bench_run) -> None:
    _, result, table = bench_run
    probe = result["probe"]
    assert probe["frames"] == 2 and set(probe["variants"]) == {"sdpa_no_probe", "probe_chunk8"}
    variant = probe["variants"]["probe_chunk8"]
    assert variant["scores_peak_mb"] > 0 and variant["time_ms"]["median"] > 0
    assert probe["probe_overhead_pct"] is not None
    assert "4 frames = 2 temporal groups" in table
    assert "probe study (vision tower alone, 2 temporal groups" in table and "probe scores" in table


def _kinds(ids: torch.Tensor, cfg) -> str:
    """``ids`` as a string of kinds: ``[`` vision start, ``]`` vision end, ``v`` video placeholder, ``t`` a run of
    other tokens (text, timestamps)."""
    kinds = {cfg.vision_start_token_id: "[", cfg.vision_end_token_id: "]", cfg.video_token_id: "v"}
    seq = [kinds.get(i, "t") for i in ids.tolist()]
    return "".join(k for j, k in enumerate(seq) if k != "t" or j == 0 or seq[j - 1] != "t")


@pytest.mark.parametrize("name", list(TINY))
def test_synthetic_inputs_match_the_processor(name: str) -> None:
    """The bench's inputs are the installed processor's: pixels in its patch order, the same video span (markers,
    placeholders, timestamp runs — whatever this transformers release emits) as the tiny checkpoint's processor
    gives a chat-template prompt, its token types; the text halves around the span."""
    from transformers import AutoProcessor

    from lmms_holitom.hf.models import model_class_for
    from lmms_holitom.testing import resolve_pretrained

    path = resolve_pretrained(name)
    processor = AutoProcessor.from_pretrained(path)
    model = model_class_for(path).from_pretrained(path)
    cfg = model.config
    size = 128 if "qwen3" in name else 112  # 4×4 merged tokens per group at either patch size
    video = torch.rand(1, 4, 3, size, size, generator=torch.Generator().manual_seed(0))
    want = processor.video_processor(videos=[video[0]], do_resize=False, do_rescale=False, do_normalize=False,
                                     do_sample_frames=False, return_tensors="pt")
    text = torch.arange(100, 110)
    ours = qwen_inputs(model, video, text)
    assert torch.equal(ours["video_grid_thw"], want["video_grid_thw"])
    assert torch.equal(ours["pixel_values_videos"], want["pixel_values_videos"])
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    frames = np.zeros((4, size, size, 3), dtype=np.uint8)
    metadata = [{"fps": 2.0, "total_num_frames": 4, "frames_indices": [0, 1, 2, 3]}]
    real = processor(text=prompt, videos=[frames], video_metadata=metadata, return_tensors="pt",
                     do_sample_frames=False)
    layout = _kinds(ours["input_ids"][0], cfg)
    assert layout == _kinds(real["input_ids"][0], cfg)
    runs = ["v" * 32] if "qwen3" not in name else ["v" * 16] * 2  # one run, or one per temporal group
    assert [run for run in layout.replace("[", " ").replace("]", " ").replace("t", " ").split()] == runs
    ids = ours["input_ids"][0]
    assert torch.equal(ids[:5], text[:5]) and torch.equal(ids[-5:], text[5:])
    assert torch.equal(ours["mm_token_type_ids"], torch.where(ours["input_ids"] == cfg.video_token_id, 2, 0))
    assert torch.equal(real["mm_token_type_ids"][real["input_ids"] == cfg.video_token_id],
                       torch.full((int((real["input_ids"] == cfg.video_token_id).sum()),), 2))
    if "qwen3" not in name:
        assert ours["second_per_grid_ts"].tolist() == [1.0]  # 2 fps, 2 frames per group
    with torch.no_grad():
        model.generate(**ours, max_new_tokens=1, do_sample=False, holitom=HoliTomConfig(method="holitom_wo_m"))
    assert model.holitom_stats["frames"] == 2 and model.holitom_stats["dense_tokens"] == 32


@pytest.mark.parametrize(("shape", "family", "cls"), [
    ("qwen2.5-vl-7b", "qwen2_5_vl", "HoliTomQwen2_5_VLForConditionalGeneration"),
    ("qwen3-vl-8b-layers=4", "qwen3_vl", "HoliTomQwen3VLForConditionalGeneration"),
    ("qwen3-vl-30b-a3b-layers=4", "qwen3_vl_moe", "HoliTomQwen3VLMoeForConditionalGeneration"),
    ("qwen3.5-9b-layers=8", "qwen3_5", "HoliTomQwen3_5ForConditionalGeneration"),
    ("qwen3.5-35b-a3b-layers=8", "qwen3_5_moe", "HoliTomQwen3_5MoeForConditionalGeneration"),
])
def test_shapes_build_the_holitom_class_with_the_preset_geometry(shape: str, family: str, cls: str) -> None:
    """By shape: the family's HoliTom class (on the meta device: sizes only), and the FLOPs preset's geometry."""
    from lmms_holitom.bench.runner import holitom_model_class
    from lmms_holitom.shapes import build_model, parse_shape

    parsed = parse_shape(shape)
    model = build_model(parsed, device="meta", model_cls=holitom_model_class(parsed.family))
    assert type(model).__name__ == cls and model.config.model_type == family
    preset = PRESETS[shape.split("-layers=")[0]]
    assert qwen_shape(model.config, name=preset.name) == preset.with_layers(parsed.llm.layers)
    text = model.config.get_text_config()
    assert list(getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers) == list(
        preset.kinds[: parsed.llm.layers])


@pytest.mark.parametrize(("shape", "message"), [
    ("qwen3-vl-8b-layers=3", "Qwen3-VL adds 3 deepstack streams after decoder layers 0..2, so it needs at least 4 "
                             "decoder layers (e.g. qwen3-vl-8b-layers=4)"),
    ("qwen3.5-9b-layers=4", "the inner merge / FastV need a layer K whose layer K-1 is full attention; this hybrid "
                            "decoder has none, so it needs at least 5 decoder layers (e.g. qwen3.5-9b-layers=8, two "
                            "full-attention layers)"),
])
def test_too_shallow_qwen3_shape_is_a_usage_error(shape: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Before any model is built (a hybrid's first full-attention layer is layer 3, so K >= 4 needs 5 layers)."""
    from lmms_holitom.cli import main

    assert main(["bench", "--shape", shape, "--device", "cpu", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"holitom bench: shape {shape!r}: {message}"


def test_qwen3_merge_layers_after_the_deepstack_injections() -> None:
    """FastV's K = 2 and HoliTom's scaled K are raised to the deepstack stream count (3) on Qwen3-VL-8B."""
    from lmms_holitom.bench import build_settings

    by_name = {s.name: s for s in build_settings(METHODS, (0.1,), 4, min_layer=3)}
    assert by_name["holitom@0.10"].config.merge_layer == 3 and "fastv K3 r0.8" in by_name
    deep = {s.name: s for s in build_settings(METHODS, (0.1,), 36, min_layer=3)}
    assert deep["holitom@0.10"].config.merge_layer == 18
    with pytest.raises(ValueError, match="3 <= K < 3"):
        build_settings(METHODS, (0.1,), 3, min_layer=3)


def test_odd_frames_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from lmms_holitom.cli import main

    code = main(["bench", "--pretrained", "tiny-qwen3-vl", "--device", "cpu", "--frames", "3", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the loading progress bars
    assert err == ("holitom bench: --frames must be a positive multiple of 2 for qwen3_vl "
                   "(2 input frames per temporal group), got 3")



def test_hybrid_moe_bench_costs_its_layers(tmp_path) -> None:
    """``holitom bench`` on the tiny Qwen3.5-MoE (8 layers, full attention at 3 and 7, 4 experts 2 per token + a
    shared one): HoliTom's and FastV's K move to 4 (layer 3 full attention), the inner merge shortens the
    sequence, the TFLOPs are the hybrid MoE cost model's at the measured counts (not the all-full-attention
    formula), and the probe study runs on the encoder."""
    from transformers import AutoConfig

    from lmms_holitom.cli import main
    from lmms_holitom.flops import llm_flops
    from lmms_holitom.testing import resolve_pretrained

    out = tmp_path / "bench.json"
    code = main(["bench", "--pretrained", "tiny-qwen3.5-moe", "--device", "cpu", "--frames", "4", "--methods",
                 "dense,holitom,fastv", "--retain-ratios", "0.25", "--new-tokens", "2", "--warmup", "0", "--repeats",
                 "1", "--quiet", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    meta = result["meta"]
    assert meta["family"] == "qwen3_5_moe" and meta["model_class"] == "HoliTomQwen3_5MoeForConditionalGeneration"
    rows = {r["method"]: r for r in result["settings"]}
    assert rows["holitom"]["config"]["merge_layer"] == 4 and rows["fastv"]["config"]["merge_layer"] == 4
    assert rows["holitom"]["visual_tokens"]["inner"] < rows["holitom"]["visual_tokens"]["outer"] < 2 * 196
    assert rows["fastv"]["visual_tokens"]["inner"] < rows["fastv"]["visual_tokens"]["outer"] == 2 * 196
    shape = qwen_shape(AutoConfig.from_pretrained(resolve_pretrained("tiny-qwen3.5-moe")), name=meta["model"])
    assert shape.kinds.count("full_attention") == 2 and shape.moe is not None and shape.moe.shared_intermediate
    for method in ("dense", "holitom"):
        r = rows[method]
        cfg = HoliTomConfig(**{k: v for k, v in r["config"].items() if k in HoliTomConfig.__dataclass_fields__})
        want = setting_flops(cfg, shape, 2, visual_tokens=r["visual_tokens"]["outer"]) / 1e12
        assert r["tflops"]["paper"] == pytest.approx(want, rel=1e-12)
    n = rows["dense"]["visual_tokens"]["outer"]
    all_full = llm_flops(n, layers=8, hidden=shape.hidden, intermediate=shape.active_intermediate) / 1e12
    assert rows["dense"]["tflops"]["paper"] != pytest.approx(all_full, rel=1e-3)
    probe = result["probe"]
    assert set(probe["variants"]) == {"sdpa_no_probe", "probe_chunk8"} and probe["probe_overhead_pct"] is not None
