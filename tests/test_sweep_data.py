"""``holitom check-data`` on a fake $HF_HOME, and its table of paths against the installed lmms-eval tasks."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from plugin_fixtures import write_clip
from sweep_helpers import REPO

from lmms_holitom.sweep.data import BENCHMARKS, MVBENCH_FOLDERS, check_data, snake_case

TASKS_DIR = Path(__import__("lmms_eval").__file__).parent / "tasks"


def cache_dataset(datasets_cache: Path, dataset: str, config: str, split: str, columns: dict[str, list]) -> Path:
    """A processed `datasets` cache entry, as `load_dataset` leaves it (and reads it back offline)."""
    ns, name = dataset.split("/")
    folder = datasets_cache / f"{ns}___{snake_case(name)}" / config / "0.0.0" / "0123abcd"
    folder.mkdir(parents=True)
    table = pa.table(columns)
    with pa.OSFile(str(folder / f"{snake_case(name)}-{split}.arrow"), "wb") as f:
        writer = pa.ipc.new_stream(f, table.schema)
        writer.write_table(table)
        writer.close()
    info = {"config_name": config, "dataset_name": snake_case(name),
            "splits": {split: {"name": split, "num_bytes": 0, "num_examples": table.num_rows,
                               "dataset_name": snake_case(name)}},
            "features": {c: {"dtype": "string", "_type": "Value"} for c in columns}}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder


def by_item(rows, task):
    return {r.item: r for r in rows if r.task == task}


def test_egoschema_partial_then_complete(tmp_path: Path):
    home = tmp_path / "hf"
    cache_dataset(home / "datasets", "lmms-eval/egoschema", "Subset", "test",
                  {"video_idx": ["v1", "v2", "v3"], "question": ["q"] * 3})
    videos = home / "egoschema" / "videos"
    videos.mkdir(parents=True)
    write_clip(videos / "v1.mp4", frames=2)
    write_clip(videos / "v2.MP4", frames=2)  # lmms-eval also accepts .MP4
    rows = by_item(check_data(["egoschema_subset"], hf_home=home), "egoschema_subset")
    assert rows["annotation"].status == "ok"
    assert rows["video root"].status == "ok"
    assert rows["videos"].status == "PARTIAL" and rows["videos"].missing == ["videos/v3.mp4"]
    assert "2/3 videos present, 1 missing, 0 corrupt; missing e.g. videos/v3.mp4" in rows["videos"].detail
    assert rows["videos"].path == f"{home}/egoschema/"
    (videos / "v3.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    rows = by_item(check_data(["egoschema_subset"], hf_home=home), "egoschema_subset")
    assert rows["videos"].status == "CORRUPT" and rows["videos"].missing == ["videos/v3.mp4"]
    assert "3/3 videos present, 0 missing, 1 corrupt" in rows["videos"].detail
    assert by_item(check_data(["egoschema_subset"], hf_home=home, probe=False), "egoschema_subset")[
        "videos"].status == "ok"
    write_clip(videos / "v3.mp4", frames=2)
    rows = check_data(["egoschema_subset"], hf_home=home)
    assert not any(r.failed for r in rows)


def test_missing_annotation_and_video_root(tmp_path: Path):
    home = tmp_path / "hf"
    home.mkdir()
    rows = by_item(check_data(["videomme"], hf_home=home), "videomme")
    assert rows["annotation"].status == "MISSING"
    assert rows["annotation"].path == f"{home}/datasets/lmms-eval___video-mme/<config>/<version>/<hash>/"
    assert rows["video root"].status == "MISSING" and rows["video root"].path == f"{home}/videomme"
    assert "videos" not in rows


def test_mvbench_needs_every_subtask_and_a_real_video_folder(tmp_path: Path):
    home = tmp_path / "hf"
    for config in ("action_sequence", "moving_count"):
        cache_dataset(home / "datasets", "OpenGVLab/MVBench", config, "train", {"video": [f"{config}.mp4"]})
    target = tmp_path / "snapshot"
    target.mkdir()
    (home / "mvbench_video").symlink_to(target)
    rows = by_item(check_data(["mvbench"], hf_home=home), "mvbench")
    assert rows["annotation"].status == "MISSING" and rows["annotation"].detail.startswith("2/20 config(s) cached")
    # lmms-eval would call snapshot_download(revision="video"): the network
    assert rows["video root"].status == "NETWORK" and "make it a real folder" in rows["video root"].detail
    assert rows["video root"].failed
    assert rows["videos"].status == "info"

    for config in MVBENCH_FOLDERS:
        if config not in ("action_sequence", "moving_count"):
            cache_dataset(home / "datasets", "OpenGVLab/MVBench", config, "train", {"video": [f"{config}.mp4"]})
    (home / "mvbench_video").unlink()
    for config, folder in MVBENCH_FOLDERS.items():
        (home / "mvbench_video" / folder).mkdir(parents=True, exist_ok=True)
        write_clip(home / "mvbench_video" / folder / f"{config}.mp4", frames=2)
    rows = by_item(check_data(["mvbench"], hf_home=home), "mvbench")
    assert [r.status for r in rows.values() if r.item != "hub snapshot"] == ["ok", "ok", "ok"]
    assert rows["videos"].detail == "20/20 videos present, 0 missing, 0 corrupt"


def test_environment_overrides_the_datasets_cache(tmp_path: Path):
    home, elsewhere = tmp_path / "hf", tmp_path / "elsewhere"
    cache_dataset(elsewhere, "longvideobench/LongVideoBench", "default", "validation", {"video_path": ["a.mp4"]})
    (home / "datasets" / "longvideobench" / "videos").mkdir(parents=True)
    write_clip(home / "datasets" / "longvideobench" / "videos" / "a.mp4", frames=2)
    env = {"HF_HOME": str(home), "HF_DATASETS_CACHE": str(elsewhere)}
    rows = check_data(["longvideobench_val_v"], environ=env)
    assert not any(r.failed for r in rows)
    annotation = by_item(rows, "longvideobench_val_v")["annotation"]
    assert annotation.path == str(elsewhere / "longvideobench___long_video_bench")


def test_cli_exit_codes(tmp_path: Path):
    home = tmp_path / "hf"
    cache_dataset(home / "datasets", "lmms-eval/egoschema", "Subset", "test", {"video_idx": ["v1"]})
    (home / "egoschema" / "videos").mkdir(parents=True)
    cmd = [sys.executable, "-m", "lmms_holitom.cli", "check-data", "--tasks", "egoschema_subset",
           "--hf-home", str(home)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 1 and "PARTIAL" not in res.stdout and "MISSING" in res.stdout
    assert f"-> {home}/egoschema/" in res.stdout
    write_clip(home / "egoschema" / "videos" / "v1.mp4", frames=2)
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout
    res = subprocess.run([*cmd[:5], "nope"], capture_output=True, text=True, cwd=REPO)  # --tasks nope
    assert res.returncode == 2 and "unknown task(s) nope" in res.stderr


def test_full_egoschema_needs_the_scoring_server(tmp_path: Path):
    home = tmp_path / "hf"
    cache_dataset(home / "datasets", "lmms-eval/egoschema", "GENERATION", "test", {"video_idx": ["v1"]})
    write_clip(home / "egoschema" / "videos" / "v1.mp4", frames=2)
    rows = by_item(check_data(["egoschema"], hf_home=home), "egoschema")
    assert rows["scoring"].status == "NETWORK" and rows["scoring"].failed
    assert "use egoschema_subset" in rows["scoring"].detail
    assert rows["videos"].status == "ok"


def test_task_modules_are_checked(tmp_path: Path):
    import importlib.util

    rows = by_item(check_data(["longvideobench_val_v"], hf_home=tmp_path), "longvideobench_val_v")
    have = importlib.util.find_spec("decord") is not None
    assert rows["module"].status == ("ok" if have else "MISSING")
    assert BENCHMARKS["longvideobench_val_v"].modules == ("decord",)
    source = (TASKS_DIR / "longvideobench" / "utils.py").read_text()
    assert "from decord import" in source  # why: lmms-eval's task module imports it at load time


def test_fake_cache_is_what_datasets_loads_offline(tmp_path: Path):
    """The heuristic is the real library's behaviour: offline, load_dataset reads exactly this cache entry."""
    cache_dataset(tmp_path / "hf" / "datasets", "lmms-eval/egoschema", "Subset", "test", {"video_idx": ["v1", "v2"]})
    code = ("import datasets; d = datasets.load_dataset('lmms-eval/egoschema', 'Subset', token=True); "
            "print(list(d['test']['video_idx']))")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("HF_DATASETS_CACHE", None)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "['v1', 'v2']"


# ---------------------------------------------------------------------------------------------- vs lmms-eval
def _task_yaml(path: Path) -> dict:
    lines = [line for line in path.read_text().splitlines() if "!function" not in line]
    data = yaml.safe_load("\n".join(lines)) or {}
    include = data.pop("include", None)
    if include:
        return {**_task_yaml(path.parent / include), **data}
    return data


@pytest.mark.parametrize(("task", "yaml_file"), [
    ("egoschema_subset", "egoschema/egoschema_subset.yaml"),
    ("egoschema", "egoschema/egoschema.yaml"),
    ("videomme", "videomme/videomme.yaml"),
    ("longvideobench_val_v", "longvideobench/longvideobench_val_v.yaml"),
])
def test_table_matches_lmms_eval_task_yaml(task: str, yaml_file: str):
    cfg, bench = _task_yaml(TASKS_DIR / yaml_file), BENCHMARKS[task]
    assert cfg["dataset_path"] == bench.dataset
    assert cfg.get("dataset_name", "default") == bench.configs[0]
    assert cfg["test_split"] == bench.split
    assert cfg["dataset_kwargs"]["cache_dir"] == bench.video_root


def test_mvbench_table_matches_lmms_eval():
    bench = BENCHMARKS["mvbench"]
    source = (TASKS_DIR / "mvbench" / "utils.py").read_text()
    with warnings.catch_warnings():  # lmms-eval's file has regexes with invalid escapes
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(source)
    data_list = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                     if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DATA_LIST")
    assert data_list == MVBENCH_FOLDERS
    configs = set()
    for path in (TASKS_DIR / "mvbench").glob("mvbench_*.yaml"):
        cfg = _task_yaml(path)
        configs.add(cfg["dataset_name"])
        assert cfg["test_split"] == bench.split and cfg["dataset_path"] == bench.dataset
        assert cfg["dataset_kwargs"]["cache_dir"] == bench.video_root
    assert configs == set(bench.configs)


def test_snake_case_is_datasets_naming():
    from datasets.naming import camelcase_to_snakecase

    for name in ("MVBench", "egoschema", "Video-MME", "LongVideoBench", "ABCDef", "a1B"):
        assert snake_case(name) == camelcase_to_snakecase(name)
