"""The lmms-eval command of a run (python and accelerate launchers), dry-run output, Slurm script."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import REPO

from lmms_holitom.sweep.command import build_invocation, child_env
from lmms_holitom.sweep.config import parse_config
from lmms_holitom.sweep.runner import SweepRunner
from lmms_holitom.sweep.slurm import parse_slurm_opts, slurm_script

STUDY = {
    "name": "cmd",
    "model": {"pretrained": "llava-hf/llava-onevision-qwen2-7b-ov-hf", "max_frames_num": 32, "dtype": "bfloat16",
              "extra": {"token_strategy": "single"}},
    "tasks": ["mvbench", "videomme"],
    "runs": [{"method": "holitom", "retain_ratio": 0.15, "tau": 0.8}],
}


def test_python_launcher_argv(tmp_path: Path):
    cfg = parse_config({**STUDY, "launcher": {"type": "python", "python": "/py", "env": {"HF_HUB_OFFLINE": 1}}})
    run = cfg.run("holitom-r0.15-t0.80-k18-m0.5")
    inv = build_invocation(cfg, run, tmp_path / "r", limit=5)
    assert list(inv.argv) == [
        "/py", "-m", "lmms_eval",
        "--model", "llava_onevision_holitom",
        "--model_args", "pretrained=llava-hf/llava-onevision-qwen2-7b-ov-hf,max_frames_num=32,dtype=bfloat16,"
                        "token_strategy=single,method=holitom,retain_ratio=0.15,tau=0.8,merge_layer=18,"
                        "merge_ratio=0.5",
        "--tasks", "mvbench,videomme",
        "--batch_size", "1",
        "--log_samples",
        "--output_path", str(tmp_path / "r" / "lmms_eval"),
        "--limit", "5",
    ]
    assert inv.env == {"HF_HUB_OFFLINE": "1"}


def test_accelerate_launcher_argv(tmp_path: Path):
    cfg = parse_config({
        **STUDY,
        "launcher": {"type": "accelerate", "accelerate": "accelerate", "num_processes": 8, "num_machines": 2,
                     "main_process_port": 25000, "extra_args": ["--mixed_precision", "no"]},
        "include_path": str(tmp_path),
        "lmms_eval_args": ["--verbosity", "DEBUG"],
    })
    run = cfg.runs[0]  # dense, added automatically
    assert run.name == "dense"
    inv = build_invocation(cfg, run, tmp_path / "dense")
    assert list(inv.argv) == [
        "accelerate", "launch", "--num_processes", "8", "--num_machines", "2", "--main_process_port", "25000",
        "--mixed_precision", "no", "-m", "lmms_eval",
        "--model", "llava_onevision_holitom",
        "--model_args", "pretrained=llava-hf/llava-onevision-qwen2-7b-ov-hf,max_frames_num=32,dtype=bfloat16,"
                        "token_strategy=single,method=dense",
        "--tasks", "mvbench,videomme", "--batch_size", "1", "--log_samples",
        "--output_path", str(tmp_path / "dense" / "lmms_eval"),
        "--include_path", str(tmp_path),
        "--verbosity", "DEBUG",
    ]


def test_lmms_eval_args_may_not_override_managed_ones():
    from lmms_holitom.sweep.config import ConfigError

    with pytest.raises(ConfigError, match="'--limit' is set by the sweep itself"):
        parse_config({**STUDY, "lmms_eval_args": ["--limit", "3"]})


def test_original_env_vars_are_scrubbed():
    cfg = parse_config({**STUDY, "launcher": {"env": {"BETA": "0.7"}}})
    inv = build_invocation(cfg, cfg.runs[1], Path("r"))
    env, removed = child_env(inv, {"PATH": "/bin", "T": "0.5", "K": "3", "WRAPPER": "fastv", "BETA": "0.1"})
    assert removed == ["K", "T", "WRAPPER"]
    assert env == {"PATH": "/bin", "BETA": "0.7"}


def test_dry_run_prints_shell_commands(tmp_path: Path):
    study = tmp_path / "s.yaml"
    import yaml

    study.write_text(yaml.safe_dump({**STUDY, "launcher": {"env": {"HF_HUB_OFFLINE": "1", "X": "a b"}}}))
    out = subprocess.run(
        [sys.executable, "-m", "lmms_holitom.cli", "sweep", str(study), "--dry-run", "--no-task-check",
         "--output", str(tmp_path / "out"), "--limit", "3"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout
    lines = out.splitlines()
    assert lines[0] == f"# sweep cmd: 2 run(s) -> {tmp_path / 'out'}"
    assert "# [1/2] dense: pending" in lines
    assert "# [2/2] holitom-r0.15-t0.80-k18-m0.5: pending" in lines
    commands = [line for line in lines if not line.startswith("#")]
    assert len(commands) == 2
    words = shlex.split(commands[1])
    assert words[:2] == ["HF_HUB_OFFLINE=1", "X=a b"]
    assert words[2:5] == [sys.executable, "-m", "lmms_eval"]
    assert words[words.index("--limit") + 1] == "3"
    assert words[words.index("--output_path") + 1] == str(tmp_path / "out" / "holitom-r0.15-t0.80-k18-m0.5"
                                                            / "lmms_eval")
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_dry_run_shipped_paper_config():
    out = subprocess.run(
        [sys.executable, "-m", "lmms_holitom.cli", "sweep", "configs/ov7b_paper.yaml", "--dry-run",
         "--no-task-check", "--only", "holitom-*"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout
    commands = [line for line in out.splitlines() if not line.startswith("#")]
    assert len(commands) == 4
    assert all(" launch --num_processes 8 --main_process_port 25000 -m lmms_eval " in c for c in commands)


@pytest.mark.parametrize(("name", "model"), [("qwen2_5_vl7b", "qwen2_5_vl_holitom"),
                                             ("qwen3_vl8b", "qwen3_vl_holitom")])
def test_dry_run_shipped_qwen_config_runs_its_lmms_eval_model(name, model):
    out = subprocess.run(
        [sys.executable, "-m", "lmms_holitom.cli", "sweep", f"configs/{name}.yaml", "--dry-run", "--no-task-check"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout
    commands = [shlex.split(line) for line in out.splitlines() if not line.startswith("#")]
    assert len(commands) == 9
    assert all(words[words.index("--model") + 1] == model for words in commands)
    assert all("max_num_frames=32," in words[words.index("--model_args") + 1] for words in commands)


def test_only_unmatched_pattern_is_an_error():
    res = subprocess.run(
        [sys.executable, "-m", "lmms_holitom.cli", "sweep", "configs/smoke.yaml", "--dry-run", "--no-task-check",
         "--only", "nope*"], capture_output=True, text=True, cwd=REPO,
    )
    assert res.returncode == 2
    assert "--only nope* matches no run" in res.stderr and "holitom_wo_m-r0.25-t0.80" in res.stderr


def test_invalid_study_exits_2_with_all_problems(tmp_path: Path):
    study = tmp_path / "bad.yaml"
    study.write_text("name: bad\nmodel: {pretrained: x}\ntasks: [a]\nrunz: []\nruns: [{retain_ratio: 2}]\n")
    res = subprocess.run([sys.executable, "-m", "lmms_holitom.cli", "sweep", str(study), "--no-task-check"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2
    assert "2 problems" in res.stderr and "'runz'" in res.stderr and "retain_ratio must be in (0, 1]" in res.stderr


def test_slurm_script(tmp_path: Path):
    cfg = parse_config({**STUDY, "launcher": {"type": "accelerate", "num_processes": 4}})
    runner = SweepRunner(cfg, tmp_path / "out")
    script = slurm_script(cfg, list(cfg.runs), config_path=Path("configs/x.yaml"), output_dir=runner.output_dir,
                          limit=7, options=parse_slurm_opts(["partition=gpu", "time=12:00:00"]),
                          setup=["source .venv/bin/activate"], python="/venv/bin/python")
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --array=0-1" in lines
    assert "#SBATCH --gpus-per-node=4" in lines
    assert "#SBATCH --partition=gpu" in lines and "#SBATCH --time=12:00:00" in lines
    assert "source .venv/bin/activate" in lines
    assert 'HOLITOM_PYTHON="${HOLITOM_PYTHON:-/venv/bin/python}"' in lines
    cases = [line.strip() for line in lines if line.strip()[:2] in ("0)", "1)")]
    config = str(Path("configs/x.yaml").absolute())
    for i, run in enumerate(cfg.runs):
        assert cases[i] == (f'{i}) exec "$HOLITOM_PYTHON" -m lmms_holitom.cli sweep {config} --output '
                            f"{tmp_path / 'out'} --no-task-check --limit 7 --only {run.name} ;;")
    res = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert res.returncode == 0, res.stderr


def test_slurm_emit_cli(tmp_path: Path):
    target = tmp_path / "job.slurm"
    res = subprocess.run(
        [sys.executable, "-m", "lmms_holitom.cli", "sweep", "configs/ov7b_paper.yaml", "--no-task-check",
         "--emit", "slurm", "--slurm-out", str(target), "--output", str(tmp_path / "out"),
         "--slurm-opt", "partition=gpu"], capture_output=True, text=True, cwd=REPO,
    )
    assert res.returncode == 0, res.stderr
    text = target.read_text()
    assert "#SBATCH --array=0-13" in text and "#SBATCH --gpus-per-node=8" in text
    assert text.count(" --only ") == 14 and "--only holitom-r0.10-t0.65-k18-m0.5 ;;" in text
    assert (tmp_path / "out" / "slurm").is_dir()
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_slurm_opts(["partition"])
