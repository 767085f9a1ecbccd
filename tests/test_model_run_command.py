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
