"""The entry points of the new Qwen families: the lmms-eval models built directly (no CLI run; one real CLI run is
in test_plugin_qwen.py) — ``qwen3_vl_holitom`` loads Qwen3-VL-MoE checkpoints and ``qwen3_5_holitom`` Qwen3.5 /
Qwen3.5-MoE ones, chosen by ``model_type``, the hybrid decoder's default merge layer, Qwen3.5's own model args —
and ``holitom run``."""

from __future__ import annotations

import pytest

from lmms_holitom.integrations.lmms_eval.plugin import MODELS


def test_the_plugin_registers_qwen3_5_holitom():
    assert MODELS["qwen3_5_holitom"] == "lmms_holitom.integrations.lmms_eval.qwen.Qwen3_5HoliTom"


@pytest.mark.parametrize("model,name,cls", [
    ("qwen3_vl_holitom", "tiny-qwen3-vl-moe", "HoliTomQwen3VLMoeForConditionalGeneration"),
    ("qwen3_5_holitom", "tiny-qwen3.5-moe", "HoliTomQwen3_5MoeForConditionalGeneration"),
])
def test_the_checkpoint_model_type_picks_the_class(model, name, cls):
    """The MoE checkpoint loads into the family's MoE class; the default merge layer (18, not chosen) becomes the
    model's own (Qwen3-VL-MoE: 3 of 4 layers; hybrid Qwen3.5-MoE: 4, after the full-attention layer 3)."""
    from lmms_holitom.integrations.lmms_eval import qwen

    lmm = getattr(qwen, MODELS[model].rsplit(".", 1)[1])(pretrained=name, device="cpu")
    assert type(lmm.model).__name__ == cls
    assert lmm.holitom_config.merge_layer == {"tiny-qwen3-vl-moe": 3, "tiny-qwen3.5-moe": 4}[name]
    assert lmm.model.holitom.merge_layer == lmm.holitom_config.merge_layer


def test_qwen3_5_model_args():
    """lmms-eval's ``qwen3_5`` defaults; bad values and a merge layer after a linear-attention layer are one-line
    errors."""
    from lmms_holitom.integrations.lmms_eval.qwen import Qwen3_5HoliTom

    lmm = Qwen3_5HoliTom(pretrained="tiny-qwen3.5", device="cpu")
    args = lmm.qwen_args
    assert (args.min_pixels, args.max_pixels, args.total_pixels, args.max_num_frames, args.enable_thinking) == (
        64 * 32 * 32, 128 * 32 * 32, 224 * 1024 * 32 * 32, 768, True)
    assert lmm._video_item("clip.mp4") == {"type": "video", "video": "clip.mp4", "min_pixels": 65536,
                                           "max_frames": 768, "total_pixels": 224 * 1024 * 32 * 32}
    with pytest.raises(ValueError, match="^enable_thinking must be true or false, got 'maybe'$"):
        Qwen3_5HoliTom(pretrained="tiny-qwen3.5", enable_thinking="maybe", device="cpu")
    with pytest.raises(ValueError, match=r"^total_pixels must be an integer"):
        Qwen3_5HoliTom(pretrained="tiny-qwen3.5", total_pixels="abc", device="cpu")
    with pytest.raises(ValueError, match="^merge_layer must follow a full-attention layer .* choose one of 4, got 3$"):
        Qwen3_5HoliTom(pretrained="tiny-qwen3.5", method="holitom", merge_layer=3, device="cpu")


@pytest.mark.parametrize("name,model_type,k", [("tiny-qwen3.5", "qwen3_5", 4),
                                               ("tiny-qwen3-vl-moe", "qwen3_vl_moe", 3)])
def test_holitom_run_answers_with_the_default_merge_layer(mp4_clip, capsys, name, model_type, k):
    """``holitom run`` loads the family by model_type; the default K is the model's (hybrid: after layer 3)."""
    import json

    from lmms_holitom.cli import main

    rc = main(["run", str(mp4_clip), "-q", "what happens?", "--pretrained", name, "--retain-ratio", "0.5",
               "--tau", "1.5", "--max-frames", "8", "--max-new-tokens", "3", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    stats = result["stats"]
    assert stats["method"] == "holitom" and stats["frames"] == 4 and stats["merge_layer"] == k
    assert stats["dense_tokens"] == 16 and stats["outer_tokens"] == 8 and stats["inner_tokens"] == 4
    assert any(model_type in note for note in result["notes"])
