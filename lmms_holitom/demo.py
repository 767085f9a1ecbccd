"""``python -m lmms_holitom.demo`` (``make demo``): the real lmms-eval CLI on the smoke task, dense vs HoliTom.

Runs ``python -m lmms_eval --model llava_onevision_holitom`` twice on ``holitom_smoke`` (six synthetic clips,
generated on first use) with the built-in tiny model — once ``method=dense``, once ``method=holitom`` — fully
offline, checks lmms-eval's results files (its CLI exits 0 even when an evaluation fails) and the HoliTom
statistics, and prints a side-by-side table. The tiny model has random weights: its accuracy means nothing;
the token counts, FLOPs and timings show what the compression does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TASK = "holitom_smoke"
N_DOCS = 6


@dataclass
class RunResult:
    name: str
    model_args: str
    wall_s: float
    results: dict[str, Any]
    summary: dict[str, Any]
    folder: Path
    stats_file: Path


def default_include_path() -> Path:
    """The repository's ``task_overrides`` folder (the demo runs from a checkout)."""
    return Path(__file__).resolve().parents[1] / "task_overrides"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    for var in ("WRAPPER", "RETAIN_RATIO", "T", "HOLITOM_k", "HOLITOM_r", "FASTV_k", "FASTV_r"):
        env.pop(var, None)  # the demo's settings come from its model_args only
    return env


def find_results(folder: Path) -> Path | None:
    files = sorted(folder.glob("*_results.json"))
    return files[-1] if files else None


def run_lmms_eval(name: str, model_args: str, output: Path, include_path: Path, log: Path) -> RunResult:
    """One real CLI run; raises RuntimeError (with the log's tail) if it did not produce complete results."""
    out = output / name
    if out.exists():
        shutil.rmtree(out)  # a stale results file must not pass for this run's
    cmd = [
        sys.executable, "-m", "lmms_eval",
        "--model", "llava_onevision_holitom",
        "--model_args", model_args,
        "--tasks", TASK,
        "--include_path", str(include_path),
        "--output_path", str(out),
        "--log_samples",
    ]
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env(), check=False)
    wall = time.perf_counter() - t0
    folder = out / "tiny"
    results_file = find_results(folder) if folder.is_dir() else None
    problems = []
    if proc.returncode != 0:
        problems.append(f"exit status {proc.returncode}")
    if results_file is None:
        problems.append(f"no results file under {folder}")
    results = json.loads(results_file.read_text()) if results_file else {}
    n = results.get("n-samples", {}).get(TASK, {}).get("effective")
    if results_file and n != N_DOCS:
        problems.append(f"n-samples {n}, expected {N_DOCS}")
    from lmms_holitom.integrations.lmms_eval.records import stats_files

    summary_file = stats_files(results_file)[1] if results_file else folder / "<no results>"
    summary = json.loads(summary_file.read_text()).get(TASK, {}) if summary_file.is_file() else {}
    if not summary:
        problems.append(f"no HoliTom summary for {TASK} in {summary_file}")
    elif summary.get("samples") != N_DOCS or summary.get("errors"):
        problems.append(f"stats summary has {summary.get('samples')} samples / {summary.get('errors')} errors")
    if problems:
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-25:])
        raise RuntimeError(f"run {name!r} failed ({'; '.join(problems)}); log {log}:\n{tail}")
    return RunResult(name, model_args, wall, results, summary, folder, stats_files(results_file)[0])


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_table(runs: list[RunResult]) -> str:
    """Side-by-side table of the runs."""
    rows: list[tuple[str, list[str]]] = []

    def add(label: str, values: list[str]) -> None:
        rows.append((label, values))

    add("method", [r.summary.get("method") or r.name for r in runs])
    add("accuracy (random weights: meaningless)",
        [_fmt(r.results["results"][TASK].get("accuracy,none"), ".3f") for r in runs])
    add("samples / video errors", [f"{r.summary['samples']} / {r.summary['errors']}" for r in runs])
    add("frames per sample", [_fmt(r.summary.get("mean_frames"), ".0f") for r in runs])
    add("visual tokens, dense", [_fmt(r.summary.get("mean_dense_tokens"), ".1f") for r in runs])
    add("visual tokens into the LLM (outer)", [_fmt(r.summary.get("mean_outer_tokens"), ".1f") for r in runs])
    add("visual tokens after layer K (inner)", [_fmt(r.summary.get("mean_inner_tokens"), ".1f") for r in runs])
    add("temporal segments", [_fmt(r.summary.get("mean_segments"), ".1f") for r in runs])
    add("LLM TFLOPs, dense (paper formula)", [_fmt(r.summary.get("mean_tflops_dense"), ".3e") for r in runs])
    add("LLM TFLOPs, this method", [_fmt(r.summary.get("mean_tflops"), ".3e") for r in runs])
    add("prefill ms / sample", [_fmt(r.summary.get("mean_prefill_ms"), ".1f") for r in runs])
    add("time to first token ms / sample", [_fmt(r.summary.get("mean_ttft_ms"), ".1f") for r in runs])
    add("wall time of the run (s)", [f"{r.wall_s:.1f}" for r in runs])
    width = max(len(label) for label, _ in rows)
    cols = [max(len(r.name), *(len(v[i]) for _, v in rows)) for i, r in enumerate(runs)]
    header = " " * width + " | " + " | ".join(r.name.rjust(c) for r, c in zip(runs, cols))
    lines = [header, "-" * len(header)]
    for label, values in rows:
        lines.append(label.ljust(width) + " | " + " | ".join(v.rjust(c) for v, c in zip(values, cols)))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lmms_holitom.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    p.add_argument("--include-path", type=Path, default=None, help="folder holding holitom_smoke/ (default: the "
                   "repository's task_overrides)")
    p.add_argument("--frames", type=int, default=16, help="max_frames_num (default 16)")
    p.add_argument("--retain-ratio", type=float, default=0.25)
    p.add_argument("--tau", type=float, default=0.8)
    p.add_argument("--merge-layer", type=int, default=2, help="K (the tiny model has 4 decoder layers)")
    p.add_argument("--merge-ratio", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    include = args.include_path or default_include_path()
    if not (include / TASK / f"{TASK}.yaml").is_file():
        print(f"cannot find {TASK}/{TASK}.yaml under {include}: run from a checkout or pass --include-path")
        return 2
    from lmms_holitom.testing import ensure_tiny_model

    print(f"tiny model: {ensure_tiny_model()}")
    args.output.mkdir(parents=True, exist_ok=True)
    common = f"pretrained=tiny,max_frames_num={args.frames},device={args.device}"
    settings = {
        "dense": f"{common},method=dense",
        "holitom": (f"{common},method=holitom,retain_ratio={args.retain_ratio},tau={args.tau},"
                    f"merge_layer={args.merge_layer},merge_ratio={args.merge_ratio}"),
    }
    runs = []
    for name, model_args in settings.items():
        log = args.output / f"{name}.log"
        print(f"running lmms-eval ({name}): --model_args {model_args}  [log: {log}]", flush=True)
        try:
            runs.append(run_lmms_eval(name, model_args, args.output, include, log))
        except RuntimeError as exc:
            print(f"FAILED: {exc}")
            return 1
    print()
    print(format_table(runs))
    print()
    print("Notes: the tiny model has random weights, so accuracy is noise. The smoke clips are mostly static\n"
          "backgrounds (a moving square, a static clip, a colour change), so temporal merging alone removes most\n"
          "tokens and the outer count can fall below retain_ratio x dense (budgets never rise above 100 %). On the\n"
          "tiny model the vision tower and the saliency probe dominate prefill time; the LLM savings show at 7B\n"
          "(holitom bench --shape 7b on a GPU). TFLOPs: the paper's formula (LLM, visual tokens only).")
    print("Per-sample statistics: " + ", ".join(str(r.stats_file) for r in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
