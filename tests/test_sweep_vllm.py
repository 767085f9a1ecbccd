"""``backend: vllm`` in a study: validation (one line per problem), the vLLM python (``launcher.python``, else
``$HOLITOM_VLLM_PYTHON``), the lmms-eval command (``--model vllm_holitom``, one process per run, engine arguments in
the model_args), Slurm arrays, and resumption across a backend change (the fake lmms-eval; no engine). The real
sweep through vLLM is in tests/vllm_backend/test_vllm_lmms_eval.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import REPO, calls, fake_study

from lmms_holitom.integrations.lmms_eval.vllm_families import FAMILIES
from lmms_holitom.sweep.command import build_invocation
from lmms_holitom.sweep.config import ConfigError, load_config, parse_config
from lmms_holitom.sweep.slurm import slurm_script
from lmms_holitom.sweep.spec import LMMS_EVAL_MODELS, RUN_MODEL_KEYS, TRANSFORMERS_ONLY_KEYS

PYTHON = sys.executable  # any executable file stands for the vLLM environment's python here
STUDY = {
    "name": "vl",
    "backend": "vllm",
    "model": {"pretrained": "llava-hf/llava-onevision-qwen2-7b-ov-hf", "max_frames_num": 32, "dtype": "bfloat16"},
    "engine": {"tensor_parallel_size": 2, "max_model_len": 32768, "enforce_eager": True,
               "engine_kwargs": {"swap_space": 4}},
    "tasks": ["videomme"],
    "launcher": {"python": PYTHON},
    "runs": [{"method": "holitom_wo_m", "retain_ratio": 0.1}],
}


def _problems(study: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(study)
    return info.value.problems


def test_vllm_study_runs_vllm_holitom_in_one_process_with_its_engine_args(tmp_path: Path) -> None:
    cfg = parse_config(STUDY)
    assert (cfg.backend, cfg.lmms_eval_model, cfg.cli_model) == ("vllm", "llava_onevision_holitom", "vllm_holitom")
    run = cfg.run("holitom_wo_m-r0.10-t0.80")
    argv = list(build_invocation(cfg, run, tmp_path / "r").argv)
    assert argv[:3] == [PYTHON, "-m", "lmms_eval"]
    assert argv[argv.index("--model") + 1] == "vllm_holitom"
    assert argv[argv.index("--model_args") + 1] == (
        "pretrained=llava-hf/llava-onevision-qwen2-7b-ov-hf,max_frames_num=32,dtype=bfloat16,tensor_parallel_size=2,"
        'max_model_len=32768,enforce_eager=true,engine_kwargs={"swap_space": 4},method=holitom_wo_m,retain_ratio=0.1,'
        'tau=0.8')
    assert parse_config({k: v for k, v in STUDY.items() if k != "backend" and k != "engine"}).cli_model == \
        "llava_onevision_holitom"  # the default backend is transformers


def test_qwen_family_keys_reach_vllm_holitom() -> None:
    study = {**STUDY, "lmms_eval_model": "qwen2_5_vl_holitom",
             "model": {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "max_num_frames": 16, "max_pixels": 401408}}
    cfg = parse_config(study)
    assert cfg.cli_model == "vllm_holitom"
    assert cfg.runs[0].model_args.startswith("pretrained=Qwen/Qwen2.5-VL-7B-Instruct,max_num_frames=16,max_pixels=")
    study = {**STUDY, "lmms_eval_model": "qwen3_5_holitom",  # vllm_holitom serves Qwen3.5 now
             "model": {"pretrained": "Qwen/Qwen3.5-4B", "max_num_frames": 64, "dtype": "bfloat16"}}
    cfg = parse_config(study)
    assert cfg.cli_model == "vllm_holitom"
    assert cfg.runs[0].model_args.startswith("pretrained=Qwen/Qwen3.5-4B,max_num_frames=64,dtype=bfloat16,")


@pytest.mark.parametrize(("change", "problem"), [
    ({"backend": "sglang", "engine": None}, "backend must be one of transformers, vllm, got 'sglang'"),
    ({"backend": "transformers"}, "engine sets vLLM engine arguments: it needs backend: vllm"),
    ({"engine": {"tensor_parallel_size": 0}}, "engine.tensor_parallel_size must be an integer >= 1, got 0"),
    ({"engine": {"gpu_memory_utilization": 1.5}}, "engine.gpu_memory_utilization must be a number in (0, 1]"),
    ({"engine": {"tensor_parallel": 2}}, "engine: unknown key 'tensor_parallel' (did you mean 'tensor_parallel_size'?"),
    ({"engine": {"dtype": "float16"}}, "engine.dtype: set dtype in the model section"),
    ({"engine": {"engine_kwargs": {"a": 1, "b": 2}}}, "engine.engine_kwargs must be a scalar without ','"),
    ({"engine": [1]}, "engine must be a mapping of vLLM engine arguments"),
    ({"model": {"pretrained": "x", "attn_implementation": "sdpa"}},
     "model.attn_implementation is not a model arg of llava_onevision_holitom in vLLM"),
    ({"runs": [{"method": "dense", "device_map": "auto"}]}, "runs[0].device_map is not a model arg"),
    ({"launcher": {"type": "accelerate", "num_processes": 2, "python": PYTHON}},
     "backend vllm: launcher.type must be python (one process per run"),
    ({"launcher": {"python": "/nowhere/bin/python"}},
     "launcher.python=/nowhere/bin/python: no such file (backend vllm runs lmms-eval with the vLLM environment's "
     "python)"),
])
def test_bad_vllm_studies_name_the_key(change: dict, problem: str) -> None:
    problems = _problems({**STUDY, **change})
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_the_vllm_python_comes_from_holitom_vllm_python(tmp_path: Path, monkeypatch) -> None:
    study = {k: v for k, v in STUDY.items() if k != "launcher"}
    monkeypatch.setenv("HOLITOM_VLLM_PYTHON", PYTHON)
    assert parse_config(study).launcher.python == PYTHON
    monkeypatch.setenv("HOLITOM_VLLM_PYTHON", " ")
    assert _problems(study) == ["HOLITOM_VLLM_PYTHON is set but empty: give the vLLM environment's python "
                                "(e.g. .venv-vllm/bin/python)"]
    monkeypatch.delenv("HOLITOM_VLLM_PYTHON")
    assert _problems(study) == ["backend vllm needs the vLLM environment's python: set HOLITOM_VLLM_PYTHON="
                                "/path/to/bin/python or launcher.python (this python has no vllm)"]
    monkeypatch.setenv("HOLITOM_VLLM_PYTHON", str(REPO / "README.md"))
    assert _problems(study) == [f"HOLITOM_VLLM_PYTHON={REPO / 'README.md'}: not an executable file (backend vllm "
                                "runs lmms-eval with the vLLM environment's python)"]


def test_a_bare_launcher_python_is_looked_up_on_path(monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(Path(PYTHON).parent))
    name = Path(PYTHON).name
    assert parse_config({**STUDY, "launcher": {"python": name}}).launcher.python == str(Path(PYTHON).absolute())
    assert _problems({**STUDY, "launcher": {"python": "no-such-python"}}) == [
        "launcher.python=no-such-python: not found on PATH (backend vllm runs lmms-eval with the vLLM environment's "
        "python)"]


def test_a_missing_vllm_python_is_one_line_from_the_cli(tmp_path: Path) -> None:
    import yaml

    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({k: v for k, v in STUDY.items() if k != "launcher"}))
    env = {"PATH": "/usr/bin:/bin", "HOLITOM_VLLM_PYTHON": str(tmp_path / "venv" / "bin" / "python")}
    res = subprocess.run([sys.executable, "-m", "lmms_holitom.cli", "sweep", str(study), "--dry-run"],
                         capture_output=True, text=True, cwd=REPO, env={**env, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == (f"holitom sweep: error: {study}: HOLITOM_VLLM_PYTHON={tmp_path}/venv/bin/python: no such "
                          "file (backend vllm runs lmms-eval with the vLLM environment's python)\n")


def test_slurm_array_asks_for_the_engines_gpus_and_carries_the_vllm_python(tmp_path: Path) -> None:
    cfg = parse_config({**STUDY, "runs": [{"method": "holitom_wo_m", "retain_ratio": r} for r in (0.1, 0.25)]})
    script = slurm_script(cfg, list(cfg.runs), config_path=tmp_path / "s.yaml", output_dir=tmp_path / "out")
    lines = script.splitlines()
    assert "#SBATCH --array=0-2" in lines and "#SBATCH --gpus-per-node=2" in lines
    assert f'export HOLITOM_VLLM_PYTHON="${{HOLITOM_VLLM_PYTHON:-{PYTHON}}}"' in lines
    assert sum("--only" in line for line in lines) == 3 and "accelerate" not in script
    plain = parse_config({k: v for k, v in STUDY.items() if k not in ("backend", "engine")})
    assert "HOLITOM_VLLM_PYTHON" not in slurm_script(plain, list(plain.runs), config_path=tmp_path / "s.yaml",
                                                       output_dir=tmp_path / "out")


def test_vllm_holitom_takes_every_model_key_the_sweep_sends() -> None:
    """The sweep's model keys of a family in vLLM are model args of ``vllm_holitom`` for that family (its
    `VllmFamily.ARGS`, the common ones, the engine's dtype), so a study never fails at lmms-eval's load."""
    from lmms_holitom.integrations.lmms_eval.vllm_args import ENGINE_ARGS

    common = {"pretrained", "max_new_tokens", "on_video_error", "device"}
    for family in FAMILIES.values():
        foreign = {*LMMS_EVAL_MODELS[family.lmms_eval_model], *TRANSFORMERS_ONLY_KEYS}
        keys = {k for k in RUN_MODEL_KEYS if k not in foreign}
        assert keys <= {*family.ARGS, *common, *ENGINE_ARGS}, (family.name, keys - {*family.ARGS, *common})


def test_changing_the_backend_reruns_the_runs(tmp_path: Path, monkeypatch) -> None:
    """A run done by one backend is not done for the other (lmms-eval's ``config.model`` differs even where the
    model_args are the same): the fake lmms-eval records the --model it was given."""
    import io

    from lmms_holitom.sweep.runner import SweepRunner

    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_LMMS_EVAL_CALLS", str(log))
    monkeypatch.delenv("FAKE_LMMS_EVAL_MODE", raising=False)

    def runner(backend: str) -> SweepRunner:
        cfg = load_config(fake_study(tmp_path, runs=[{"name": "dense", "method": "dense"}], backend=backend))
        return SweepRunner(cfg, tmp_path / "out", out=io.StringIO(), heartbeat_s=60)

    def sweep(backend: str) -> str:
        run = runner(backend)
        assert run.run(list(run.cfg.runs)).exit_code == 0
        return run.out.getvalue()

    sweep("vllm")
    assert calls(log) == ["dense"]
    assert '"lmms_eval_model": "vllm_holitom"' in (tmp_path / "out" / "dense" / "run.json").read_text()
    assert "1 already done, 0 to run" in sweep("vllm")
    transformers = runner("transformers")
    assert transformers.check(transformers.cfg.runs[0]).reason == \
        "results were produced by --model vllm_holitom (expected llava_onevision_holitom)"
    assert "0 already done, 1 to run" in sweep("transformers")
    assert calls(log) == ["dense", "dense"]
