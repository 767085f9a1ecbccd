"""The requests ``vllm_holitom`` builds for Qwen2.5-VL equal what ``qwen2_5_vl_holitom`` feeds transformers (main venv,
no engine): the same frames (its qwen_vl_utils + decord reader against our PyAV one, on real mp4s), the same chat
prompt, and a video metadata with which the HF processor (the one vLLM calls) gives the same patch grid, the same
``second_per_grid_ts`` (M-RoPE time steps) and the same pixels as without it. Qwen3-VL / Qwen3-VL-MoE / Qwen3.5
likewise against ``qwen3_vl_holitom`` / ``qwen3_5_holitom``, with their real metadata (the timestamp tokens). The
engine side is in tests/vllm_backend/test_vllm_lmms_eval.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from plugin_fixtures import write_clip

from lmms_holitom.integrations.lmms_eval.qwen import Qwen2_5_VLHoliTom, QwenVisuals
from lmms_holitom.integrations.lmms_eval.visuals import VisualError
from lmms_holitom.integrations.lmms_eval.vllm_families import FAMILIES, architecture_of
from lmms_holitom.testing.tiny_vllm import ensure_tiny_vllm

QWEN = "tiny-vllm-qwen2.5-vl"


@pytest.fixture(scope="module")
def checkpoint() -> str:
    return str(ensure_tiny_vllm(QWEN))


def _family(checkpoint: str, **args):
    cls = FAMILIES[architecture_of(checkpoint)]
    return cls({**cls.ARGS, **args})


def test_the_checkpoint_picks_the_qwen_family_with_the_transformers_models_defaults(checkpoint: str) -> None:
    family = _family(checkpoint)
    assert (family.name, family.lmms_eval_model) == ("Qwen2.5-VL", "qwen2_5_vl_holitom")
    transformers_defaults = {k: v for k, v in Qwen2_5_VLHoliTom.FAMILY_ARGS.items() if k != "pretrained"}
    assert transformers_defaults == type(family).ARGS


@pytest.mark.parametrize(("frames", "size", "max_num_frames"),
                         [(6, (64, 48), 32), (23, (96, 40), 5), (40, (640, 360), 8)])
def test_frames_equal_qwen2_5_vl_holitoms(tmp_path: Path, checkpoint: str, frames: int, size: tuple[int, int],
                                         max_num_frames: int) -> None:
    """Short, odd-sized and larger-than-max_pixels clips: bit-identical frames (the transformers model's reader is
    called as that model calls it)."""
    clip = write_clip(tmp_path / "c.mp4", frames=frames, size=size)
    family = _family(checkpoint, max_num_frames=max_num_frames)
    reference, _, _ = Qwen2_5_VLHoliTom._read_video(family, str(clip))  # reads min/max pixels and max_num_frames
    ours = family.visuals([str(clip)]).video
    assert ours.dtype == np.uint8 and torch.equal(torch.from_numpy(ours).permute(0, 3, 1, 2).float(), reference)


def test_prompt_and_metadata_give_the_transformers_models_inputs(tmp_path: Path, checkpoint: str) -> None:
    """The chat prompt is the transformers model's; the HF processor given our metadata (as vLLM gives it) returns
    the patch grid, ``second_per_grid_ts`` and pixels it returns for the bare frames ``qwen2_5_vl_holitom`` passes."""
    from transformers import AutoProcessor
    from transformers.video_utils import VideoMetadata

    clip = write_clip(tmp_path / "c.mp4", frames=16, size=(128, 96))
    family = _family(checkpoint, max_num_frames=4)
    visuals = family.visuals([str(clip)])
    request = family.request("Which way?<image>", visuals, checkpoint)
    processor = AutoProcessor.from_pretrained(checkpoint, min_pixels=family.qwen_args.min_pixels,
                                              max_pixels=family.qwen_args.max_pixels)
    item = {"type": "video", "video": str(clip)}
    messages = Qwen2_5_VLHoliTom._messages(family, "Which way?<image>", QwenVisuals(video=visuals.video, item=item))
    assert request["prompt"] == processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    frames, metadata = request["multi_modal_data"]["video"]
    assert frames is visuals.video and request["mm_processor_kwargs"] == {"min_pixels": 200704, "max_pixels": 1605632}
    reference = processor(text=[request["prompt"]], videos=[torch.from_numpy(frames).permute(0, 3, 1, 2).float()],
                          return_tensors="pt")
    meta = VideoMetadata(**{k: v for k, v in metadata.items() if k != "do_sample_frames"})
    ours = processor(text=[request["prompt"]], videos=[frames], video_metadata=[meta], do_sample_frames=False,
                     return_tensors="pt")
    grid = [[2, 28, 38]]  # 2 groups of 14-px patches of 392 x 532
    assert ours["video_grid_thw"].tolist() == reference["video_grid_thw"].tolist() == grid
    assert ours["second_per_grid_ts"].tolist() == reference["second_per_grid_ts"].tolist()
    assert torch.equal(ours["pixel_values_videos"], reference["pixel_values_videos"])
    assert torch.equal(ours["input_ids"], reference["input_ids"])
    assert family.frames(SimpleNamespace(vision_config=SimpleNamespace(temporal_patch_size=2)), visuals) == 2


def test_image_only_and_bad_videos_fail_their_sample(tmp_path: Path, checkpoint: str) -> None:
    from PIL import Image

    family = _family(checkpoint)
    one_frame = write_clip(tmp_path / "one.mp4", frames=1)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    for visuals, message in (([Image.new("RGB", (8, 8))], "1 image input(s): vllm_holitom evaluates videos"),
                             ([str(tmp_path / "none.mp4")], "file not found"),
                             ([str(corrupt)], "cannot decode video"),
                             ([str(one_frame)], "nframes should in interval [2, 1]"),
                             ([str(one_frame), str(corrupt)], "2 videos in one document")):
        with pytest.raises(VisualError) as info:
            family.visuals(visuals)
        assert message in str(info.value), str(info.value)
    assert family.visuals([]).video is None  # a text-only document


def test_every_family_vllm_holitom_serves_is_one_the_plugin_prunes() -> None:
    """A family here without the plugin's class for its architecture would run stock vLLM, unpruned, silently."""
    from lmms_holitom.integrations.vllm.plugin import FAMILIES as PLUGIN_FAMILIES

    assert set(FAMILIES) <= set(PLUGIN_FAMILIES)


# ------------------------------------------------------------------------------------ Qwen3-VL, Qwen3.5
QWEN3 = {"qwen3-vl": "tiny-vllm-qwen3-vl", "qwen3-vl-moe": "tiny-vllm-qwen3-vl-moe", "qwen3.5": "tiny-vllm-qwen3.5",
         "qwen3.5-moe": "tiny-vllm-qwen3.5-moe"}


def _transformers_model(name: str, family):
    """The transformers lmms-eval model of ``family`` with the family's settings and no weights loaded: its own
    ``_load_visuals`` / ``_messages`` / ``_inputs`` build the reference inputs."""
    from transformers import AutoProcessor

    from lmms_holitom.integrations.lmms_eval.qwen import Qwen3_5HoliTom, Qwen3VLHoliTom

    cls = Qwen3_5HoliTom if name.startswith("qwen3.5") else Qwen3VLHoliTom
    model = cls.__new__(cls)
    model.qwen_args = family.qwen_args  # the same parsed args (`qwen_args.QwenArgs`)
    model.processor = AutoProcessor.from_pretrained(str(ensure_tiny_vllm(QWEN3[name])),
                                                    max_pixels=family.qwen_args.max_pixels,
                                                    min_pixels=family.qwen_args.min_pixels)
    return model


@pytest.mark.parametrize(("name", "family_name", "model_id"), [
    ("qwen3-vl", "Qwen3-VL", "qwen3_vl_holitom"), ("qwen3-vl-moe", "Qwen3-VL", "qwen3_vl_holitom"),
    ("qwen3.5", "Qwen3.5", "qwen3_5_holitom"), ("qwen3.5-moe", "Qwen3.5", "qwen3_5_holitom")])
def test_qwen3_checkpoints_pick_their_family_with_the_transformers_models_defaults(name: str, family_name: str,
                                                                                  model_id: str) -> None:
    from lmms_eval.models import get_model

    family = _family(str(ensure_tiny_vllm(QWEN3[name])))
    assert (family.name, family.lmms_eval_model) == (family_name, model_id)
    transformers_args = {k: v for k, v in get_model(model_id).FAMILY_ARGS.items() if k != "pretrained"}
    assert transformers_args == type(family).ARGS


@pytest.mark.parametrize(("name", "frames", "size", "args"), [
    ("qwen3-vl", 6, (64, 48), {}),                                   # nframes = all 6 frames
    ("qwen3-vl", 23, (96, 40), {"max_num_frames": 5}),                # nframes 5 -> 6 of 23, odd size
    ("qwen3-vl", 40, (640, 360), {"max_num_frames": 8, "min_pixels": 4096, "max_pixels": 131072}),  # capped
    ("qwen3-vl", 40, (128, 96), {"fps": 1.0, "max_num_frames": 32}),  # fps sampling: 10 s at 4 fps -> 10 frames
    ("qwen3-vl-moe", 12, (64, 48), {"max_num_frames": 4}),
    ("qwen3.5", 30, (128, 96), {}),                                   # total_pixels budget, max_frames
    ("qwen3.5", 30, (128, 96), {"total_pixels": "", "max_num_frames": 4}),  # no budget: Qwen3-VL's nframes
    ("qwen3.5-moe", 12, (64, 48), {"max_num_frames": 4}),
])
def test_qwen3_frames_and_metadata_equal_the_transformers_models(tmp_path: Path, name: str, frames: int,
                                                                size: tuple[int, int], args: dict) -> None:
    """Bit-identical frames and the same metadata (source fps, sampled indices, frame count) as the transformers
    model's ``process_vision_info`` call (``image_patch_size=16``, decord there, PyAV here)."""
    clip = write_clip(tmp_path / "c.mp4", frames=frames, size=size)
    family = _family(str(ensure_tiny_vllm(QWEN3[name])), **args)
    reference = _transformers_model(name, family)._load_visuals([str(clip)])
    ours = family.visuals([str(clip)])
    assert ours.video.dtype == np.uint8 and ours.video.shape[1] % 32 == 0 and ours.video.shape[2] % 32 == 0
    assert torch.equal(torch.from_numpy(ours.video).permute(0, 3, 1, 2).float(), reference.video)
    metadata = reference.processor_kwargs["video_metadata"][0]
    assert {**ours.metadata, "video_backend": "decord"} == metadata
    assert ours.metadata["fps"] == 4.0 and ours.metadata["total_num_frames"] == frames


@pytest.mark.parametrize("name", ["qwen3-vl", "qwen3.5"])
def test_qwen3_prompt_and_metadata_give_the_transformers_models_inputs(tmp_path: Path, name: str) -> None:
    """The chat prompt is the transformers model's (Qwen3.5: with ``enable_thinking``); the HF processor given our
    request's frames, metadata and ``mm_processor_kwargs`` (as vLLM gives them) returns the transformers model's
    input ids (timestamp tokens included), patch grid and pixels; the metadata's real timing matters (the frames
    with transformers' assumed timing give other timestamp tokens)."""
    from transformers.video_utils import VideoMetadata

    checkpoint = str(ensure_tiny_vllm(QWEN3[name]))
    clip = write_clip(tmp_path / "c.mp4", frames=40, size=(128, 96))
    family = _family(checkpoint, max_num_frames=6)
    model = _transformers_model(name, family)
    context = "Which way?<image>"
    reference = model._inputs(context, model._load_visuals([str(clip)]))
    request = family.request(context, family.visuals([str(clip)]), checkpoint)
    frames, metadata = request["multi_modal_data"]["video"]
    assert request["mm_processor_kwargs"] == {"do_resize": False} and metadata["do_sample_frames"] is False
    thinking = {"enable_thinking": True} if name == "qwen3.5" else {}
    assert request["prompt"] == model.processor.apply_chat_template(
        model._messages(context, model._load_visuals([str(clip)])), tokenize=False, add_generation_prompt=True,
        **thinking)
    assert request["prompt"].count("<|vision_start|><|video_pad|><|vision_end|>") == 1

    def processed(meta: dict) -> dict:
        video_metadata = VideoMetadata(**{k: v for k, v in meta.items() if k != "do_sample_frames"})
        return model.processor(text=[request["prompt"]], videos=[frames], video_metadata=[video_metadata],
                               do_sample_frames=False, return_tensors="pt", **request["mm_processor_kwargs"])

    ours = processed(metadata)
    grid = {"qwen3-vl": [[3, 26, 34]], "qwen3.5": [[3, 14, 20]]}[name]  # 16-px patches of 416 x 544 / 224 x 320
    assert ours["video_grid_thw"].tolist() == reference["video_grid_thw"].tolist() == grid
    assert torch.equal(ours["pixel_values_videos"], reference["pixel_values_videos"])
    assert torch.equal(ours["input_ids"], reference["input_ids"])
    assumed = processed({**metadata, "fps": 24.0})
    assert not torch.equal(assumed["input_ids"], reference["input_ids"])  # other "<x.x seconds>" tokens
    assert family.frames(SimpleNamespace(vision_config=SimpleNamespace(temporal_patch_size=2)), family.visuals(
        [str(clip)])) == 3


def test_qwen3_5_thinking_answer_and_bad_settings(tmp_path: Path) -> None:
    """Qwen3.5's answer is what follows ``</think>`` (as ``qwen3_5_holitom``'s); its own settings are one-line errors
    of ``--model vllm_holitom`` before any engine."""
    from lmms_eval.models import get_model

    checkpoint = str(ensure_tiny_vllm(QWEN3["qwen3.5"]))
    assert _family(checkpoint).answer("<think>\nhm\n</think>\n\n B ") == "B"
    assert _family(checkpoint, enable_thinking="false").answer(" B ") == "B"
    assert _family(checkpoint, total_pixels="").video_item() == {"min_pixels": 65536, "max_pixels": 131072,
                                                                 "nframes": 768}
    for args, message in (("enable_thinking=maybe", "enable_thinking must be true or false, got 'maybe'"),
                          ("total_pixels=0", "total_pixels"), ("fps=-1", "fps must be a number > 0"),
                          ("max_frames_num=4", "unknown model_args max_frames_num")):
        with pytest.raises(ValueError) as info:
            get_model("vllm_holitom").create_from_arg_string(f"pretrained={checkpoint},{args}")
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
