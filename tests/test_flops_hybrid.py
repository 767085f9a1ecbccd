"""The cost model of hybrid (Gated DeltaNet + full attention) and mixture-of-experts decoders: Qwen3.5, Qwen3.5-MoE,
Qwen3-VL-MoE (algorithm §8).

The exact convention is checked against the real transformers modules built on the meta device: a linear layer's
multiply-adds per token are its weight count, so the slow way sums, layer by layer, the weights a token passes (an
MoE's routed experts at k/E of the experts' weights) plus each layer's attention or recurrence term.
"""

from __future__ import annotations

import json

import pytest
import torch

from lmms_holitom.cli import main
from lmms_holitom.config import HoliTomConfig
from lmms_holitom.flops import (
    PRESETS,
    LinearAttention,
    ModelShape,
    MoE,
    decoder_flops,
    get_preset,
    linear_attention_macs,
    llm_flops,
    mlp_macs,
    setting_flops,
)

OV7B = PRESETS["llava-onevision-7b"]
Q35 = PRESETS["qwen3.5-9b"]


def _per_token_weights(layer: torch.nn.Module, moe: MoE | None) -> int:
    """Weights one token multiplies in a decoder layer: every matrix (and the depthwise conv kernel), the routed
    experts at ``k / E`` of theirs; norms, gates' biases and the decay parameters (1-D) are elementwise."""
    total = 0.0
    for name, param in layer.named_parameters():
        if param.dim() < 2:
            continue
        share = moe.experts_per_token / moe.experts if moe is not None and ".experts." in name else 1.0
        total += param.numel() * share
    assert total == int(total)
    return int(total)


def _mixer_term(layer: torch.nn.Module, tokens: int) -> int:
    """The attention scores + values of a full-attention layer over ``tokens`` causal tokens, or a Gated DeltaNet's
    recurrence (3 state-sized products per value head and token), read from the module's own sizes."""
    if hasattr(layer, "linear_attn"):
        gdn = layer.linear_attn
        return 3 * tokens * gdn.num_v_heads * gdn.head_k_dim * gdn.head_v_dim
    width = layer.self_attn.o_proj.in_features  # heads * head_dim
    return 2 * (tokens * (tokens + 1) // 2) * width


@pytest.mark.parametrize("name", ["qwen3.5-9b-layers=8", "qwen3.5-35b-a3b-layers=8", "qwen3-vl-30b-a3b-layers=4"])
def test_exact_cost_is_the_real_layers_summed_one_by_one(name: str) -> None:
    from lmms_holitom.bench.qwen import qwen_shape
    from lmms_holitom.shapes import build_model, parse_shape

    bench = parse_shape(name)
    model = build_model(bench, device="meta")
    shape = bench.llm
    assert qwen_shape(model.config, name=shape.name) == shape  # the preset is what the published config builds
    layers = model.model.language_model.layers
    n, text, k, r = 640, 37, 4, 0.5
    late = round(n * (1 - r))
    slow = 0
    for i, layer in enumerate(layers):
        tokens = text + (n if i < k else late)
        slow += 2 * (tokens * _per_token_weights(layer, shape.moe) + _mixer_term(layer, tokens))
    slow += 2 * model.lm_head.weight.numel()  # the last position's logits
    got = decoder_flops(shape, n, merge_layer=k, merge_ratio=r, convention="exact", text_tokens=text)
    assert got == slow
    real_kinds = ["linear_attention" if hasattr(layer, "linear_attn") else "full_attention" for layer in layers]
    assert real_kinds == list(shape.kinds)


def test_paper_cost_of_a_hybrid_is_the_sum_over_its_layers() -> None:
    """Qwen3.5-9B, HoliTom 10 % at K = 20: 3 linear layers in 4 cost ``4nd² + 3n·H_v·d_k·d_v + 2ndm``, every fourth
    layer the paper's ``4nd² + 2n²d + 2ndm``; layers >= K see half the tokens."""
    d, m, state = 4096, 12288, 32 * 128 * 128
    full = lambda t: 4 * t * d * d + 2 * t * t * d + 2 * t * d * m  # noqa: E731
    linear = lambda t: 4 * t * d * d + 3 * t * state + 2 * t * d * m  # noqa: E731
    cfg = HoliTomConfig(method="holitom", retain_ratio=0.10, tau=0.65, merge_layer=20, merge_ratio=0.5)
    n = 16 * 20  # 16 groups x ceil(0.1 * 196)
    slow = sum((full if (i + 1) % 4 == 0 else linear)(n if i < 20 else n // 2) for i in range(32))
    assert setting_flops(cfg, Q35) == slow
    assert setting_flops(HoliTomConfig(method="dense"), Q35) == 8 * full(3136) + 24 * linear(3136)


@pytest.mark.parametrize("convention", ["paper", "exact"])
def test_full_attention_only_layer_types_give_the_dense_formula(convention: str) -> None:
    explicit = ModelShape("ov7b-typed", 28, 3584, 18944, 28, 4, 152064, layer_types=("full_attention",) * 28)
    for k, r, text in ((None, 0.0, 0), (18, 0.5, 100), (2, 0.8, 7)):
        want = llm_flops(6272, layers=28, hidden=3584, intermediate=18944, merge_layer=k, merge_ratio=r,
                         convention=convention, text_tokens=text, kv_hidden=OV7B.kv_hidden, vocab=152064)
        assert decoder_flops(explicit, 6272, merge_layer=k, merge_ratio=r, convention=convention,
                             text_tokens=text) == want
        assert decoder_flops(OV7B, 6272, merge_layer=k, merge_ratio=r, convention=convention,
                             text_tokens=text) == want


def test_linear_attention_cost_per_token_does_not_grow_with_the_sequence() -> None:
    lin = Q35.linear
    assert lin is not None
    one = linear_attention_macs(1, 4096, lin)
    assert one == 4096 * (2 * 2048 + 3 * 4096 + 2 * 32) + (2 * 2048 + 4096) * 4 + 3 * 32 * 128 * 128
    for n in (2, 100, 6272):
        assert linear_attention_macs(n, 4096, lin) == n * one
    all_linear = ModelShape("gdn", 4, 4096, 12288, 16, 4, 0, layer_types=("linear_attention",) * 4, linear=lin)
    all_full = ModelShape("full", 4, 4096, 12288, 16, 4, 0)
    for conv in ("paper", "exact"):
        assert decoder_flops(all_linear, 2000, convention=conv) == 2 * decoder_flops(all_linear, 1000, convention=conv)
        assert decoder_flops(all_full, 2000, convention=conv) > 2 * decoder_flops(all_full, 1000, convention=conv)


def test_moe_with_one_expert_is_the_dense_mlp() -> None:
    """One expert, top-1, no shared expert: the dense SwiGLU plus the router's n·d (exact); the paper's count, which
    reads the active width only, is the dense one."""
    n, d, m = 300, 64, 96
    one = MoE(experts=1, experts_per_token=1, expert_intermediate=m)
    assert mlp_macs(n, d, m, one) == mlp_macs(n, d, m) + n * d
    dense = ModelShape("dense", 6, d, m, 4, 2, 100)
    moe = ModelShape("moe", 6, d, m, 4, 2, 100, moe=one)
    assert decoder_flops(moe, n, merge_layer=3, merge_ratio=0.5) == decoder_flops(dense, n, merge_layer=3,
                                                                                  merge_ratio=0.5)
    assert decoder_flops(moe, n, convention="exact") == decoder_flops(dense, n, convention="exact") + 2 * 6 * n * d
    shared = MoE(experts=8, experts_per_token=2, expert_intermediate=16, shared_intermediate=32)
    assert mlp_macs(n, d, 0, shared) == n * d * 8 + 3 * n * d * 2 * 16 + 3 * n * d * 32 + n * d
    assert shared.active_intermediate == 2 * 16 + 32


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"layer_types": ("full_attention",) * 3}, "layer_types must name 4 layers"),
    ({"layer_types": ("full_attention",) * 3 + ("mamba",)}, "layer_types must be full_attention or linear_attention"),
    ({"layer_types": ("linear_attention",) * 4}, "need the LinearAttention sizes"),
    ({"moe": "bad"}, None),
])
def test_bad_shapes(kwargs: dict, match: str | None) -> None:
    if match is None:
        with pytest.raises(ValueError, match="experts_per_token must be in \\[1, 4\\]"):
            MoE(experts=4, experts_per_token=5, expert_intermediate=8)
        with pytest.raises(ValueError, match="value_heads must be a number >= 1"):
            LinearAttention(key_heads=1, value_heads=0, key_head_dim=8, value_head_dim=8)
        return
    with pytest.raises(ValueError, match=match):
        ModelShape("bad", 4, 64, 128, 4, 2, 100, **kwargs)


def test_layers_variant_keeps_the_first_layer_kinds() -> None:
    eight = Q35.with_layers(8)
    assert eight.kinds == ("linear_attention",) * 3 + ("full_attention",) + ("linear_attention",) * 3 + (
        "full_attention",)
    with pytest.raises(ValueError, match="layers must be <= 32, got 33"):
        Q35.with_layers(33)
    assert get_preset("qwen3.5") is Q35 and get_preset("qwen3.5-moe").moe.shared_intermediate == 512
    assert get_preset("qwen3-vl-moe").moe == MoE(experts=128, experts_per_token=8, expert_intermediate=768)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["flops", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_hybrid_preset_takes_the_models_merge_layer(capsys: pytest.CaptureFixture[str]) -> None:
    """HoliTom's default K = 18 follows a linear-attention layer on Qwen3.5-9B: the CLI uses the model's K = 20."""
    code, out, _ = _cli(["--preset", "qwen3.5-9b", "--retain-ratio", "0.1", "--json"], capsys)
    assert code == 0
    got = json.loads(out)
    assert (got["preset"], got["merge_layer"], got["visual_tokens"]) == ("qwen3.5-9b", 20, 320)
    want = setting_flops(HoliTomConfig(method="holitom", retain_ratio=0.1, merge_layer=20), Q35)
    assert got["tflops"] == pytest.approx(want / 1e12, rel=1e-12)
    # FastV's own K = 2 moves to the nearest layer the decoder takes (4), as the model classes and lmms-eval move it
    code, out, _ = _cli(["--preset", "qwen3.5-9b", "--method", "fastv", "--json"], capsys)
    assert code == 0 and json.loads(out)["merge_layer"] == 4
    code, out, _ = _cli(["--preset", "qwen3.5-35b-a3b"], capsys)
    assert code == 0 and out.startswith("holitom on qwen3.5-35b-a3b (hybrid: 30 linear-attention + 10 full-attention "
                                        "layers, MoE 8 of 256 experts + shared expert): 320 visual tokens, K=20, ")


def test_cli_rejects_a_merge_layer_after_a_linear_layer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["--preset", "qwen3.5-9b", "--merge-layer", "18"], capsys)
    assert code == 2 and out == ""
    assert err.strip() == ("holitom flops: error: merge_layer must follow a full-attention layer (layer K-1 supplies "
                           "the attention row); this decoder's layer 17 is linear_attention: choose one of 4, 8, 12, "
                           "16, 20, 24, 28, got 18")


def test_cli_table_of_moe_presets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["--preset", "qwen3-vl-30b-a3b", "--table", "--json"], capsys)
    assert code == 0
    rows = {r["setting"]: r for r in json.loads(out)}
    assert rows["dense"]["tflops"] == pytest.approx(
        setting_flops(HoliTomConfig(method="dense"), "qwen3-vl-30b-a3b") / 1e12, rel=1e-12)
    assert "fastv K=2 r=0.8" in rows  # a full-attention decoder keeps FastV's K
    code, out, _ = _cli(["--preset", "qwen3.5-35b-a3b", "--table", "--json"], capsys)
    rows = {r["setting"]: r for r in json.loads(out)}
    assert "fastv K=4 r=0.8" in rows and rows["holitom 10%"]["share_of_dense"] < rows["holitom_wo_m 10%"][
        "share_of_dense"]


def test_lmms_eval_records_cost_hybrid_moe_decoders() -> None:
    """The statistics records' TFLOPs (`recorder.visual_tflops`, what lmms-eval runs write per sample) read a
    Qwen3.5-MoE text config — which has no dense ``intermediate_size`` — and cost its layers by kind and its
    experts; a dense Qwen2 config keeps the paper's per-layer formula with the measured counts before/after K."""
    from transformers import Qwen2Config, Qwen3_5MoeTextConfig

    from lmms_holitom.flops import decoder_fields
    from lmms_holitom.integrations.lmms_eval.recorder import visual_tflops

    moe = Qwen3_5MoeTextConfig(hidden_size=64, num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
                               head_dim=32, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
                               linear_value_head_dim=16, num_experts=4, num_experts_per_tok=2,
                               moe_intermediate_size=32, shared_expert_intermediate_size=32, vocab_size=100)
    assert not hasattr(moe, "intermediate_size")
    shape = ModelShape("tiny-moe", **decoder_fields(moe))
    assert shape.kinds.count("full_attention") == 2 and shape.moe is not None
    got = visual_tflops(moe, 300, 120, 4) * 1e12
    d, m, state = 64, 2 * 32 + 32, 4 * 16 * 16
    slow = sum(4 * t * d * d + (2 * t * t * d if (i + 1) % 4 == 0 else 3 * t * state) + 2 * t * d * m
               for i, t in enumerate([300] * 4 + [120] * 4))
    assert got == pytest.approx(slow, rel=1e-12)
    dense = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4)
    early = llm_flops(300, layers=3, hidden=64, intermediate=128)
    late = llm_flops(120, layers=3, hidden=64, intermediate=128)
    assert visual_tflops(dense, 300, 120, 3) * 1e12 == pytest.approx(early + late, rel=1e-12)
    assert visual_tflops(dense, 300, 300, None) * 1e12 == pytest.approx(llm_flops(300, layers=6, hidden=64,
                                                                                  intermediate=128), rel=1e-12)
