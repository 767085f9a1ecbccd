"""Bad inputs and settings fail early with errors that name the problem; checkpoint names resolve."""

from __future__ import annotations

import pytest
import torch

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.hf.models import (
    HoliTomLlavaOnevisionForConditionalGeneration,
    check_checkpoint,
    resolve_model_name,
)

HOLITOM = HoliTomConfig(method="holitom", retain_ratio=0.3, merge_layer=2)


def generate(model, inputs, **kwargs):
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=2, do_sample=False, **kwargs)


# ---------------------------------------------------------------------------------------------- merge_layer
@pytest.mark.parametrize(
    "cfg", [HoliTomConfig(method="holitom", merge_layer=4), HoliTomConfig(method="fastv", merge_layer=18)]
)
def test_merge_layer_beyond_the_decoder_is_rejected(tiny_model_path, holitom_model, tiny_video_inputs, cfg):
    pattern = rf"merge_layer must be in \[1, 3\] for this model \(4 decoder layers\), got {cfg.merge_layer}"
    with pytest.raises(ValueError, match=pattern):
        HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_path, holitom=cfg)
    with pytest.raises(ValueError, match=pattern):
        holitom_model.set_holitom(cfg)
    with pytest.raises(ValueError, match=pattern):
        generate(holitom_model, tiny_video_inputs, holitom=cfg)
    with pytest.raises(ValueError, match=pattern):
        holitom_model(**tiny_video_inputs, holitom=cfg)
    assert holitom_model.holitom.method == "dense"  # nothing was switched


def test_unused_merge_layer_is_accepted(holitom_model):
    """holitom_wo_m / visionzip never read merge_layer (the config default 18 is fine on 4 layers)."""
    for method in ("holitom_wo_m", "visionzip", "dense"):
        assert holitom_model.validate_holitom(HoliTomConfig(method=method)).merge_layer == 18
    assert holitom_model.validate_holitom(HoliTomConfig(merge_layer=None)).inner_mode is None


@pytest.mark.parametrize("holitom", [{"method": "holitom"}, HoliTomConfig(method="holitom"), {"method": "fastv"}])
def test_a_default_merge_layer_the_model_lacks_moves_to_the_models_own(holitom_model, tiny_video_inputs, holitom,
                                                                         caplog):
    """Nobody chose K (the package's 18, FastV's own 2): a layer this 4-layer decoder lacks moves to the model's
    default (3), logged, through ``set_holitom`` and per call alike; an explicit K stays an error (test above)."""
    import logging

    want = 2 if dict(holitom if isinstance(holitom, dict) else holitom.given_dict())["method"] == "fastv" else 3
    with caplog.at_level(logging.INFO, logger="lmms_holitom.hf.model"):
        assert holitom_model.validate_holitom(holitom).merge_layer == want
    assert ("default merge_layer 18 of holitom -> 3 for this 4-layer decoder" in caplog.text) == (want == 3)
    out = generate(holitom_model, tiny_video_inputs, holitom=holitom)
    assert holitom_model.holitom_stats.merge_layer == want
    assert out.shape[-1] == tiny_video_inputs["input_ids"].shape[-1] + 2
    assert holitom_model.holitom.method == "dense"  # the per-call configuration is gone


def test_default_config_fits_a_small_decoder(tiny_model_path):
    model = HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(tiny_model_path)
    assert model.holitom.method == "holitom"
    assert model.holitom.merge_layer == 3  # round(18 * 4 / 28), the paper's relative depth
    assert model.default_merge_layer() == 3


# ---------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_of_another_architecture(tmp_path):
    from transformers import LlavaConfig, Qwen2Config

    qwen = tmp_path / "qwen2"
    Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, architectures=["Qwen2ForCausalLM"]) \
        .save_pretrained(qwen)
    with pytest.raises(ValueError, match=r"not a LLaVA-OneVision checkpoint.*model_type 'qwen2' \(Qwen2ForCausalLM\)"):
        HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(qwen)
    llava = tmp_path / "llava"
    LlavaConfig().save_pretrained(llava)
    with pytest.raises(ValueError, match="model_type 'llava'"):
        HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(llava)
    with pytest.raises(ValueError, match="model_type 'llava'"):
        check_checkpoint("x", config=LlavaConfig())
    with pytest.raises(OSError, match="cannot read the config"):
        HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(tmp_path / "missing")


def test_weights_load_like_the_stock_model(holitom_model, stock_model):
    ours, theirs = holitom_model.state_dict(), stock_model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_lmms_lab_names_are_loaded_as_they_are():
    """No checkpoint is swapped for another one: LLaVA-NeXT-format names load natively (tests/test_llava_next.py)."""
    for name in ("lmms-lab/llava-onevision-qwen2-7b-ov", "lmms-lab/LLaVA-Video-7B-Qwen2", "/some/local/dir"):
        assert resolve_model_name(name) == name


def test_tiny_resolves_to_the_built_model(tiny_model_path):
    assert resolve_model_name("tiny") == str(tiny_model_path)
    model = HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained("tiny", holitom=HOLITOM)
    assert model.holitom == HOLITOM


# ---------------------------------------------------------------------------------------------- inputs
def zero_frame_inputs(inputs: dict, video_token_id: int) -> dict:
    ids = inputs["input_ids"][0]
    video = ids == video_token_id
    keep = ~video
    keep[int(video.nonzero()[0])] = True  # one placeholder: 0 frames * 196 + 1 newline
    ids = ids[keep].unsqueeze(0)
    pixels = inputs["pixel_values_videos"][:, :0]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values_videos": pixels}


@pytest.mark.parametrize("method", ["holitom", "dense", "fastv"])
def test_video_with_zero_frames(holitom_model, tiny_video_inputs, method):
    inputs = zero_frame_inputs(tiny_video_inputs, holitom_model.config.video_token_id)
    cfg = HOLITOM.replace(method=method)
    with pytest.raises(ValueError, match="0 frames"):
        generate(holitom_model, inputs, holitom=cfg)
    with pytest.raises(ValueError, match="0 frames"):
        holitom_model(**inputs, holitom=cfg)


def test_batch_of_videos_is_rejected_unless_dense(holitom_model, stock_model, tiny_video_inputs):
    batch = {k: torch.cat([v, v]) for k, v in tiny_video_inputs.items()}
    with pytest.raises(ValueError, match="one video per call: got batch size 2"):
        generate(holitom_model, batch, holitom=HOLITOM)
    with torch.no_grad():  # dense is the stock path: batches work
        got = holitom_model(**batch, holitom=HoliTomConfig(method="dense"), logits_to_keep=1).logits
        want = stock_model(**batch, logits_to_keep=1).logits
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_inner_merge_needs_a_token_after_the_video(holitom_model, tiny_video_inputs):
    ids = tiny_video_inputs["input_ids"]
    last_video = int((ids[0] == holitom_model.config.video_token_id).nonzero()[-1])
    inputs = dict(tiny_video_inputs, input_ids=ids[:, : last_video + 1], attention_mask=None)
    with pytest.raises(ValueError, match="last prompt token after the video"):
        holitom_model(**inputs, holitom=HOLITOM)
    holitom_model(**inputs, holitom=HOLITOM.replace(method="holitom_wo_m"))  # fine without the inner step


def test_bad_prompt_length(holitom_model, tiny_video_inputs):
    with pytest.raises(ValueError, match="holitom_prompt_length must cover the video"):
        holitom_model(**tiny_video_inputs, holitom=HOLITOM, holitom_prompt_length=5)


def test_unsupported_cache_and_labels(holitom_model, tiny_video_inputs):
    with pytest.raises(NotImplementedError, match="DynamicCache"):
        generate(holitom_model, tiny_video_inputs, holitom=HOLITOM, cache_implementation="static")
    with pytest.raises(NotImplementedError, match="labels"):
        holitom_model(**tiny_video_inputs, labels=tiny_video_inputs["input_ids"], holitom=HOLITOM)


def test_pre_encoded_features_without_saliency(holitom_model, tiny_video_inputs):
    with torch.no_grad():
        video = holitom_model.model.get_video_features(tiny_video_inputs["pixel_values_videos"])  # dense: none
        inputs = {k: v for k, v in tiny_video_inputs.items() if k != "pixel_values_videos"}
        with pytest.raises(ValueError, match="needs the vision saliency"):
            holitom_model(**inputs, mm_encoder_outputs={"video": video}, holitom=HOLITOM)
        # FastV needs no saliency: pre-encoded features are fine
        holitom_model(**inputs, mm_encoder_outputs={"video": video}, holitom=HOLITOM.replace(method="fastv"))
