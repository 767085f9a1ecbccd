"""The bench figures and the table's spread warning, read through their matplotlib objects (no pixels).

One real speed study (``benchmarks/bench_model.py``: tiny model, 1 and 2 frames, dense and HoliTom, 2 repeats)
gives real result dicts; `write_plot` (what ``holitom bench --plot`` calls) and the study's `summary_figure`
draw them. Where a test needs a known spread (an outlier, repeats that disagree), it sets a setting's timings with
`summarize` — the bench's own statistics — and recomputes the ratios with `add_ratios`, as a result loaded back
from its JSON would hold them. Times themselves are never asserted.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sweep_helpers import REPO

from lmms_holitom.bench import format_table, summarize, write_plot
from lmms_holitom.bench.figure import PANELS
from lmms_holitom.bench.summary import DISAGREE_RATIO, add_ratios, disagreements

pytest.importorskip("matplotlib")


def _bench_model() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_model", REPO / "benchmarks" / "bench_model.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study")
    code = _bench_model().main(["--shape", "tiny", "--device", "cpu", "--frames", "1,2", "--out", str(out),
                                "--methods", "dense,holitom", "--retain-ratios", "0.25", "--repeats", "2",
                                "--warmup", "0", "--new-tokens", "2", "--no-probe", "--no-memory", "--quiet"])
    assert code == 0
    return out


def _result(study: Path, frames: int) -> dict[str, Any]:
    return json.loads((study / f"bench_f{frames}.json").read_text())


def _set(result: dict[str, Any], name: str, figure: str, values: list[float]) -> None:
    """Give setting ``name`` the repeats ``values`` for ``figure`` (a key of ``timings_ms``, or decode_tok_s)."""
    record = next(r for r in result["settings"] if r["name"] == name)
    if figure == "decode_tok_s":
        record[figure] = summarize(values, higher_is_better=True)
    else:
        record["timings_ms"][figure] = summarize(values)


def _steady(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with every shown figure's repeats within 10 % of each other (dense slower than HoliTom)."""
    result = copy.deepcopy(result)
    for name, scale in (("dense", 1.0), ("holitom@0.25", 0.5)):
        for figure in ("vision", "merge", "llm_prefill", "ttft"):
            _set(result, name, figure, [10 * scale, 10.5 * scale])
        _set(result, name, "decode_tok_s", [100 / scale, 105 / scale])
    add_ratios(result["settings"])
    return result


def _axis(fig: Any, title: str) -> Any:
    return next(ax for ax in fig.axes if ax.get_title().startswith(title))


def test_every_panel_shows_the_statistic_with_its_min_max(study: Path, tmp_path: Path) -> None:
    """Known repeats (`_steady`): the machine's real timings can span 10x, which turns a panel into log-scale dots."""
    result = _steady(_result(study, 2))
    fig = write_plot(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")
    assert [ax.get_title().split(" — ")[0] for ax in fig.axes] == [title for _label, title, _h in PANELS]
    assert [t.get_text().rstrip(" !") for t in fig.axes[0].get_yticklabels()] == ["dense", "holitom@0.25"]
    ttft = _axis(fig, "time to first token")
    bars = ttft.containers[0]
    whiskers = ttft.containers[1].lines[2][0].get_segments()  # ErrorbarContainer: (line, caps, (bars,))
    for i, record in enumerate(result["settings"]):
        summary = record["timings_ms"]["ttft"]
        assert bars.patches[i].get_width() == pytest.approx(summary["median"])
        assert sorted(whiskers[i][:, 0]) == pytest.approx([summary["min"], summary["max"]])
    assert "bar or dot: median of 2 repeats, whisker: min–max" in fig.get_suptitle()


def test_an_outlier_gets_a_log_panel_and_disagreeing_repeats_are_marked(study: Path, tmp_path: Path) -> None:
    result = _steady(_result(study, 2))
    _set(result, "holitom@0.25", "llm_prefill", [0.2, 0.21])  # 50x faster than dense: the 42x outlier's case
    _set(result, "dense", "ttft", [10.0, 30.0])  # max/min 3 > 1.5: a busy machine
    add_ratios(result["settings"])
    fig = write_plot(result, tmp_path / "outlier.png")
    prefill, ttft, vision = (_axis(fig, t) for t in ("LLM prefill", "time to first token", "vision"))
    assert prefill.get_xscale() == "log" and prefill.get_title().endswith("log scale")
    assert not prefill.patches and len(prefill.collections) >= 2  # dots, no bar from an arbitrary left edge
    assert "×50.00" in [t.get_text() for t in prefill.texts]
    assert ttft.get_xscale() == vision.get_xscale() == "linear"
    assert ttft.patches[0].get_hatch() == "///" and not ttft.patches[1].get_hatch()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["dense !", "holitom@0.25"]
    warning = fig.get_supxlabel().replace("\n", " ")
    assert f"repeats disagree (max/min > {DISAGREE_RATIO:g} over 2 repeats" in warning
    assert "dense (TTFT 3.00x)" in warning and "holitom@0.25 (" not in warning


def test_table_warns_when_repeats_disagree(study: Path) -> None:
    steady = _steady(_result(study, 1))
    assert "WARNING" not in format_table(steady) and " !\n" not in format_table(steady)
    noisy = copy.deepcopy(steady)
    _set(noisy, "holitom@0.25", "ttft", [5.0, 9.0])
    _set(noisy, "holitom@0.25", "merge", [1.0, 2.0])
    add_ratios(noisy["settings"])
    lines = format_table(noisy).splitlines()
    row = next(line for line in lines if line.startswith("holitom@0.25"))
    assert row.endswith(" !") and not next(x for x in lines if x.startswith("dense ")).endswith("!")
    at = next(i for i, line in enumerate(lines) if line.startswith("WARNING: repeats disagree"))
    assert "(max/min > 1.5 over 2 repeats" in lines[at] and "1 of 2 settings, marked !" in lines[at]
    assert lines[at + 1] == "  ! holitom@0.25: merge 2.00x, TTFT 1.80x"


def test_disagreement_is_max_over_min_above_the_constant() -> None:
    at = {"timings_ms": {"ttft": summarize([2.0, 2.0 * DISAGREE_RATIO])}}
    above = {"timings_ms": {"ttft": summarize([2.0, 2.0 * DISAGREE_RATIO + 0.01])}, "decode_tok_s": summarize(
        [10.0, 30.0, float("nan")], higher_is_better=True)}
    assert disagreements(at) == {}
    assert disagreements(above) == {"TTFT": pytest.approx(1.505), "decode tok/s": pytest.approx(3.0)}
    assert disagreements({"timings_ms": {"merge": summarize([0.0, 0.0])}}) == {}  # no merge: nothing to compare


def test_speed_study_summary_plot(study: Path) -> None:
    bench_model = _bench_model()
    assert (study / "summary.png").read_bytes().startswith(b"\x89PNG")
    results = {1: _steady(_result(study, 1)), 2: _steady(_result(study, 2))}
    _set(results[2], "holitom@0.25", "ttft", [0.1, 0.104])  # 100x: a log axis
    _set(results[1], "holitom@0.25", "ttft", [4.0, 8.0])  # disagreeing repeats at 1 frame
    for result in results.values():
        add_ratios(result["settings"])
    ax = bench_model.summary_figure(results).axes[0]
    assert list(ax.get_xticks()) == [1, 2] and ax.get_xlabel() == "frames"
    assert ax.get_yscale() == "log"
    assert ax.get_legend_handles_labels()[1] == ["dense (= 1)", "holitom@0.25"]
    whiskers = ax.containers[0].lines[2][0].get_segments()
    dense_ttft = results[2]["settings"][0]["timings_ms"]["ttft"]["median"]
    assert sorted(whiskers[1][:, 1]) == pytest.approx([dense_ttft / 0.104, dense_ttft / 0.1])
    assert "TTFT repeats disagree" in ax.figure.get_supxlabel() and "holitom@0.25 @ 1" in \
        ax.figure.get_supxlabel()
    assert ax.get_ylabel() == "TTFT speedup vs dense (median of 2 repeats)"
