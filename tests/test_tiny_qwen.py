"""The tiny offline Qwen2.5-VL / Qwen3-VL models: stock transformers classes load them and generate offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from packaging.version import Version
from transformers import (
    AutoProcessor,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLForConditionalGeneration,
)

from lmms_holitom.hf.models.qwen_vision import QwenVisionSaliencyProbe, video_token_grid
from lmms_holitom.testing import resolve_pretrained
from lmms_holitom.testing.tiny_qwen import TINY_QWEN_NAMES, ensure_tiny_qwen_model, tiny_qwen_cache_dir

CLASSES = {"tiny-qwen2.5-vl": Qwen2_5_VLForConditionalGeneration, "tiny-qwen3-vl": Qwen3VLForConditionalGeneration}
QUESTION = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what is in the video?"}]}]


def _frames(count: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=tuple(CLASSES))  # the new families: tests/test_model_qwen3_5.py
def tiny(request):
    name = request.param
    path = Path(resolve_pretrained(name))
    model = CLASSES[name].from_pretrained(path).eval()
    return name, path, model, AutoProcessor.from_pretrained(path)


def _inputs(name: str, processor, frames: np.ndarray) -> dict:
    prompt = processor.apply_chat_template(QUESTION, add_generation_prompt=True)
    kwargs = {"do_sample_frames": False} if name == "tiny-qwen3-vl" else {}
    return dict(processor(text=[prompt], videos=[frames], return_tensors="pt", **kwargs))


def test_resolves_into_the_cache_and_is_built_once(tiny):
    name, path, _, _ = tiny
    assert path == tiny_qwen_cache_dir(name)
    assert json.loads((path / "lmms_holitom_tiny.json").read_text())["name"] == name
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_qwen_model(name) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert resolve_pretrained("tiny-qwen9") == "tiny-qwen9"  # other names pass through
    with pytest.raises(ValueError, match="unknown tiny Qwen model 'tiny-qwen9'"):
        ensure_tiny_qwen_model("tiny-qwen9")


def test_architecture(tiny):
    name, _, model, _ = tiny
    text, vision = model.config.text_config, model.config.vision_config
    assert model.config._attn_implementation == "sdpa"
    assert text.num_hidden_layers == 4 and text.num_key_value_heads < text.num_attention_heads
    assert vision.temporal_patch_size == 2 and vision.spatial_merge_size == 2
    if name == "tiny-qwen2.5-vl":
        assert vision.patch_size == 14 and vision.fullatt_block_indexes == [1] and vision.window_size == 56
    else:
        assert vision.patch_size == 16 and list(vision.deepstack_visual_indexes) == [0, 1]
        assert text.rope_parameters["mrope_interleaved"] is True


@pytest.mark.parametrize("size", [64, 112])
def test_processor_expands_the_video(tiny, size):
    name, _, model, processor = tiny
    inputs = _inputs(name, processor, _frames(8, size))
    factor = 28 if name == "tiny-qwen2.5-vl" else 32
    side = round(size / factor) * factor  # smart_resize inside the pixel budget
    (grid,) = video_token_grid(inputs["video_grid_thw"])
    assert (grid.t, grid.n) == (4, (side // factor) ** 2)
    ids = inputs["input_ids"][0].tolist()
    tok = processor.tokenizer.convert_tokens_to_ids
    assert ids.count(model.config.video_token_id) == grid.t * grid.n
    text = processor.tokenizer.decode(ids)
    if name == "tiny-qwen2.5-vl":
        assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
        assert ids.count(tok("<|vision_start|>")) == 1 and ids.count(tok("<|vision_end|>")) == 1
    else:
        # up to 5.24 the template's outer <|vision_start|> ... <|vision_end|> pair stays around the groups; 5.25
        # collapses it (every group is wrapped already)
        outer = int(Version(transformers.__version__) < Version("5.25"))
        head = "<|im_start|>user\n" + "<|vision_start|>" * outer + "<0.0 seconds><|vision_start|><|video_pad|>"
        assert text.startswith(head)
        assert text.count(" seconds>") == grid.t
        assert ids.count(tok("<|vision_start|>")) == grid.t + outer == ids.count(tok("<|vision_end|>"))
    assert text.endswith("what is in the video?<|im_end|>\n<|im_start|>assistant\n")


def test_stock_model_generates_offline_and_deterministically(tiny):
    name, path, model, processor = tiny
    inputs = _inputs(name, processor, _frames(8, 112))
    with torch.no_grad():
        first = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        again = CLASSES[name].from_pretrained(path).eval().generate(**inputs, max_new_tokens=8, do_sample=False)
    assert first.shape == (1, inputs["input_ids"].shape[1] + 8)
    assert torch.equal(first, again)


def test_video_changes_the_answer_logits(tiny):
    name, _, model, processor = tiny
    with torch.no_grad():
        a = model(**_inputs(name, processor, _frames(8, 112))).logits[0, -1]
        b = model(**_inputs(name, processor, _frames(8, 112)[::-1].copy())).logits[0, -1]
    assert (a - b).abs().max() > 1e-3


def test_probe_on_the_tiny_model_follows_the_features(tiny):
    name, _, model, processor = tiny
    inputs = _inputs(name, processor, _frames(8, 112))
    with torch.no_grad():
        features = model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
        with QwenVisionSaliencyProbe(model, frames_per_chunk=2) as probe:
            probed = model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
    (saliency,) = probe.saliency()
    assert saliency.shape == (4, 16)
    assert torch.equal(torch.cat(probed.pooler_output), torch.cat(features.pooler_output))
    assert features.pooler_output[0].shape[0] == saliency.numel()
    if name == "tiny-qwen3-vl":  # deepstack streams: same rows as the main features
        assert len(features.deepstack_features) == 2
        assert all(stream[0].shape == features.pooler_output[0].shape for stream in features.deepstack_features)


def test_make_tiny_builds_every_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``holitom make-tiny --model all`` prints one ``NAME FOLDER`` line per built-in model, each folder built;
    ``--model NAME --path DIR`` builds that one model there."""
    from lmms_holitom.cli import main
    from lmms_holitom.testing import tiny_model_dir, tiny_model_names

    assert main(["make-tiny", "--model", "all"]) == 0
    lines = [line.split(" ", 1) for line in capsys.readouterr().out.splitlines()]
    assert [name for name, _ in lines] == ["tiny", *TINY_QWEN_NAMES] == list(tiny_model_names())
    for name, folder in lines:
        assert Path(folder) == tiny_model_dir(name) and (Path(folder) / "lmms_holitom_tiny.json").is_file()
    assert main(["make-tiny", "--model", "tiny-qwen3-vl", "--path", str(tmp_path / "q3")]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'q3'}\n"
    assert json.loads((tmp_path / "q3" / "lmms_holitom_tiny.json").read_text())["name"] == "tiny-qwen3-vl"
    assert main(["make-tiny", "--model", "all", "--path", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == ("holitom make-tiny: error: --path names the folder of one model; "
                                       "it cannot be used with --model all\n")
