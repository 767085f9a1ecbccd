"""A stand-in for ``python -m lmms_eval`` used by the sweep-runner tests (``launcher.module: fake_lmms_eval``).

It accepts lmms-eval's arguments and writes a results JSON in lmms-eval 0.7.3's layout
(``<output_path>/<model subdir>/<date>_results.json`` with ``results``, ``group_subtasks``, ``n-samples``,
``config.model_args``) plus a ``<stamp>_holitom_summary.json``, so the runner's mechanics (resume, validation,
failure handling) can be tested in a real subprocess without a model. Nothing of lmms-eval is imported.

Environment:

* ``FAKE_LMMS_EVAL_CALLS`` — JSONL file; one line per invocation ``{"run", "argv", "pid"}``.
* ``FAKE_LMMS_EVAL_MODE`` — ``pattern=mode[@once];...`` (glob over the run name, taken from the output path):
  ``ok``; ``noresults`` (exit 0, write nothing — lmms-eval's behaviour on most errors); ``crash`` (half a
  results file, exit 1); ``wrong_n`` (one sample short); ``errors`` (summary reports 2 model errors);
  ``kill_parent`` (half a results file, then SIGKILL the sweep process); ``sleep`` (hang for 60 s); ``linger``
  (complete results, then hang for 60 s).
  ``@once``: only on the first invocation for that run (state in ``FAKE_LMMS_EVAL_STATE``, a folder).
* ``FAKE_N_DOCS`` — documents per task (default 10).

Task ``fakegroup`` is a group of ``fakegroup_a`` and ``fakegroup_b``; any other task is a plain task.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

GROUPS = {"fakegroup": ["fakegroup_a", "fakegroup_b"]}


def _mode(run: str) -> str:
    spec = os.environ.get("FAKE_LMMS_EVAL_MODE", "")
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        pattern, _, mode = item.partition("=")
        if not fnmatch.fnmatchcase(run, pattern):
            continue
        if mode.endswith("@once"):
            mode = mode[: -len("@once")]
            state = Path(os.environ["FAKE_LMMS_EVAL_STATE"]) / f"{run}.{mode}.done"
            if state.exists():
                continue
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text("x")
        return mode
    return "ok"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    p.add_argument("--model_args", default="")
    p.add_argument("--tasks", default="")
    p.add_argument("--batch_size")
    p.add_argument("--log_samples", action="store_true")
    p.add_argument("--output_path", required=True)
    p.add_argument("--limit", type=float, default=None)
    p.add_argument("--include_path", default=None)
    args, _unknown = p.parse_known_args(argv)

    output = Path(args.output_path)
    run = output.parent.name
    calls = os.environ.get("FAKE_LMMS_EVAL_CALLS")
    if calls:
        with open(calls, "a", encoding="utf-8") as f:
            f.write(json.dumps({"run": run, "argv": argv, "pid": os.getpid()}) + "\n")
    mode = _mode(run)
    print(f"fake lmms-eval: run {run}, mode {mode}", flush=True)

    model_args = dict(part.split("=", 1) for part in args.model_args.split(",") if "=" in part)
    subdir = re.sub(r"[\"<>:/\|\\?\*\[\]]+", "__", "/".join(model_args.get("pretrained", "model").split("/")[-2:]))
    folder = output / subdir
    folder.mkdir(parents=True, exist_ok=True)
    results_file = folder / f"{time.strftime('%Y%m%d_%H%M%S')}_results.json"

    if mode == "noresults":
        print("Error during evaluation: fake failure. Please set `--verbosity=DEBUG`", flush=True)
        return 0
    if mode in ("crash", "kill_parent"):
        results_file.write_text('{"results": {"fake', encoding="utf-8")
        if mode == "kill_parent":
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)
        print("Traceback (most recent call last):\nRuntimeError: fake crash", flush=True)
        return 1
    if mode == "sleep":
        time.sleep(60)
        return 0

    n_docs = int(os.environ.get("FAKE_N_DOCS", "10"))
    results, n_samples, group_subtasks = {}, {}, {}
    for task in filter(None, args.tasks.split(",")):
        leaves = GROUPS.get(task, [task])
        group_subtasks[task] = leaves if task in GROUPS else []
        if task in GROUPS:
            results[task] = {"alias": task}
        for leaf in leaves:
            effective = min(int(args.limit), n_docs) if args.limit else n_docs
            if mode == "wrong_n":
                effective -= 1
            results[leaf] = {"alias": leaf, "accuracy,none": 0.5, "accuracy_stderr,none": 0.1,
                             "samples": effective}
            n_samples[leaf] = {"original": n_docs, "effective": effective}
    data = {
        "results": results,
        "group_subtasks": group_subtasks,
        "configs": {},
        "n-samples": n_samples,
        "config": {"model": args.model, "model_args": args.model_args, "limit": args.limit},
    }
    summary = {leaf: {"samples": n_samples[leaf]["effective"], "errors": 2 if mode == "errors" else 0,
                      "mean_outer_tokens": 100.0, "mean_inner_tokens": 50.0, "mean_tflops": 1.5,
                      "mean_ttft_ms": 10.0} for leaf in n_samples}
    summary_file = results_file.with_name(results_file.name.replace("_results.json", "_holitom_summary.json"))
    summary_file.write_text(json.dumps(summary), encoding="utf-8")  # the plugin's: same stamp
    results_file.write_text(json.dumps(data, indent=2), encoding="utf-8")
    print("fake lmms-eval: done", flush=True)
    if mode == "linger":  # complete results written, then still busy (as lmms-eval logging or saving samples)
        time.sleep(60)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
