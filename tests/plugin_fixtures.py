"""Helpers of the lmms-eval plugin tests: run the real lmms-eval CLI and read what it wrote."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmms_holitom.integrations.lmms_eval.records import stats_files

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "task_overrides"
VENV_BIN = Path(sys.executable).parent
ORIGINAL_ENV = ("WRAPPER", "RETAIN_RATIO", "T", "HOLITOM_k", "HOLITOM_r", "BETA", "D", "K", "MAX_WINDOW_SIZE",
                "NO_BETA", "SPATIAL_TOKENS", "DOMINANT_RATIO", "FASTV_k", "FASTV_r")
#: the compressed setting the CLI tests use (the tiny model has 4 decoder layers)
HOLITOM_ARGS = "method=holitom,retain_ratio=0.25,tau=0.8,merge_layer=2,merge_ratio=0.5"
FRAMES = 8


@dataclass
class CliRun:
    """One finished lmms-eval CLI run."""

    returncode: int
    output: str
    out_dir: Path
    seconds: float

    @property
    def model_dir(self) -> Path:
        return self.out_dir / "tiny"

    def results_file(self) -> Path | None:
        files = sorted(self.model_dir.glob("*_results.json")) if self.model_dir.is_dir() else []
        return files[-1] if files else None

    def results(self) -> dict[str, Any] | None:
        path = self.results_file()
        return json.loads(path.read_text()) if path else None

    def samples(self, task: str) -> list[dict[str, Any]]:
        files = sorted(self.model_dir.glob(f"*_samples_{task}.jsonl"))
        assert files, f"no samples file for {task} in {self.model_dir}:\n{self.output[-3000:]}"
        return read_jsonl(files[-1])

    def stats(self) -> list[dict[str, Any]]:
        """The sample lines paired with this run's results file (`records.stats_files`)."""
        return read_jsonl(stats_files(self._results_file())[0])

    def summary(self) -> dict[str, Any]:
        return json.loads(stats_files(self._results_file())[1].read_text())

    def _results_file(self) -> Path:
        path = self.results_file()
        assert path is not None, f"no results file under {self.model_dir}:\n{self.output[-3000:]}"
        return path


def only_file(folder: Path, pattern: str) -> Path:
    """The one file of ``folder`` matching ``pattern`` (one evaluation wrote there)."""
    files = sorted(folder.glob(pattern))
    assert len(files) == 1, f"{pattern} in {folder}: {[f.name for f in files]}"
    return files[0]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(clips_dir: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ORIGINAL_ENV}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if clips_dir is not None:
        env["HOLITOM_SMOKE_CLIPS"] = str(clips_dir)
    env.update(extra)
    return env


def run_lmms_eval(
    out_dir: Path,
    model_args: str,
    tasks: str = "holitom_smoke",
    *,
    env: dict[str, str],
    processes: int = 1,
    extra: tuple[str, ...] = (),
    timeout: float = 300,
    model: str = "llava_onevision_holitom",
) -> CliRun:
    """``python -m lmms_eval ...`` (or ``torchrun --nproc_per_node N -m lmms_eval ...`` on CPUs)."""
    args = ["--model", model, "--model_args", model_args, "--tasks", tasks,
            "--include_path", str(TASKS), "--output_path", str(out_dir), "--log_samples", *extra]
    if processes == 1:
        cmd = [sys.executable, "-m", "lmms_eval", *args]
    else:
        cmd = [str(VENV_BIN / "torchrun"), "--nproc_per_node", str(processes), "--master_port",
               str(free_port()), "-m", "lmms_eval", *args]
        env = {**env, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return CliRun(proc.returncode, proc.stdout + proc.stderr, out_dir, time.perf_counter() - t0)


# ------------------------------------------------------------------------ miniature $HF_HOME of the benchmarks
def cache_dataset(datasets_cache: Path, dataset: str, config: str, split: str, columns: dict[str, list]) -> Path:
    """A processed `datasets` cache entry (``<ns>___<snake name>/<config>/0.0.0/<hash>/``), which
    ``datasets.load_dataset`` reads offline; features are inferred by `datasets` itself."""
    import datasets
    import pyarrow as pa
    from datasets.naming import camelcase_to_snakecase

    ns, name = dataset.split("/")
    snake = camelcase_to_snakecase(name)
    folder = datasets_cache / f"{ns}___{snake}" / config / "0.0.0" / "0123abcd"
    folder.mkdir(parents=True)
    table = datasets.Dataset.from_dict(columns)
    with pa.OSFile(str(folder / f"{snake}-{split}.arrow"), "wb") as f:
        writer = pa.ipc.new_stream(f, table.data.table.schema)
        writer.write_table(table.data.table)
        writer.close()
    info = {"config_name": config, "dataset_name": snake, "version": {"version_str": "0.0.0"},
            "splits": {split: {"name": split, "num_bytes": 0, "num_examples": len(table), "dataset_name": snake}},
            "features": table.features.to_dict()}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder


def write_clip(path: Path, frames: int = 6, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """A small real mp4 (mpeg4) written with PyAV: a bright square moving over a random background."""
    import av
    import numpy as np

    width, height = size
    rng = np.random.RandomState(seed)
    background = rng.randint(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = background.copy()
            x = (i * 8) % (width - 16)
            image[8:24, x:x + 16] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


#: lmms-eval 0.7.3 tasks/mvbench/utils.py DATA_LIST (checked against the installed file in test_sweep_data.py)
def _mvbench_folders() -> dict[str, str]:
    from lmms_holitom.sweep.data import MVBENCH_FOLDERS

    return MVBENCH_FOLDERS


@dataclass(frozen=True)
class BenchmarkHome:
    """A miniature ``$HF_HOME`` for mvbench, egoschema_subset, videomme and longvideobench_val_v.

    ``broken`` maps a task (leaf) to ``{doc_id: "missing" | "corrupt"}``; every other document has a real clip.
    """

    root: Path
    docs: dict[str, int]
    broken: dict[str, dict[int, str]]


def _options(n: int) -> list[str]:
    return [f"option number {i}" for i in range(n)]


def build_benchmark_home(home: Path, docs: int = 3) -> BenchmarkHome:
    """Annotations as the `datasets` processed cache and videos where lmms-eval 0.7.3's task utils look.

    MVBench: one document per subtask (20 subtasks), ``mvbench_action_sequence`` doc 0 is a corrupt file.
    EgoSchema (Subset), Video-MME, LongVideoBench: ``docs`` documents each; the last Video-MME and EgoSchema
    documents name a missing video (their ``doc_to_visual`` calls ``sys.exit``), LongVideoBench doc 1 is corrupt.
    """
    cache = home / "datasets"
    corrupt = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4  # an mp4 signature, then garbage
    broken: dict[str, dict[int, str]] = {}
    counts: dict[str, int] = {}
    # MVBench: OpenGVLab/MVBench, one config per subtask, split train, videos $HF_HOME/mvbench_video/<folder>/
    for i, (subtask, folder) in enumerate(_mvbench_folders().items()):
        video = f"{subtask}_0.mp4"
        path = home / "mvbench_video" / folder / video
        if subtask == "action_sequence":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(corrupt)
            broken[f"mvbench_{subtask}"] = {0: "corrupt"}
        else:
            write_clip(path, seed=i)
        candidates = _options(4)
        cache_dataset(cache, "OpenGVLab/MVBench", subtask, "train",
                      {"video": [video], "question": ["What moves?"], "candidates": [candidates],
                       "answer": [candidates[1]]})
        counts[f"mvbench_{subtask}"] = 1
    # EgoSchema subset: lmms-eval/egoschema, config Subset, split test, videos $HF_HOME/egoschema/videos/<idx>.mp4
    idx = [f"ego{i}" for i in range(docs)]
    for i in range(docs - 1):
        write_clip(home / "egoschema" / "videos" / f"{idx[i]}.mp4", seed=100 + i)
    broken["egoschema_subset"] = {docs - 1: "missing"}
    cache_dataset(cache, "lmms-eval/egoschema", "Subset", "test",
                  {"video_idx": idx, "question_idx": [str(i) for i in range(docs)],
                   "question": ["What does the camera wearer do?"] * docs,
                   "option": [[f"{c}. {o}" for c, o in zip("ABCDE", _options(5))]] * docs,
                   "answer": [str(i % 5) for i in range(docs)]})
    counts["egoschema_subset"] = docs
    # Video-MME: lmms-eval/Video-MME, split test, videos $HF_HOME/videomme/data/<videoID>.mp4
    ids = [f"vid{i}" for i in range(docs)]
    for i in range(docs - 1):
        write_clip(home / "videomme" / "data" / f"{ids[i]}.mp4", seed=200 + i)
    broken["videomme"] = {docs - 1: "missing"}
    cache_dataset(cache, "lmms-eval/Video-MME", "default", "test",
                  {"video_id": [f"{i:03d}" for i in range(docs)], "duration": ["short"] * docs,
                   "domain": ["Knowledge"] * docs, "sub_category": ["Humanity & History"] * docs,
                   "url": [""] * docs, "videoID": ids, "question_id": [f"{i:03d}-1" for i in range(docs)],
                   "task_type": ["Temporal Perception"] * docs, "question": ["What happens?"] * docs,
                   "options": [[f"{c}. {o}" for c, o in zip("ABCD", _options(4))]] * docs,
                   "answer": ["ABCD"[i % 4] for i in range(docs)]})
    counts["videomme"] = docs
    # LongVideoBench: longvideobench/LongVideoBench, split validation, videos $HF_HOME/datasets/longvideobench/videos/
    paths = [f"lvb{i}.mp4" for i in range(docs)]
    for i in range(docs):
        path = home / "datasets" / "longvideobench" / "videos" / paths[i]
        if i == 1:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(corrupt)
        else:
            write_clip(path, seed=300 + i)
    broken["longvideobench_val_v"] = {1: "corrupt"}
    options = _options(4)
    cache_dataset(cache, "longvideobench/LongVideoBench", "default", "validation",
                  {"video_path": paths, "subtitle_path": [p.replace(".mp4", "_en.json") for p in paths],
                   "question": ["What happens?"] * docs, "id": [f"lvb-{i}" for i in range(docs)],
                   **{f"option{k}": [options[k] if k < 4 else "N/A"] * docs for k in range(5)},
                   "correct_choice": [i % 4 for i in range(docs)], "duration_group": [15] * docs,
                   "question_category": ["S2E"] * docs, "duration": [2.0] * docs,
                   "starting_timestamp_for_subtitles": [0.0] * docs, "view_count": [0] * docs,
                   "topic_category": ["x"] * docs, "level": ["L1"] * docs, "video_id": paths})
    counts["longvideobench_val_v"] = docs
    return BenchmarkHome(home, counts, broken)


def benchmark_env(home: Path, **extra: str) -> dict[str, str]:
    """`cli_env` pointed at a miniature ``$HF_HOME`` (no other cache override leaks in)."""
    env = cli_env(**extra)
    for var in ("HF_DATASETS_CACHE", "HF_HUB_CACHE", "LMMS_EVAL_DATASETS_CACHE", "HUGGINGFACE_HUB_CACHE"):
        env.pop(var, None)
    env["HF_HOME"] = str(home)
    return env
