"""What the README and ``--help`` tell a user about the shipped studies and the families, checked against the files:
each study runs the checkpoint its numbers belong to (the paper's own for the paper's studies), the README's studies
table names every shipped study with that checkpoint, and the help texts name every family and preset."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmms_holitom.cli import main
from lmms_holitom.sweep.config import load_config

REPO = Path(__file__).resolve().parents[1]
OV7B, OV72B = "lmms-lab/llava-onevision-qwen2-7b-ov", "lmms-lab/llava-onevision-qwen2-72b-ov"
#: shipped study -> the checkpoint it runs (the published numbers of the paper's studies are of these)
CHECKPOINTS = {
    "ov7b_paper": OV7B, "ablation_tau": OV7B, "ablation_k": OV7B, "ablation_r": OV7B, "frames": OV7B,
    "methods_ov7b": OV7B, "ov72b": OV72B, "llava_video7b": "lmms-lab/LLaVA-Video-7B-Qwen2",
    "qwen2_5_vl7b": "Qwen/Qwen2.5-VL-7B-Instruct", "methods_qwen2_5_vl7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "qwen3_vl8b": "Qwen/Qwen3-VL-8B-Instruct", "qwen3_5_9b": "Qwen/Qwen3.5-9B", "smoke": "tiny",
}
#: checkpoint -> its `holitom flops` preset (the decoder's depth and layer kinds)
PRESET_OF = {OV7B: "llava-onevision-7b", OV72B: "llava-onevision-72b",
             "lmms-lab/LLaVA-Video-7B-Qwen2": "llava-video-7b", "Qwen/Qwen2.5-VL-7B-Instruct": "qwen2.5-vl-7b",
             "Qwen/Qwen3-VL-8B-Instruct": "qwen3-vl-8b", "Qwen/Qwen3.5-9B": "qwen3.5-9b"}
SHIPPED = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))


def test_every_shipped_study_has_a_stated_checkpoint() -> None:
    assert sorted(CHECKPOINTS) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_study_runs_its_checkpoint(name: str) -> None:
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    for run in cfg.runs:
        assert run.model_args.startswith(f"pretrained={CHECKPOINTS[name]},"), (run.name, run.model_args)


@pytest.mark.parametrize("name", [n for n in SHIPPED if CHECKPOINTS[n] in PRESET_OF])
def test_study_merge_layers_exist_in_its_decoder(name: str) -> None:
    """Every inner-merge run's K is a layer the checkpoint's decoder takes: below its depth and, on a hybrid
    decoder (Qwen3.5), right after a full-attention layer — else the run would stop at model load."""
    from lmms_holitom.flops import get_preset
    from lmms_holitom.layer_kinds import merge_layers

    kinds = get_preset(PRESET_OF[CHECKPOINTS[name]]).kinds
    inner = [run for run in load_config(REPO / "configs" / f"{name}.yaml").runs if run.holitom.inner_mode]
    for run in inner:
        assert run.holitom.merge_layer in merge_layers(kinds), (run.name, run.holitom.merge_layer)
    if name == "qwen3_5_9b":
        assert inner and {run.holitom.merge_layer for run in inner} == {20}  # 18 of 28 -> the nearest allowed


def _studies_table() -> dict[str, str]:
    """README's studies table: study name -> the checkpoint cell of its row."""
    text = (REPO / "README.md").read_text()
    rows: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) >= 3 and cells[1].startswith("`") and "configs/" not in cells[0]:
            for study in re.findall(r"`([a-z0-9_]+)`", cells[0]):
                rows[study] = cells[1]
    return rows


def test_readme_studies_table_names_every_study_and_its_checkpoint() -> None:
    table = _studies_table()
    for name, checkpoint in CHECKPOINTS.items():
        assert name in table, f"README's studies table misses {name}"
        assert f"`{checkpoint}`" in table[name], (name, table[name])


def _help(argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: no wrapping inside names
    assert main([*argv, "--help"]) == 0  # argparse's exit, returned as the exit code
    return capsys.readouterr().out


def test_holitom_help_names_every_family(capsys, monkeypatch) -> None:
    text = _help([], capsys, monkeypatch)
    for family in ("LLaVA-OneVision", "LLaVA-Video", "Qwen2.5-VL", "Qwen3-VL", "Qwen3-VL-MoE", "Qwen3.5",
                   "Qwen3.5-MoE"):
        assert family in text


def test_flops_preset_help_lists_every_preset(capsys, monkeypatch) -> None:
    from lmms_holitom.flops import PRESETS

    line = next(x for x in _help(["flops"], capsys, monkeypatch).splitlines() if x.strip().startswith("--preset"))
    named = set(re.findall(r"[a-z0-9.-]+", re.sub(r"([a-z0-9.-]*)\{([^}]*)\}",
                                                  lambda m: " ".join(m[1] + x for x in m[2].split(",")), line)))
    assert set(PRESETS) <= named, sorted(set(PRESETS) - named)


def test_bench_help_names_every_qwen_shape_and_tiny_model(capsys, monkeypatch) -> None:
    from lmms_holitom.shapes import QWEN_SHAPES
    from lmms_holitom.testing.tiny_qwen import TINY_QWEN_NAMES

    lines = _help(["bench"], capsys, monkeypatch).splitlines()
    shape = next(x for x in lines if x.strip().startswith("--shape"))
    at = next(i for i, x in enumerate(lines) if x.strip().startswith("--pretrained"))
    pretrained = " ".join(lines[at:at + 2])  # a long metavar puts the help on the next line
    for name in QWEN_SHAPES:
        assert re.search(rf"\b{re.escape(name)}\b", shape), name
    for name in TINY_QWEN_NAMES:
        assert re.search(rf"{re.escape(name)}(,|$| )", pretrained), name
