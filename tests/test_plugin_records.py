"""Model-arg validation and the statistics records of the lmms-eval model, in-process (real tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from plugin_fixtures import ORIGINAL_ENV, only_file, write_clip

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.integrations.lmms_eval.records import RECORD_KEYS
from lmms_holitom.integrations.lmms_eval.settings import parse_int, parse_on_video_error

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def clean_env():
    with pytest.MonkeyPatch.context() as mp:
        for var in ORIGINAL_ENV:
            mp.delenv(var, raising=False)
        yield mp


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_frames_num": "abc"}, "max_frames_num must be an integer in [1, 4096], got 'abc'"),
    ({"max_new_tokens": "abc"}, "max_new_tokens must be an integer in [1, 1000000], got 'abc'"),
    ({"max_new_tokens": "-1"}, "max_new_tokens must be an integer in [1, 1000000], got -1"),
    ({"max_frames_num": "0"}, "max_frames_num must be an integer in [1, 4096], got 0"),
    ({"max_batch_size": "x"}, "max_batch_size must be an integer >= 1, got 'x'"),
    ({"mm_spatial_pool_mode": "max"}, "mm_spatial_pool_mode must be one of"),
    ({"mm_newline_position": "row"}, "mm_newline_position must be one of"),
    ({"on_video_error": "skip"}, "on_video_error must be one of record, fail (aliases: raise)"),
    ({"truncation": "maybe"}, "truncation must be a boolean (true/false)"),
])
def test_model_args_fail_at_load_with_one_line(clean_env, kwargs, message) -> None:
    from lmms_holitom.integrations.lmms_eval.llava import LlavaOneVisionHoliTom

    with pytest.raises(ValueError) as info:
        LlavaOneVisionHoliTom(pretrained="tiny", device="cpu", **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_parsers() -> None:
    assert parse_int("n", " 7 ") == 7 and parse_int("n", 3.0) == 3
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 2.5"):
        parse_int("n", 2.5)
    assert parse_on_video_error("raise") == "fail" and parse_on_video_error("RECORD") == "record"


@pytest.fixture(scope="module")
def lm(clean_env, tmp_path_factory):
    from lmms_holitom.integrations.lmms_eval.llava import LlavaOneVisionHoliTom

    return LlavaOneVisionHoliTom(pretrained="tiny", device="cpu", max_frames_num="2", retain_ratio="0.25",
                                 merge_layer="2", stats_path=str(tmp_path_factory.mktemp("stats")),
                                 on_video_error="raise")


def _request(doc_id: int, visual, task: str = "t"):
    from lmms_eval.api.instance import Instance

    gen_kwargs = {"max_new_tokens": 2, "temperature": 0, "do_sample": False}
    return Instance(request_type="generate_until", idx=0, metadata={"task": task, "doc_id": doc_id, "repeats": 1},
                    arguments=("Q?", gen_kwargs, visual, doc_id, task, "test"))


def test_raise_is_fail(lm) -> None:
    assert lm.on_video_error == "fail"
    lm.on_video_error = "record"
    assert lm.on_video_error == "record"


def test_second_generate_until_appends_and_records_images_apart(lm, tmp_path: Path) -> None:
    from PIL import Image

    clip = write_clip(tmp_path / "clip.mp4", frames=4)
    image = Image.fromarray(np.full((32, 32, 3), 120, np.uint8))
    lm.task_dict = {"t": {"test": [{"video": str(clip)}, {"video": str(tmp_path / "gone.mp4")}, {}]}}
    lm.on_video_error = "record"
    lm.generate_until([_request(0, lambda doc: [doc["video"]])])
    lm.generate_until([_request(1, lambda doc: [doc["video"]]), _request(2, lambda doc: [image])])
    lines = [json.loads(x) for x in only_file(lm.stats_dir, "*_holitom_stats.jsonl").read_text().splitlines()]
    assert [r["doc_id"] for r in lines] == [0, 1, 2]  # the first call's line survived the second call
    assert all(list(r) == list(RECORD_KEYS) for r in lines)
    video, failed, img = lines
    assert video["modality"] == "video" and video["outer_tokens"] > 0 and video["image_tokens"] is None
    assert failed["error"].startswith("VideoDecodeError") and failed["video"] == str(tmp_path / "gone.mp4")
    assert all(failed[k] is None for k in RECORD_KEYS if k not in
               {"doc_id", "task", "split", "rank", "method", "video", "error", "settings"})
    # every record carries the full effective settings, not only the method's name
    settings = {**HoliTomConfig().to_dict(), "retain_ratio": 0.25, "merge_layer": 2}
    assert all(r["settings"] == settings for r in lines)
    assert img["modality"] == "image" and img["image_tokens"] > 0 and img["tflops"] > 0
    assert img["dense_tokens"] is None and img["outer_tokens"] is None
    summary = json.loads(only_file(lm.stats_dir, "*_holitom_summary.json").read_text())["t"]
    assert (summary["samples"], summary["errors"], summary["video_samples"], summary["image_samples"]) == (3, 1, 1, 1)
    assert summary["mean_outer_tokens"] == video["outer_tokens"]  # the image did not pull the mean to zero
    assert summary["mean_tflops"] == video["tflops"] and summary["mean_image_tokens"] == img["image_tokens"]
    assert summary["comparable"] is False


@pytest.fixture
def fresh_lm(clean_env, tmp_path):
    """A model of its own (one evaluation, its own stats folder) for the tests that break its files."""
    from lmms_holitom.integrations.lmms_eval.llava import LlavaOneVisionHoliTom

    model = LlavaOneVisionHoliTom(pretrained="tiny", device="cpu", max_frames_num="2", retain_ratio="0.25",
                                  stats_path=str(tmp_path / "stats"))
    model.task_dict = {"t": {"test": [{"video": str(write_clip(tmp_path / "clip.mp4", frames=4))}] * 3}}
    return model


@pytest.fixture
def warnings_logged():
    """The warnings loguru logs during a test (the plugin logs through loguru, as lmms-eval does)."""
    from loguru import logger

    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    yield messages
    logger.remove(handler)


def test_corrupt_rank_file_is_named_and_never_stops_the_answers(fresh_lm, warnings_logged) -> None:
    fresh_lm.generate_until([_request(0, lambda doc: [doc["video"]])])
    rank_file = only_file(fresh_lm.stats_dir, "*.rank0.jsonl")
    with rank_file.open("a") as fh:  # what two writers interleaving on one file used to leave
        fh.write('{"doc_id": 5, "task": "t", "spl\n')
    answers = fresh_lm.generate_until([_request(i, lambda doc: [doc["video"]]) for i in (1, 2)])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    lines = [json.loads(x) for x in only_file(fresh_lm.stats_dir, "*_holitom_stats.jsonl").read_text().splitlines()]
    assert [r["doc_id"] for r in lines] == [0, 1, 2]
    summary = json.loads(only_file(fresh_lm.stats_dir, "*_holitom_summary.json").read_text())
    assert summary["t"]["samples"] == 3
    assert summary["_problems"] == [f"{rank_file.name}: 1 corrupt line(s) skipped (line 2)"]
    summary_name = only_file(fresh_lm.stats_dir, "*_holitom_summary.json").name
    assert warnings_logged == [f"[holitom] statistics incomplete ({summary_name}): {rank_file.name}: 1 corrupt "
                               "line(s) skipped (line 2)"]


def test_unwritable_statistics_never_stop_the_answers(fresh_lm, warnings_logged) -> None:
    fresh_lm.generate_until([_request(0, lambda doc: [doc["video"]])])
    merged = only_file(fresh_lm.stats_dir, "*_holitom_stats.jsonl")
    merged.unlink()
    merged.mkdir()  # the merged file cannot be replaced any more
    answers = fresh_lm.generate_until([_request(1, lambda doc: [doc["video"]])])
    assert len(answers) == 1 and isinstance(answers[0], str)
    assert len(warnings_logged) == 1 and "statistics not merged: IsADirectoryError" in warnings_logged[0]
    summary = json.loads(only_file(fresh_lm.stats_dir, "*_holitom_summary.json").read_text())
    assert list(summary) == ["_problems"] and "IsADirectoryError" in summary["_problems"][0]


def test_unwritable_rank_file_is_noted_and_never_stops_the_answers(fresh_lm, warnings_logged) -> None:
    rank_file = fresh_lm.stats_dir / fresh_lm._recorder.evaluation.rank_file_name(0)
    rank_file.mkdir(parents=True)  # the rank file cannot be opened
    answers = fresh_lm.generate_until([_request(i, lambda doc: [doc["video"]]) for i in (0, 1)])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    summary = json.loads(only_file(fresh_lm.stats_dir, "*_holitom_summary.json").read_text())
    assert list(summary) == ["_problems"]  # no counts that would pass for complete ones
    written, read = summary["_problems"]
    assert written.startswith(f"rank 0 could not write {rank_file}: [Errno 21] Is a directory")
    assert read.startswith(f"{rank_file.name} is unreadable: [Errno 21] Is a directory")
    assert warnings_logged[0] == f"[holitom] statistics: {written} (later samples are not written)"
