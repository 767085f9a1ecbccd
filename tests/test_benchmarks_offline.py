"""The four paper benchmarks through the real lmms-eval CLI, offline, from a miniature ``$HF_HOME``.

lmms-eval 0.7.3's own task definitions (``mvbench`` — all 20 subtasks —, ``egoschema_subset``, ``videomme``,
``longvideobench_val_v``) read annotations from the `datasets` processed cache and videos from the folders
their ``utils.py`` names (`plugin_fixtures.build_benchmark_home`). Broken videos: a corrupt MVBench clip
(the task only logs), a missing EgoSchema and Video-MME clip (their ``doc_to_visual`` calls ``sys.exit``),
a corrupt LongVideoBench clip. Each must be one failed, counted sample, never a dead run or a skipped one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_fixtures import BenchmarkHome, CliRun, benchmark_env, build_benchmark_home, run_lmms_eval

from lmms_holitom.integrations.lmms_eval.records import RECORD_KEYS
from lmms_holitom.integrations.lmms_eval.visuals import FAILED_ANSWER

pytestmark = pytest.mark.slow

TASKS = "mvbench,egoschema_subset,videomme,longvideobench_val_v"
ARGS = "pretrained=tiny,max_frames_num=2,device=cpu,method=holitom,retain_ratio=0.25,merge_layer=2,merge_ratio=0.5"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> BenchmarkHome:
    return build_benchmark_home(tmp_path_factory.mktemp("hf_home"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, home: BenchmarkHome) -> CliRun:
    return run_lmms_eval(tmp_path_factory.mktemp("bench"), ARGS, TASKS, env=benchmark_env(home.root),
                         extra=("--limit", "3"), timeout=600)


def test_every_task_runs_and_is_scored(run: CliRun, home: BenchmarkHome) -> None:
    assert run.returncode == 0, run.output[-4000:]
    results = run.results()
    assert results is not None, run.output[-4000:]
    assert set(home.docs) <= set(results["n-samples"])
    for task, docs in home.docs.items():
        assert results["n-samples"][task]["effective"] == docs, task
    assert len([t for t in home.docs if t.startswith("mvbench_")]) == 20
    assert "mvbench_accuracy,none" in results["results"]["mvbench_moving_count"]
    assert "score,none" in results["results"]["egoschema_subset"]
    assert "videomme_perception_score,none" in results["results"]["videomme"]
    assert "lvb_acc,none" in results["results"]["longvideobench_val_v"]
    print(f"benchmark CLI run: {run.seconds:.1f} s")


def test_broken_videos_are_failed_samples_beside_every_score(run: CliRun, home: BenchmarkHome) -> None:
    assert run.returncode == 0, run.output[-4000:]
    summary = run.summary()
    for task, docs in home.docs.items():
        broken = home.broken.get(task, {})
        s = summary[task]
        assert (s["samples"], s["errors"], s["error_doc_ids"]) == (docs, len(broken), sorted(broken)), task
        assert s["comparable"] is (not broken)
        answers = {x["doc_id"]: x["filtered_resps"] for x in run.samples(task)}
        for doc_id in broken:
            assert answers[doc_id] == FAILED_ANSWER, (task, doc_id)
        assert all(a != FAILED_ANSWER for d, a in answers.items() if d not in broken)
    # the failing file is named: by the decoder (corrupt) or from the task's sys.exit message (missing)
    assert summary["videomme"]["error_videos"] == [str(home.root / "videomme" / "data" / "vid2.mp4")]
    assert summary["egoschema_subset"]["error_videos"] == [str(home.root / "egoschema" / "videos" / "ego2.mp4")]
    assert summary["longvideobench_val_v"]["error_videos"][0].endswith("longvideobench/videos/lvb1.mp4")
    assert "videomme: 3 samples, 1 video errors" in run.output
    assert "mvbench_action_sequence: 1 samples, 1 video errors" in run.output


def test_failed_sample_is_scored_not_skipped(run: CliRun) -> None:
    """MVBench's aggregation skips empty answers; the failed answer is counted (as wrong) instead."""
    assert run.returncode == 0, run.output[-4000:]
    assert run.results()["results"]["mvbench_action_sequence"]["mvbench_accuracy,none"] == 0.0
    videomme = {x["doc_id"]: x for x in run.samples("videomme")}
    assert videomme[2]["videomme_perception_score"]["pred_answer"] == ""  # no letter parsed: wrong


def test_error_records_have_every_key(run: CliRun) -> None:
    assert run.returncode == 0, run.output[-4000:]
    stats = run.stats()
    assert len(stats) == 20 + 3 + 3 + 3
    for record in stats:
        assert list(record) == list(RECORD_KEYS)
    failed = [r for r in stats if r["error"]]
    assert len(failed) == 4
    for r in failed:
        assert r["outer_tokens"] is None and r["tflops"] is None and r["timings_ms"] is None
    exits = [r for r in failed if r["task"] in ("videomme", "egoschema_subset")]
    assert all(r["error"].startswith("doc_to_visual raised SystemExit") for r in exits)
    good = [r for r in stats if not r["error"]]
    assert all(r["modality"] == "video" and 0 < r["outer_tokens"] < r["dense_tokens"] for r in good)


def test_on_video_error_fail_stops_at_the_first(tmp_path: Path, home: BenchmarkHome) -> None:
    run = run_lmms_eval(tmp_path, f"{ARGS},on_video_error=fail", "videomme", env=benchmark_env(home.root),
                        extra=("--limit", "3"))
    assert run.results() is None, run.output[-3000:]
    assert "vid2.mp4 does not exist" in run.output
    assert "VisualError" in run.output


def test_check_data_reads_the_same_home(home: BenchmarkHome) -> None:
    """`holitom check-data` finds the annotations lmms-eval read, and names each broken video."""
    from lmms_holitom.sweep.data import check_data

    rows = {(r.task, r.item): r for r in check_data(["mvbench", "egoschema_subset", "videomme",
                                                      "longvideobench_val_v"], hf_home=home.root)}
    for task in ("mvbench", "egoschema_subset", "videomme", "longvideobench_val_v"):
        assert rows[(task, "annotation")].status == "ok" and rows[(task, "video root")].status == "ok"
    assert rows[("mvbench", "videos")].status == "CORRUPT"
    assert rows[("mvbench", "videos")].missing == ["star/Charades_segment/action_sequence_0.mp4"]
    assert rows[("videomme", "videos")].status == "PARTIAL"
    assert rows[("videomme", "videos")].missing == ["data/vid2.mp4"]
    assert rows[("egoschema_subset", "videos")].missing == ["videos/ego2.mp4"]
    assert rows[("longvideobench_val_v", "videos")].status == "CORRUPT"
    assert rows[("longvideobench_val_v", "videos")].missing == ["videos/lvb1.mp4"]
