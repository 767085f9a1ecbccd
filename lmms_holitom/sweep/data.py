"""``holitom check-data``: are the four benchmarks usable offline under ``$HF_HOME``?

What lmms-eval 0.7.3 needs, per task (read from its task YAMLs and ``utils.py``):

====================== ======================== ============ ====================================================
task                   annotation (HF dataset)  split        videos
====================== ======================== ============ ====================================================
mvbench (20 subtasks)  OpenGVLab/MVBench, 20     train        ``$HF_HOME/mvbench_video/<subtask folder>/<video>``
                       configs (one per subtask)
egoschema_subset       lmms-eval/egoschema       test         ``$HF_HOME/egoschema/videos/<video_idx>.mp4``
                       config ``Subset``
egoschema              same, config              test         same
                       ``GENERATION``
videomme               lmms-eval/Video-MME       test         ``$HF_HOME/videomme/data/<videoID>.mp4`` (.MP4/.mkv)
longvideobench_val_v   longvideobench/           validation   ``$HF_HOME/datasets/longvideobench/videos/<video_path>``
                       LongVideoBench
====================== ======================== ============ ====================================================

Heuristic for the annotations (documented in ``task_overrides/README.md``): offline (``HF_HUB_OFFLINE=1``),
``datasets.load_dataset`` cannot ask the hub and falls back to its *processed* cache,
``<datasets cache>/<namespace>___<snake_case name>/<config>/<version>/<hash>/`` holding ``dataset_info.json``
and ``<name>-<split>*.arrow``; the datasets cache is ``$LMMS_EVAL_DATASETS_CACHE``, else
``$HF_DATASETS_CACHE``, else ``$HF_HOME/datasets`` (lmms-eval's own order). A hub snapshot alone
(``$HF_HOME/hub/datasets--ns--name``) is reported but is not enough. The annotation rows give the exact
video paths, which are then counted; the video root must exist (else lmms-eval calls
``snapshot_download``, which fails offline), and for MVBench it must be a real folder, not the symlink
lmms-eval creates (a symlink makes it call ``snapshot_download(revision="video")`` again).

Over 300 lines on purpose: the offline data checks of the four benchmarks, each a few lines, in one table.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BENCHMARKS", "Benchmark", "CheckRow", "check_data", "dataset_cache_dir", "format_rows",
           "snake_case"]

#: lmms-eval 0.7.3 tasks/mvbench/utils.py DATA_LIST: subtask -> folder under $HF_HOME/mvbench_video.
MVBENCH_FOLDERS: dict[str, str] = {
    "object_interaction": "star/Charades_segment",
    "action_sequence": "star/Charades_segment",
    "action_prediction": "star/Charades_segment",
    "action_localization": "sta/sta_video_segment",
    "moving_count": "clevrer/video_validation",
    "fine_grained_pose": "nturgbd_convert",
    "character_order": "perception/videos",
    "object_shuffle": "perception/videos",
    "egocentric_navigation": "vlnqa",
    "moving_direction": "clevrer/video_validation",
    "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "fine_grained_action": "Moments_in_Time_Raw/videos",
    "scene_transition": "scene_qa/video",
    "state_change": "perception/videos",
    "moving_attribute": "clevrer/video_validation",
    "action_antonym": "ssv2_video_mp4",
    "unexpected_action": "FunQA_test/test",
    "counterfactual_inference": "clevrer/video_validation",
    "object_existence": "clevrer/video_validation",
    "action_count": "perception/videos",
}


@dataclass(frozen=True)
class Benchmark:
    task: str
    dataset: str  # hub id (lmms-eval's dataset_path)
    configs: tuple[str, ...]  # dataset configs (lmms-eval's dataset_name; "default" when none)
    split: str
    video_root: str  # lmms-eval's dataset_kwargs.cache_dir, relative to $HF_HOME
    video_of: Callable[[Mapping[str, Any], str], str]  # annotation row, config -> path under video_root
    columns: tuple[str, ...]  # annotation columns the video path needs
    alternatives: tuple[str, ...] = ()  # other extensions lmms-eval accepts for a missing .mp4
    needs_real_root: bool = False  # create_link: a symlinked root triggers snapshot_download
    modules: tuple[str, ...] = ()  # Python modules the task's utils.py imports at load time (optional ones)
    scoring_server: bool = False  # the aggregation posts the answers to a remote server


BENCHMARKS: dict[str, Benchmark] = {
    "mvbench": Benchmark(
        "mvbench", "OpenGVLab/MVBench", tuple(MVBENCH_FOLDERS), "train", "mvbench_video",
        lambda doc, config: f"{MVBENCH_FOLDERS[config]}/{doc['video']}", ("video",), needs_real_root=True,
    ),
    "egoschema_subset": Benchmark(
        "egoschema_subset", "lmms-eval/egoschema", ("Subset",), "test", "egoschema",
        lambda doc, config: f"videos/{doc['video_idx']}.mp4", ("video_idx",), (".MP4",),
    ),
    "egoschema": Benchmark(
        "egoschema", "lmms-eval/egoschema", ("GENERATION",), "test", "egoschema",
        lambda doc, config: f"videos/{doc['video_idx']}.mp4", ("video_idx",), (".MP4",), scoring_server=True,
    ),
    "videomme": Benchmark(
        "videomme", "lmms-eval/Video-MME", ("default",), "test", "videomme",
        lambda doc, config: f"data/{doc['videoID']}.mp4", ("videoID",), (".MP4", ".mkv"), modules=("cv2",),
    ),
    "longvideobench_val_v": Benchmark(
        "longvideobench_val_v", "longvideobench/LongVideoBench", ("default",), "validation",
        "datasets/longvideobench",
        lambda doc, config: f"videos/{doc['video_path']}", ("video_path",), modules=("decord",),
    ),
}
DEFAULT_TASKS = ("mvbench", "egoschema_subset", "longvideobench_val_v", "videomme")


@dataclass
class CheckRow:
    task: str
    item: str  # "annotation" | "videos" | "video root" | "hub snapshot"
    status: str  # ok | MISSING | PARTIAL | CORRUPT | NETWORK | WARN | info
    detail: str
    path: str
    missing: list[str] = field(default_factory=list)
    #: lmms-eval would reach the network for this (a download, a remote scorer): offline the run fails
    network: bool = False

    @property
    def failed(self) -> bool:
        return self.status in ("MISSING", "PARTIAL", "CORRUPT", "NETWORK")


# ---------------------------------------------------------------------------------------------- locations
_UPPER_UPPER = re.compile(r"([A-Z]+)([A-Z][a-z])")
_LOWER_UPPER = re.compile(r"([a-z\d])([A-Z])")


def snake_case(name: str) -> str:
    """`datasets.naming.camelcase_to_snakecase` (``MVBench`` -> ``mv_bench``), without importing datasets."""
    return _LOWER_UPPER.sub(r"\1_\2", _UPPER_UPPER.sub(r"\1_\2", name)).lower()


def dataset_cache_dir(hf_home: Path, explicit_hf_home: bool, environ: Mapping[str, str] | None = None) -> Path:
    """lmms-eval's datasets cache: ``$LMMS_EVAL_DATASETS_CACHE``, ``$HF_DATASETS_CACHE``, ``$HF_HOME/datasets``.

    With an explicit ``--hf-home`` the environment overrides are ignored (the tree under it is checked).
    """
    env = os.environ if environ is None else environ
    if not explicit_hf_home:
        for var in ("LMMS_EVAL_DATASETS_CACHE", "HF_DATASETS_CACHE"):
            if env.get(var, "").strip():
                return Path(env[var]).expanduser()
    return hf_home / "datasets"


def hub_cache_dir(hf_home: Path, explicit_hf_home: bool, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if not explicit_hf_home and env.get("HF_HUB_CACHE", "").strip():
        return Path(env["HF_HUB_CACHE"]).expanduser()
    return hf_home / "hub"


def _cached_config_dir(datasets_cache: Path, dataset: str, config: str) -> Path | None:
    """The newest processed cache folder of ``dataset``/``config`` (as `datasets` picks it offline)."""
    ns, _, name = dataset.rpartition("/")
    root = datasets_cache / (f"{ns}___{snake_case(name)}" if ns else snake_case(name)) / config
    candidates = []
    for info in root.glob("*/*/dataset_info.json"):
        try:
            if json.loads(info.read_text(encoding="utf-8")).get("config_name", config) == config:
                candidates.append(info.parent)
        except (OSError, ValueError):
            continue
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def _arrow_files(folder: Path, dataset: str, split: str) -> list[Path]:
    prefix = f"{snake_case(dataset.rpartition('/')[2])}-{split}"
    files = sorted(folder.glob(f"{prefix}.arrow")) + sorted(folder.glob(f"{prefix}-*-of-*.arrow"))
    if not files:  # tolerate another dataset-name prefix
        files = sorted(p for p in folder.glob(f"*-{split}*.arrow"))
    return files


def _read_columns(files: Iterable[Path], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for path in files:
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_stream(source).read_all()
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise KeyError(f"{path.name} has no column(s) {', '.join(missing)}")
        data = table.select(list(columns)).to_pydict()
        rows.extend(dict(zip(columns, values)) for values in zip(*data.values()))
    return rows


def _video_file(root: Path, rel: str, alternatives: tuple[str, ...]) -> Path | None:
    """The file lmms-eval would open for ``rel`` (or one of its accepted extensions), None if absent."""
    path = root / rel
    if path.exists():
        return path
    if path.suffix == ".mp4":
        return next((p for p in (path.with_suffix(ext) for ext in alternatives) if p.exists()), None)
    return None


_PIP_NAMES = {"decord": "decord==0.6.0", "cv2": "opencv-python-headless"}


def _module_rows(bench: Benchmark) -> list[CheckRow]:
    import importlib.util

    rows = []
    for name in bench.modules:
        if importlib.util.find_spec(name) is None:
            rows.append(CheckRow(bench.task, "module", "MISSING",
                                 f"lmms-eval's {bench.task} task imports {name} at load time and fails without it: "
                                 f"pip install {_PIP_NAMES.get(name, name)}", name))
        else:
            rows.append(CheckRow(bench.task, "module", "ok", f"{name} importable", name))
    return rows


# ---------------------------------------------------------------------------------------------- the check
def check_benchmark(bench: Benchmark, hf_home: Path, datasets_cache: Path, hub_cache: Path,
                    show_missing: int = 5, probe: bool = True) -> list[CheckRow]:
    rows: list[CheckRow] = _module_rows(bench)
    if bench.scoring_server:
        rows.append(CheckRow(bench.task, "scoring", "NETWORK",
                             "scored only by posting the answers to EgoSchema's remote server (lmms-eval's "
                             "aggregation); offline the answers file is written but no score: use egoschema_subset "
                             "(500 questions, scored locally)", "https://validation-server.onrender.com/api/upload/",
                             network=True))
    # annotation
    folders: dict[str, Path] = {}
    absent = []
    for config in bench.configs:
        folder = _cached_config_dir(datasets_cache, bench.dataset, config)
        if folder is None or not _arrow_files(folder, bench.dataset, bench.split):
            absent.append(config)
        else:
            folders[config] = folder
    ns, _, name = bench.dataset.rpartition("/")
    ann_root = datasets_cache / f"{ns}___{snake_case(name)}"
    what = f"{bench.dataset}" + (f" [{', '.join(bench.configs)}]" if bench.configs != ("default",) else "")
    if absent:
        configs = ", ".join(absent[:6]) + (" ..." if len(absent) > 6 else "")
        how = (f"load_dataset({bench.dataset!r})" if bench.configs == ("default",)
               else f"load_dataset({bench.dataset!r}, {absent[0]!r})")
        each = " for each missing config" if len(absent) > 1 else ""
        rows.append(CheckRow(bench.task, "annotation", "MISSING",
                             f"{len(bench.configs) - len(absent)}/{len(bench.configs)} config(s) cached; "
                             f"missing: {configs}; cache it once online: python -c \"import datasets; "
                             f"datasets.{how}\"{each} with this HF_HOME (or copy that folder from a machine "
                             "that has it); lmms-eval would download it",
                             f"{ann_root}/<config>/<version>/<hash>/", network=True))
    else:
        rows.append(CheckRow(bench.task, "annotation", "ok", what, str(ann_root)))
    hub = hub_cache / f"datasets--{bench.dataset.replace('/', '--')}"
    rows.append(CheckRow(bench.task, "hub snapshot", "info",
                         "present (not needed offline)" if hub.is_dir() else "absent (not needed offline)", str(hub)))
    # video root
    root = hf_home / bench.video_root
    if not root.exists():
        rows.append(CheckRow(bench.task, "video root", "MISSING",
                             "missing: lmms-eval would call snapshot_download (fails offline)", str(root),
                             network=True))
        return rows
    if bench.needs_real_root and root.is_symlink():
        ref = hub / "refs" / "video"
        status = "WARN" if ref.exists() else "NETWORK"
        rows.append(CheckRow(bench.task, "video root", status,
                             "a symlink: lmms-eval re-runs snapshot_download(revision='video'); offline this "
                             "needs the hub snapshot" + (" (present)" if ref.exists() else
                                                         " (absent: it would try the network) — make it a real "
                                                         f"folder: cp -rL {root} {root}.real && rm {root} && "
                                                         f"mv {root}.real {root}"),
                             str(root), network=status == "NETWORK"))
    else:
        rows.append(CheckRow(bench.task, "video root", "ok", "present", str(root)))
    # videos
    if absent:
        count = sum(1 for p in root.rglob("*") if p.is_file())
        rows.append(CheckRow(bench.task, "videos", "info",
                             f"{count} file(s) under the root; expected count unknown without the annotation",
                             str(root)))
        return rows
    expected: dict[str, None] = {}
    try:
        for config, folder in folders.items():
            for doc in _read_columns(_arrow_files(folder, bench.dataset, bench.split), bench.columns):
                expected[bench.video_of(doc, config)] = None
    except (OSError, KeyError, ValueError) as e:
        rows.append(CheckRow(bench.task, "videos", "MISSING", f"cannot read the annotation: {e}", str(root)))
        return rows
    files = {rel: _video_file(root, rel, bench.alternatives) for rel in expected}
    missing = [rel for rel, path in files.items() if path is None]
    corrupt = []
    if probe:
        from lmms_holitom.video import probe_video

        corrupt = [rel for rel, path in files.items() if path is not None and probe_video(path) is not None]
    present = len(expected) - len(missing)
    status = "ok" if not missing else ("MISSING" if present == 0 else "PARTIAL")
    if corrupt and status == "ok":
        status = "CORRUPT"
    detail = (f"{present}/{len(expected)} videos present, {len(missing)} missing, "
              + (f"{len(corrupt)} corrupt" if probe else "not probed"))
    if missing:
        shown = ", ".join(missing[:show_missing]) + (" ..." if len(missing) > show_missing else "")
        detail += f"; missing e.g. {shown}"
    if corrupt:
        shown = ", ".join(corrupt[:show_missing]) + (" ..." if len(corrupt) > show_missing else "")
        detail += f"; corrupt (PyAV cannot open them; re-download) e.g. {shown}"
    rows.append(CheckRow(bench.task, "videos", status, detail, f"{root}/", missing + corrupt))
    return rows


def check_data(tasks: Iterable[str] = DEFAULT_TASKS, *, hf_home: Path | None = None,
               datasets_cache: Path | None = None, show_missing: int = 5,
               environ: Mapping[str, str] | None = None, probe: bool = True) -> list[CheckRow]:
    env = os.environ if environ is None else environ
    explicit = hf_home is not None
    home = Path(hf_home if hf_home is not None else env.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    ds_cache = datasets_cache or dataset_cache_dir(home, explicit, env)
    hub = hub_cache_dir(home, explicit, env)
    rows: list[CheckRow] = []
    for task in tasks:
        if task not in BENCHMARKS:
            raise KeyError(f"check-data knows {', '.join(BENCHMARKS)}; got {task!r}")
        rows += check_benchmark(BENCHMARKS[task], home, ds_cache, hub, show_missing, probe)
    return rows


def format_rows(rows: list[CheckRow]) -> str:
    """One line per check (status, task, item, detail), the path to look at / put files on the next."""
    width = max((len(r.task) for r in rows), default=4)
    lines = []
    for r in rows:
        lines.append(f"{r.status:<8} {r.task:<{width}}  {r.item:<12}  {r.detail}")
        lines.append(f"{'':<8} {'':<{width}}  {'':<12}  -> {r.path}")
    return "\n".join(lines)
