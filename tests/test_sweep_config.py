"""Study files: validation (every problem in one error), grid expansion, naming, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sweep_helpers import REPO

from lmms_holitom.methods.visionzip import tokens_per_frame
from lmms_holitom.sweep.config import ConfigError, load_config, parse_config

BASE = {"name": "t", "model": {"pretrained": "org/m", "max_frames_num": 32}, "tasks": ["videomme"]}


def study(**over):
    return {**BASE, **over}


def names(cfg) -> list[str]:
    return [r.name for r in cfg.runs]


# ---------------------------------------------------------------------------------------------- validation
def test_all_problems_reported_at_once():
    data = study(
        colour="red",  # unknown top-level key
        model={"pretrained": "org/m", "max_frames_num": 0, "flash": True},
        launcher={"type": "mpirun", "num_processes": 2, "portt": 1},
        runs=[
            {"name": "a", "method": "holitom", "retain_ratio": 1.5},
            {"name": "a", "method": "holitom_wo_m", "tau": 0.7},
            {"name": "b", "method": "holitom", "tua": 0.7},
            {"grid": {"method": "fastv", "merge_ratio": [0.5, 1.2], "merge_layer": 2}},
        ],
        limit=0,
    )
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="s.yaml")
    err = info.value
    text = str(err)
    expected = [
        "top level: unknown key 'colour'",
        "model: unknown key 'flash'",
        "model.max_frames_num must be an integer in [1, 4096], got 0",
        "launcher: unknown key 'portt'",
        "launcher.type must be one of python, accelerate, got 'mpirun'",
        "limit must be an integer in [1, 1000000000], got 0",
        "runs[0] 'a': retain_ratio must be in (0, 1], got 1.5",
        "duplicate run name 'a' (runs[0] 'a' and runs[1] 'a')",
        "runs[2] 'b': unknown key 'tua' (did you mean 'tau'?",
        "runs[3] (grid): merge_ratio must be in [0, 1), got 1.2",
    ]
    for fragment in expected:
        assert fragment in text, f"missing {fragment!r} in:\n{text}"
    assert text.startswith(f"s.yaml: {len(err.problems)} problems:")
    assert len(text.splitlines()) == len(err.problems) + 1  # one line per problem


def test_bad_value_message_names_parameter_and_range():
    with pytest.raises(ConfigError, match=r"runs\[0\]: tau must be in \[-1, inf\)"):
        parse_config(study(runs=[{"method": "holitom", "tau": -3}]))
    with pytest.raises(ConfigError, match="merge_layer must be set"):
        parse_config(study(runs=[{"method": "fastv", "merge_layer": None}]))


def test_missing_required_keys():
    with pytest.raises(ConfigError) as info:
        parse_config({"runs": []})
    text = str(info.value)
    assert "name is required" in text
    assert "model must be a mapping" in text
    assert "tasks must be a non-empty list" in text


def test_duplicate_yaml_key_is_a_problem(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nmodel: {pretrained: org/m}\ntasks: [a]\ntasks: [b]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"duplicate key 'tasks' \(line 4\)"):
        load_config(path)


def test_zip_lengths_must_match():
    with pytest.raises(ConfigError, match="lists must have equal lengths, got retain_ratio=2, tau=3"):
        parse_config(study(runs=[{"grid": {"zip": {"retain_ratio": [0.1, 0.2], "tau": [0.6, 0.7, 0.8]}}}]))


def test_unknown_task_via_lmms_eval_task_manager():
    from lmms_holitom.sweep.tasks import check_tasks, expand_tasks

    with pytest.raises(ConfigError, match="unknown lmms-eval task 'videome'.*close: videomme"):
        parse_config(study(tasks=["mvbench", "videome"]), check_tasks=check_tasks)
    cfg = parse_config(study(tasks=["mvbench", "egoschema_subset", "longvideobench_val_v", "videomme"]),
                       check_tasks=check_tasks)
    groups = expand_tasks(cfg.tasks)
    assert len(groups["mvbench"]) == 20 and "mvbench_action_sequence" in groups["mvbench"]
    assert groups["videomme"] == ["videomme"]


# ---------------------------------------------------------------------------------------------- expansion
def test_grid_cartesian_zip_and_dense_added():
    cfg = parse_config(study(runs=[{"grid": {
        "method": ["holitom", "holitom_wo_m"],
        "merge_layer": 18,
        "zip": {"retain_ratio": [0.10, 0.15], "tau": [0.65, 0.80]},
    }}]))
    assert names(cfg) == [
        "dense",
        "holitom-r0.10-t0.65-k18-m0.5",
        "holitom-r0.15-t0.80-k18-m0.5",
        "holitom_wo_m-r0.10-t0.65",
        "holitom_wo_m-r0.15-t0.80",
    ]
    dense = cfg.runs[0]
    assert dense.params == {"method": "dense"} and dense.source.startswith("auto")
    wo_m = cfg.run("holitom_wo_m-r0.10-t0.65")
    # merge_layer is not read by HoliTom w/o M: dropped from its model_args
    assert wo_m.model_args == "pretrained=org/m,max_frames_num=32,method=holitom_wo_m,retain_ratio=0.1,tau=0.65"


def test_cartesian_count_and_irrelevant_keys_collapse():
    cfg = parse_config(study(runs=[
        {"name": "dense", "method": "dense"},
        {"grid": {"method": ["holitom", "visionzip"], "retain_ratio": [0.1, 0.2], "tau": [0.6, 0.7, 0.8]}},
    ]))
    # holitom: 2 x 3 points; visionzip ignores tau -> 2 distinct runs (3 identical points each collapse)
    assert len(cfg.runs) == 1 + 6 + 2
    assert "visionzip-r0.10" in names(cfg) and "visionzip-r0.20" in names(cfg)


def test_names_list_extra_keys_and_model_overrides():
    cfg = parse_config(study(runs=[
        {"method": "holitom", "retain_ratio": 0.25, "beta": 0.5, "fidelity": "clean", "max_frames_num": 64},
        {"method": "fastv", "merge_layer": 2, "merge_ratio": 0.8},
        {"method": "visionzip", "retain_ratio": 0.15, "spatial_tokens": 30},
        {"name": "custom-name", "method": "dense", "max_frames_num": 16},
    ]))
    assert names(cfg) == ["holitom-r0.25-t0.80-k18-m0.5-b0.5-clean-f64", "fastv-k2-m0.8",
                          "visionzip-r0.15-s30", "custom-name"]
    r = cfg.runs[0]
    assert r.model["max_frames_num"] == 64 and r.overrides == {"max_frames_num": 64}
    assert r.model_args.endswith("method=holitom,retain_ratio=0.25,tau=0.8,merge_layer=18,merge_ratio=0.5,"
                                 "beta=0.5,fidelity=clean")
    assert "max_frames_num=64" in r.model_args


def test_dense_name_reserved():
    with pytest.raises(ConfigError, match="name 'dense' is reserved"):
        parse_config(study(runs=[{"name": "dense", "method": "holitom"}]))


def test_include_path_resolution(tmp_path: Path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "task_overrides").mkdir()
    path = tmp_path / "configs" / "s.yaml"
    path.write_text(yaml.safe_dump(study(include_path="task_overrides")), encoding="utf-8")
    assert load_config(path).include_path == (tmp_path / "task_overrides").resolve()
    path.write_text(yaml.safe_dump(study(include_path="nowhere")), encoding="utf-8")
    with pytest.raises(ConfigError, match="include_path 'nowhere' not found"):
        load_config(path)


# ---------------------------------------------------------------------------------------------- shipped configs
SHIPPED = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))


def test_every_shipped_config_is_checked():
    assert {"ov7b_paper", "llava_video7b", "ov72b", "ablation_tau", "ablation_k", "ablation_r", "frames", "smoke",
            "qwen2_5_vl7b", "qwen3_vl8b"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_validate(name: str):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.name == name
    assert sum(r.method == "dense" for r in cfg.runs) >= 1


def test_ov7b_paper_grid_is_the_published_table():
    cfg = load_config(REPO / "configs" / "ov7b_paper.yaml")
    assert len(cfg.runs) == 14
    holitom = {r.holitom.retain_ratio: r.holitom for r in cfg.runs if r.method == "holitom"}
    assert {k: (v.tau, v.merge_layer, v.merge_ratio) for k, v in holitom.items()} == {
        0.25: (0.8, 18, 0.5), 0.20: (0.8, 18, 0.5), 0.15: (0.8, 18, 0.5), 0.10: (0.65, 18, 0.5)}
    wo_m = sorted((r.holitom.retain_ratio, r.holitom.tau) for r in cfg.runs if r.method == "holitom_wo_m")
    assert wo_m == [(0.10, 0.65), (0.15, 0.8), (0.20, 0.8), (0.25, 0.8)]
    vz = sorted(tokens_per_frame(r.holitom, 196) for r in cfg.runs if r.method == "visionzip")
    assert vz == [20, 30, 40, 49]
    fastv = cfg.run("fastv-k2-m0.8").holitom
    from lmms_holitom.flops import setting_flops

    assert setting_flops(fastv, "llava-onevision-7b") / 1e12 == pytest.approx(9.3, abs=0.05)
    assert cfg.launcher.type == "accelerate" and cfg.launcher.num_processes == 8


def test_ov72b_merge_layer_reproduces_published_flops():
    from lmms_holitom.flops import setting_flops

    cfg = load_config(REPO / "configs" / "ov72b.yaml")
    run = next(r for r in cfg.runs if r.method == "holitom")
    assert setting_flops(run.holitom, "llava-onevision-72b") / 1e12 == pytest.approx(51.6, abs=0.05)


@pytest.mark.parametrize(("name", "model", "pretrained", "k"), [
    ("qwen2_5_vl7b", "qwen2_5_vl_holitom", "Qwen/Qwen2.5-VL-7B-Instruct", 18),  # 18 of 28 layers
    ("qwen3_vl8b", "qwen3_vl_holitom", "Qwen/Qwen3-VL-8B-Instruct", 23),  # 18/28 of 36 layers; >= 3 deepstack
])
def test_qwen_configs_expand_to_the_study(name: str, model: str, pretrained: str, k: int):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.lmms_eval_model == model
    assert cfg.tasks == ("mvbench", "egoschema_subset", "longvideobench_val_v", "videomme")
    points = [("25", "0.80"), ("20", "0.80"), ("15", "0.80"), ("10", "0.65")]
    assert names(cfg) == ["dense", *(f"holitom_wo_m-r0.{r}-t{t}" for r, t in points),
                          *(f"holitom-r0.{r}-t{t}-k{k}-m0.5" for r, t in points)]
    shared = f"pretrained={pretrained},max_num_frames=32,min_pixels=200704,max_pixels=1605632,attn_implementation=sdpa"
    assert cfg.run("dense").model_args == f"{shared},method=dense"
    assert cfg.run(f"holitom-r0.10-t0.65-k{k}-m0.5").model_args == (
        f"{shared},method=holitom,retain_ratio=0.1,tau=0.65,merge_layer={k},merge_ratio=0.5")
    assert cfg.run("holitom_wo_m-r0.25-t0.80").model_args == f"{shared},method=holitom_wo_m,retain_ratio=0.25,tau=0.8"


def test_lmms_eval_model_and_its_model_keys_checked():
    with pytest.raises(ConfigError) as info:
        parse_config(study(lmms_eval_model="qwen_holitom"))
    assert "lmms_eval_model must be one of llava_onevision_holitom, qwen2_5_vl_holitom, qwen3_vl_holitom, " \
           "qwen3_5_holitom, got 'qwen_holitom'" in str(info.value)
    qwen = {"name": "t", "lmms_eval_model": "qwen3_vl_holitom", "tasks": ["videomme"],
            "model": {"pretrained": "org/m", "max_frames_num": 32, "fps": 0}, "runs": [
                {"method": "holitom", "conv_template": "qwen_1_5"}, {"grid": {"method": "dense", "max_frames_num": 8}}]}
    with pytest.raises(ConfigError) as info:
        parse_config(qwen)
    text = str(info.value)
    assert "model.max_frames_num is not a model arg of qwen3_vl_holitom (its model keys: pretrained, max_num_frames" \
           in text
    assert "runs[0].conv_template is not a model arg of qwen3_vl_holitom" in text
    assert "runs[1].max_frames_num is not a model arg of qwen3_vl_holitom" in text
    assert "model.fps must be a number > 0, got 0" in text
    with pytest.raises(ConfigError, match="model.max_pixels is not a model arg of llava_onevision_holitom"):
        parse_config(study(model={"pretrained": "org/m", "max_pixels": 1000}))


def test_study_models_are_the_registered_lmms_eval_models():
    from lmms_holitom.integrations.lmms_eval.plugin import MODELS
    from lmms_holitom.sweep.spec import LMMS_EVAL_MODELS

    # vllm_holitom runs in the vLLM venv; studies reach it through their own vLLM backend (issue 18), not by name
    assert set(LMMS_EVAL_MODELS) == set(MODELS) - {"vllm_holitom"}
