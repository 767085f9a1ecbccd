"""Every command's user errors: one line naming the value and what is allowed, exit 2, no traceback
(``holitom --debug`` shows it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmms_holitom.cli import main
from lmms_holitom.commands import UsageError

NO_CUDA = not torch.cuda.is_available()


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"holitom {argv[0]}: error: ")
    return err[0]


@pytest.mark.parametrize(("argv", "expected"), [
    (["flops", "--frames", "0"], "--frames must be an integer in [1, 4096], got 0"),
    (["flops", "--retain-ratio", "2"], "retain_ratio must be in (0, 1], got 2.0"),
    (["flops", "--merge-layer", "100"], "merge_layer must be in [0, 28] (layers=28), got 100"),
    (["flops", "--preset", "bogus"], "unknown model preset 'bogus'; known: "),
    (["flops", "--visual-tokens", "-5"], "--visual-tokens must be an integer in [0, 1000000], got -5"),
    (["run", "missing.mp4", "-q", "?", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
    (["run", "missing.mp4", "-q", "?", "--retain-ratio", "0"], "retain_ratio must be in (0, 1], got 0.0"),
    (["run", "missing.mp4", "-q", "?", "--device", "tpu9"], "--device must be auto, cpu, cuda or cuda:N, got 'tpu9'"),
    (["bench", "--frames", "0"], "--frames must be an integer in [1, 4096], got 0"),
    (["bench", "--retain-ratios", "1.5"], "retain_ratio must be in (0, 1], got 1.5"),
    (["sweep", "configs/smoke.yaml", "--limit", "0"], "--limit must be an integer in [1, 1000000000], got 0"),
    (["sweep", "configs/smoke.yaml", "--heartbeat", "0"], "--heartbeat must be a number in (0, 604800], got '0'"),
])
def test_bad_value_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str):
    assert expected in one_error_line(capsys, argv)


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", [["run", "missing.mp4", "-q", "?"], ["bench"]])
def test_cuda_on_a_cpu_machine(capsys: pytest.CaptureFixture[str], command: list[str]):
    line = one_error_line(capsys, [*command, "--device", "cuda"])
    assert "--device cuda: CUDA is not available on this machine (allowed: auto, cpu)" in line


def test_report_and_make_tiny_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "run" / "r").mkdir(parents=True)
    (tmp_path / "run" / "r" / "run.json").write_text('{"status": "failed"}')
    (tmp_path / "file").write_text("x")
    line = one_error_line(capsys, ["report", str(tmp_path / "run"), "--no-plots", "--out", str(tmp_path / "file")])
    assert str(tmp_path / "file") in line
    line = one_error_line(capsys, ["make-tiny", "--path", str(tmp_path / "file")])
    assert f"--path {tmp_path / 'file'} is a file" in line


def test_debug_shows_the_traceback():
    with pytest.raises(UsageError, match="--json / is a folder"):
        main(["--debug", "bench", "--json", "/"])


def test_real_entry_point(tmp_path: Path):
    holitom = Path(sys.executable).with_name("holitom")
    res = subprocess.run([str(holitom), "flops", "--frames", "0"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == ("holitom flops: error: --frames must be an integer in [1, 4096], got 0 "
                          "(see holitom flops --help)\n")
    ok = subprocess.run([str(holitom), "flops", "--frames", "32", "--retain-ratio", "0.15"], capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and "holitom on llava-onevision-7b" in ok.stdout
