"""Sweeps over the paper's grid through lmms-eval, resumably, and reports in the paper's layout.

Modules (each small, import-light; none imports torch or lmms-eval at import time):

* `config`  — the study YAML: schema, validation (all problems in one `ConfigError`), grid expansion
* `backend` — ``backend: vllm``: the ``engine`` section and the vLLM python (one process per run)
* `tasks`   — lmms-eval task names: existence check and group -> subtask expansion (`TaskManager`)
* `command` — the lmms-eval invocation of one run (python or accelerate launcher), shell rendering
* `results` — where lmms-eval writes, and whether a run's results are complete ("done"); the one
  validation, shared by the sweep and the report
* `scoring` — remote-scored tasks (``egoschema``): their saved answers, "pending-scoring"
* `manifest`— manifest reading, versions, git state (writes: `lmms_holitom.io`)
* `lock`    — per-run lock files, so that two sweeps never run the same run
* `process` — one lmms-eval process: logged, watched, stopped
* `runner`  — the sweep loop: skip finished runs, move unfinished attempts aside, ETA
* `slurm`   — a Slurm array script, one element per run
* `report`  — the paper's table (Markdown/CSV) from a sweep directory; `plots` its figures
* `paper`   — the published numbers, as data
* `data`    — offline benchmark data check (`holitom check-data`)
"""

from lmms_holitom.sweep.config import ConfigError, RunSpec, SweepConfig, load_config

__all__ = ["ConfigError", "RunSpec", "SweepConfig", "load_config"]
