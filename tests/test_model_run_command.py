"""``holitom run``: one video, one question, the answer and the compression stats; clear errors otherwise."""

from __future__ import annotations

import json

import pytest

from lmms_holitom.cli import main

FAST = ["--max-frames", "4", "--max-new-tokens", "3"]


def test_run_answers_and_prints_stats(mp4_clip, capsys):
    rc = main(["run", str(mp4_clip), "--question", "what happens?", "--retain-ratio", "0.3", "--merge-layer", "2",
               *FAST])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("answer: ")
    assert "method holitom | frames 4 | visual tokens 785 -> " in out
    assert "in layers >= 2" in out
    assert "timings (ms): vision" in out
    # the 16-frame clip gives 4 distinct frames: no repeat note; the tiny model's gibberish is explained
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert notes == [RANDOM_NOTE.format("tiny")]


RANDOM_NOTE = ("note: {} has random weights: its answer is meaningless tokens, often bytes that are not UTF-8 text "
               "(printed as \ufffd)")


def test_run_one_frame_video_says_frames_repeat(tmp_path, capsys):
    from plugin_fixtures import write_clip

    clip = write_clip(tmp_path / "one.mp4", frames=1)
    assert main(["run", str(clip), "-q", "what?", *FAST]) == 0
    out = capsys.readouterr().out
    assert "method holitom | frames 4 | visual tokens 785 -> " in out
    assert ("note: the video has 1 frame: --max-frames 4 samples uniformly (linspace, as lmms-eval's "
            "llava_onevision does), so frames repeat (1 distinct of 4)") in out.splitlines()


def test_run_notes_name_broken_text_of_a_real_checkpoint() -> None:
    from lmms_holitom.commands.run import run_notes

    stats = {"frames": 4}
    assert run_notes(4, 10, 1, stats, "a\ufffdb", "llava_onevision", None) == [
        "the answer contains \ufffd: the generated tokens are bytes that do not form UTF-8 text"]
    assert run_notes(4, 10, 1, stats, "fine", "llava_onevision", None) == []
    assert run_notes(8, 3, 2, stats, "fine", "qwen3_vl", None) == [
        "the video has 3 frames: --max-frames 8 samples uniformly (linspace, as lmms-eval's llava_onevision does), "
        "so frames repeat (3 distinct of 8)",
        "frames 4 counts qwen3_vl's temporal patches: it encodes every 2 consecutive sampled frames as one "
        "(8 sampled -> 4)"]


def test_run_json_stats(mp4_clip, capsys):
    rc = main(["run", str(mp4_clip), "-q", "what?", "--method", "visionzip", "--retain-ratio", "0.25", "--json",
               *FAST])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    stats = result["stats"]
    assert isinstance(result["answer"], str)
    assert stats["method"] == "visionzip" and stats["frames"] == 4
    assert stats["dense_tokens"] == 4 * 196 + 1
    assert stats["outer_tokens"] == 4 * round(0.25 * 196) + 1
    assert stats["prompt_tokens_dense"] - stats["prompt_tokens"] == stats["dense_tokens"] - stats["outer_tokens"]
    assert result["notes"] == [RANDOM_NOTE.format("tiny")[len("note: "):]]


def test_run_default_merge_layer_fits_the_model(mp4_clip, capsys):
    assert main(["run", str(mp4_clip), "-q", "what?", "--json", *FAST]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["method"] == "holitom" and stats["merge_layer"] == 3  # 18 of 28 -> 3 of 4
    assert stats["inner_tokens"] < stats["outer_tokens"]


def test_run_dense_and_no_inner_merge(mp4_clip, capsys):
    assert main(["run", str(mp4_clip), "-q", "what?", "--method", "dense", "--json", *FAST]) == 0
    dense = json.loads(capsys.readouterr().out)["stats"]
    assert dense["outer_tokens"] == dense["dense_tokens"] == 785
    assert main(["run", str(mp4_clip), "-q", "what?", "--merge-layer", "none", "--json", *FAST]) == 0
    wo_m = json.loads(capsys.readouterr().out)["stats"]
    assert wo_m["merge_layer"] is None and wo_m["inner_tokens"] == wo_m["outer_tokens"] < 785


@pytest.mark.parametrize("kind", ["corrupt", "missing", "empty"])
def test_run_bad_video(tmp_path, capsys, kind):
    path = tmp_path / "video.mp4"
    if kind == "corrupt":
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    elif kind == "empty":
        path.write_bytes(b"")
    rc = main(["run", str(path), "-q", "what?", *FAST])
    err = capsys.readouterr().err
    assert rc != 0
    assert f"cannot decode video {path}" in err
    assert {"corrupt": "cannot open", "missing": "file not found", "empty": "empty file"}[kind] in err


def test_run_bad_settings(mp4_clip, tmp_path, capsys):
    assert main(["run", str(mp4_clip), "-q", "what?", "--merge-layer", "9", *FAST]) == 2
    assert "merge_layer must be in [1, 3]" in capsys.readouterr().err
    assert main(["run", str(mp4_clip), "-q", "what?", "--retain-ratio", "1.5", *FAST]) == 2
    assert "retain_ratio" in capsys.readouterr().err
    from transformers import Qwen2Config

    Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path / "qwen")
    assert main(["run", str(mp4_clip), "-q", "what?", "--pretrained", str(tmp_path / "qwen"), *FAST]) == 2
    assert "model_type 'qwen2'" in capsys.readouterr().err
    assert main(["run", str(mp4_clip), "-q", "what?", "--max-frames", "0"]) == 2
    assert "--max-frames must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value", "high"), [("--max-frames", "99999999999999999999", 4096),
                                                     ("--max-frames", "4097", 4096),
                                                     ("--max-new-tokens", "1000001", 1_000_000),
                                                     ("--probe-chunk", "99999999999999999999", 4096)])
def test_run_size_flags_have_the_model_args_upper_bounds(mp4_clip, capsys, flag, value, high):
    """The bounds of the lmms-eval model args (max_frames_num 1-4096, max_new_tokens 1-1000000), checked before any
    decoding or loading: one line naming the flag, never numpy's 'Maximum allowed size exceeded'."""
    assert main(["run", str(mp4_clip), "-q", "what?", flag, value]) == 2
    err = capsys.readouterr().err
    assert err == f"holitom run: error: {flag} must be an integer in [1, {high}], got {value}\n"


# ---------------------------------------------------------------------------------------------- Qwen-VL
QWEN = ["tiny-qwen2.5-vl", "tiny-qwen3-vl"]
QWEN_FAST = ["--max-frames", "8", "--max-new-tokens", "3"]  # 8 frames -> 4 temporal groups of 4 tokens (64×48)


@pytest.mark.parametrize("name", QWEN)
def test_run_qwen_answers_and_prints_stats(mp4_clip, capsys, name):
    rc = main(["run", str(mp4_clip), "-q", "what happens?", "--pretrained", name, "--retain-ratio", "0.5",
               "--tau", "1.5", *QWEN_FAST])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("answer: ")
    # nothing static (tau > 1): ceil(4 · 0.5) per group; K: 18 of 28 layers -> 3 of the tiny decoder's 4, r = 0.5
    assert "method holitom | frames 4 | visual tokens 16 -> 8 (50.0%) -> 4 in layers >= 3" in out
    assert "timings (ms): vision" in out
    model_type = {"tiny-qwen2.5-vl": "qwen2_5_vl", "tiny-qwen3-vl": "qwen3_vl"}[name]
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: frames 4 counts {model_type}'s temporal patches: it encodes every 2 consecutive "
                     "sampled frames as one (8 sampled -> 4)", RANDOM_NOTE.format(name)]


@pytest.mark.parametrize("name", QWEN)
def test_run_qwen_json_wo_m_and_visionzip(mp4_clip, capsys, name):
    for method in ("holitom_wo_m", "visionzip"):  # nothing static: 1 of 4 tokens per group
        assert main(["run", str(mp4_clip), "-q", "what?", "--pretrained", name, "--method", method,
                     "--retain-ratio", "0.25", "--tau", "1.5", "--json", *QWEN_FAST]) == 0
        stats = json.loads(capsys.readouterr().out)["stats"]
        assert stats["method"] == method and stats["frames"] == 4 and stats["tokens_per_frame"] == 4
        assert stats["dense_tokens"] == 16 and stats["outer_tokens"] == stats["inner_tokens"] == 4
        assert stats["prompt_tokens_dense"] - stats["prompt_tokens"] == 12


def _stock_answer(name: str, video, question: str, max_new_tokens: int) -> tuple[str, int]:
    """The stock transformers model's greedy answer and prompt length, the prompt built here from the spec:
    the chat template, the 8 uniformly sampled frames unresampled, the clip's metadata (8 fps, 16 frames)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.video_utils import VideoMetadata

    from lmms_holitom.testing import resolve_pretrained
    from lmms_holitom.video import load_video_frames

    path = resolve_pretrained(name)
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    metadata = VideoMetadata(total_num_frames=16, fps=8.0, frames_indices=[0, 2, 4, 6, 8, 10, 12, 15])
    inputs = processor(text=prompt, videos=[load_video_frames(video, 8)], video_metadata=[metadata],
                       do_sample_frames=False, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    length = inputs["input_ids"].shape[1]
    return processor.batch_decode(output[:, length:], skip_special_tokens=True)[0], length


@pytest.mark.parametrize("name", QWEN)
def test_run_qwen_dense_is_the_stock_model_on_the_stock_prompt(mp4_clip, capsys, name):
    assert main(["run", str(mp4_clip), "-q", "what happens?", "--pretrained", name, "--method", "dense", "--json",
                 "--max-frames", "8", "--max-new-tokens", "6"]) == 0
    result = json.loads(capsys.readouterr().out)
    answer, length = _stock_answer(name, mp4_clip, "what happens?", 6)
    assert result["answer"] == answer
    assert result["stats"]["prompt_tokens_dense"] == result["stats"]["prompt_tokens"] == length


def test_run_qwen_bad_settings(mp4_clip, capsys):
    assert main(["run", str(mp4_clip), "-q", "what?", "--pretrained", "tiny-qwen3-vl", "--merge-layer", "1",
                 *QWEN_FAST]) == 2
    assert "merge_layer must be >= 2 for this Qwen3-VL model" in capsys.readouterr().err
    assert main(["run", str(mp4_clip), "-q", "what?", "--pretrained", "tiny-qwen2.5-vl", "--max-frames", "1"]) == 2
    err = capsys.readouterr().err
    assert "--max-frames must be >= 2 for qwen2_5_vl (one temporal patch group is 2 frames), got 1" in err
    assert "Traceback" not in err
