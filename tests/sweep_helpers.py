"""Shared helpers of the sweep tests: study files that drive the fake lmms-eval (tests/fake_lmms_eval.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def fake_study(tmp_path: Path, runs: list[dict[str, Any]] | None = None, **top: Any) -> Path:
    """A study using ``launcher.module: fake_lmms_eval``; returns the YAML path."""
    data: dict[str, Any] = {
        "name": "fake",
        "model": {"pretrained": "org/fake-model", "max_frames_num": 8},
        "tasks": ["fakegroup", "faketask"],
        "launcher": {"type": "python", "module": "fake_lmms_eval", "python": sys.executable,
                     "env": {"PYTHONPATH": str(TESTS)}},
        "runs": runs if runs is not None else [
            {"name": "dense", "method": "dense"},
            {"grid": {"method": "holitom", "retain_ratio": [0.1, 0.2], "tau": 0.8}},
        ],
    }
    data.update(top)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def calls(path: Path) -> list[str]:
    """Run names the fake was invoked for, in order."""
    if not path.exists():
        return []
    return [json.loads(line)["run"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_module(folder: Path, name: str, body: str) -> Path:
    """A small stand-in launcher module ``folder/name.py`` (point ``launcher.module`` at it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(body, encoding="utf-8")
    return path


#: Behaves as lmms-eval 0.7.3's ``egoschema`` offline: the answers are saved under
#: ``<output_path>/submissions/``, the remote scoring fails, no results file is written, exit 0.
EGOSCHEMA_OFFLINE = '''
import json, sys
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--output_path") + 1])
(out / "submissions").mkdir(parents=True, exist_ok=True)
(out / "submissions" / "inference_results_egoschema_MC_2026-01-01-00-00-00.json").write_text(json.dumps({"v1": 2}))
print("RuntimeError: EgoSchema validation-server scoring failed after 8 attempts")
'''

#: Prints about 1 MB (to fill a log file), writes no results.
CHATTY = '''
for i in range(20000):
    print("x" * 50)
'''
