"""The requests ``vllm_holitom`` builds for Qwen2.5-VL equal what ``qwen2_5_vl_holitom`` feeds transformers (main venv,
no engine): the same frames (its qwen_vl_utils + decord reader against our PyAV one, on real mp4s), the same chat
prompt, and a video metadata with which the HF processor (the one vLLM calls) gives the same patch grid, the same
``second_per_grid_ts`` (M-RoPE time steps) and the same pixels as without it. The engine side is in
tests/vllm_backend/test_vllm_lmms_eval.py."""

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
    processor = AutoProcessor.from_pretrained(checkpoint, min_pixels=family.min_pixels, max_pixels=family.max_pixels)
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
