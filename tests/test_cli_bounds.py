"""Numeric values through every entry point: ASCII digits only (``int('١')`` is 1 in Python), and every numeric
flag of every command bounded above and below, checked before any work — one line naming the flag and its range."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import fake_study

from lmms_holitom.cli import main
from lmms_holitom.integrations.lmms_eval.settings import parse_int, resolve_holitom_config

BIG = "99999999999999999999"


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"holitom {argv[0]}: error: ")
    return err[0]


@pytest.mark.parametrize(("argv", "expected"), [
    (["flops", "--frames", BIG], f"--frames must be an integer in [1, 4096], got {BIG}"),
    (["flops", "--text-tokens", BIG], "--text-tokens must be an integer in [0, 1000000]"),
    (["flops", "--visual-tokens", BIG], "--visual-tokens must be an integer in [0, 1000000]"),
    (["flops", "--spatial-tokens", BIG], "--spatial-tokens must be an integer in [1, 1000000]"),
    (["flops", "--merge-layer", "-5"],
     "merge_layer must be an integer in [1, 1024] (a decoder layer index) or none, got -5"),
    (["flops", "--merge-ratio", "nan"], "--merge-ratio must be a finite number, got 'nan'"),
    (["bench", "--frames", BIG], "--frames must be an integer in [1, 4096]"),
    (["bench", "--text-tokens", BIG], "--text-tokens must be an integer in [0, 1000000]"),
    (["bench", "--scenes", BIG], "--scenes must be an integer in [1, 4096]"),
    (["bench", "--new-tokens", BIG], "--new-tokens must be an integer in [1, 1000000]"),
    (["bench", "--warmup", BIG], "--warmup must be an integer in [0, 10000]"),
    (["bench", "--repeats", BIG], "--repeats must be an integer in [1, 10000]"),
    (["bench", "--seed", BIG], "--seed must be an integer in [0, 4294967295]"),
    (["bench", "--threads", BIG], "--threads must be an integer in [1, 4096]"),
    (["bench", "--merge-layer", BIG], "--merge-layer must be an integer in [1, 1024]"),
    (["bench", "--fastv-layer", "0"], "--fastv-layer must be an integer in [1, 1024]"),
    (["bench", "--probe-chunks", f"2,{BIG}"], "--probe-chunks must be comma-separated integers in [1, 4096]"),
    (["bench", "--fastv-ratio", "1.5"], "merge_ratio must be in [0, 1), got 1.5"),
    (["bench", "--tau", "inf"], "--tau must be a finite number, got 'inf'"),
    (["sweep", "configs/smoke.yaml", "--limit", BIG], "--limit must be an integer in [1, 1000000000]"),
    (["sweep", "configs/smoke.yaml", "--heartbeat", "1e400"], "--heartbeat must be a number in (0, 604800]"),
    (["check-data", "--show-missing", "-1"], "--show-missing must be an integer in [0, 100000], got -1"),
])
def test_every_numeric_flag_is_bounded(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str):
    assert expected in one_error_line(capsys, argv)


@pytest.mark.parametrize(("argv", "expected"), [
    (["flops", "--frames", "١٢"], "--frames must be an integer in [1, 4096], got '١٢'"),
    (["flops", "--retain-ratio", "٠.٥"], "--retain-ratio must be a finite number, got '٠.٥'"),
    (["flops", "--merge-layer", "١٢"], "merge_layer must be an integer, got '١٢'"),
    (["flops", "--frames", "1_6"], "--frames must be an integer in [1, 4096], got '1_6'"),
    (["bench", "--retain-ratios", "٠.١"], "--retain-ratios must be comma-separated numbers, got '٠.١'"),
    (["bench", "--repeats", "３"], "--repeats must be an integer in [1, 10000], got '３'"),
])
def test_unicode_digits_are_not_numbers_on_the_command_line(capsys, argv: list[str], expected: str):
    assert expected in one_error_line(capsys, argv)


def test_unicode_digits_are_not_numbers_in_env_vars_and_model_args():
    with pytest.raises(ValueError, match=r"RETAIN_RATIO \(retain_ratio\): retain_ratio must be a number, got '١'"):
        resolve_holitom_config({}, {"WRAPPER": "holitom", "RETAIN_RATIO": "١"})
    with pytest.raises(ValueError, match="knn_k must be an integer, got '٧'"):
        resolve_holitom_config({"knn_k": "٧"}, {})
    with pytest.raises(ValueError, match=r"max_frames_num must be an integer in \[1, 4096\], got '٣٢'"):
        parse_int("max_frames_num", "٣٢", 1, 4096)
    # ASCII spellings still work, the same values
    cfg, _ = resolve_holitom_config({"knn_k": " 7 ", "retain_ratio": "1e-1"}, {})
    assert (cfg.knn_k, cfg.retain_ratio) == (7, 0.1)
    assert parse_int("max_frames_num", "32", 1, 4096) == 32


def test_unicode_digits_are_not_numbers_in_a_study_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    study = fake_study(tmp_path, runs=[{"name": "r", "method": "holitom", "retain_ratio": "٠.٢"}])
    code = main(["sweep", str(study), "--list", "--no-task-check"])
    err = capsys.readouterr().err
    assert code == 2
    assert "runs[0] 'r': retain_ratio must be a number, got '٠.٢'" in err


def test_unwritable_bench_output_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Without the check these run a whole benchmark (progress lines on stderr) and fail at the end."""
    (tmp_path / "file").write_text("x")
    line = one_error_line(capsys, ["bench", "--json", str(tmp_path / "file" / "out.json")])
    assert line.endswith(f"--json {tmp_path / 'file' / 'out.json'} cannot be written: {tmp_path / 'file'} is a "
                         "file, not a folder")
    line = one_error_line(capsys, ["bench", "--plot", str(tmp_path)])
    assert f"--plot {tmp_path} is a folder; give a file name" in line
    line = one_error_line(capsys, ["bench", "--json", "/proc/holitom-bench.json"])
    assert "--json /proc/holitom-bench.json cannot be written: " in line


def test_bench_plot_without_matplotlib_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch):
    """Without matplotlib, ``--plot`` used to fail only after the whole benchmark had run."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what find_spec reports for a missing package
    line = one_error_line(capsys, ["bench", "--plot", str(tmp_path / "b.png")])
    assert line == (f"holitom bench: error: --plot {tmp_path / 'b.png'} needs matplotlib, which this environment "
                    "lacks: pip install matplotlib (or pip install 'lmms-holitom[plot]'), or drop --plot (the JSON "
                    "has every figure)")
    assert not (tmp_path / "b.png").exists()
