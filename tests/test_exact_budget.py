"""HoliTom's exact budget (docs/algorithm.md §5c): ``budget: exact`` brings the outer merge to F · ceil(r · N) tokens.

Op level: the vectorised reconciliation against its loop formulation (`reference_loops.loop_exact_budget`), the
exact count on random, static and mixed videos (hypothesis), and ``adaptive`` unchanged. The configuration's entry
points (model args / YAML, env var, CLI flags, study run names, records) are checked here too; the model families
in `test_exact_budget_models.py`.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_loops import loop_exact_budget, synthetic_video

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.outer import compress_video
from lmms_holitom.ops import exact_count, fit_to_count, holitom_merge
from lmms_holitom.ops.budget import restore_pick, trim_keep


def _video(kind: str, F: int, N: int, E: int = 8, seed: int = 0, levels: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, attention) of a ``random``, ``static`` (every frame the same) or ``mixed`` video; ``levels > 0``
    quantises the attention to that many values (ties)."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "mixed":
        features, attention = synthetic_video(F, N, E, scenes=max(1, F // 3), static_fraction=0.5, seed=seed)
    else:
        features = torch.randn((F, N, E), generator=gen)
        if kind == "static":
            features = features[:1].expand(F, N, E).clone()
        attention = torch.rand((F, N), generator=gen)
    if levels:
        attention = (attention * levels).floor() / levels
    return features, attention


def _config(**values) -> HoliTomConfig:
    return HoliTomConfig(method="holitom_wo_m", **values)


def _check_invariants(out, features: torch.Tensor, count: int) -> None:
    N = features.shape[1]
    assert out.num_tokens == count == out.plan.num_outputs == out.stats["tokens_out"]
    assert sum(out.plan.frame_counts) == count
    assert bool((out.frames.diff() >= 0).all())  # outputs stay in frame order
    flat = out.frames * N + out.positions
    assert flat.unique().numel() == count  # no origin twice
    torch.testing.assert_close(out.plan.apply(features), out.tokens, atol=1e-5, rtol=1e-5)
    for s, e in out.segments:  # every segment keeps a token (algorithm §12)
        assert bool(((out.frames >= s) & (out.frames <= e)).any())
    kinds = out.kinds.tolist()
    assert out.stats["static_tokens"] == kinds.count(0) and out.stats["restored_tokens"] == kinds.count(3)


# ------------------------------------------------------------------------------------------- the count
def test_the_count_is_the_cost_models_and_the_issue_examples() -> None:
    assert exact_count(32, 196, 0.10) == 640 == HoliTomConfig(retain_ratio=0.10).visual_budget(32, 196)
    assert exact_count(32, 196, 1.0) == 32 * 196 and exact_count(5, 3, 0.01) == 5  # one token per frame at least
    features, attention = _video("static", 32, 196)  # the issue's static video: 196 tokens adaptive, 640 exact
    assert compress_video(features, attention, _config(retain_ratio=0.10)).num_tokens == 196
    assert compress_video(features, attention, _config(retain_ratio=0.10, budget="exact")).num_tokens == 640


# ------------------------------------------------------------------------------------------- against the loop
@pytest.mark.parametrize(("kind", "F", "N", "ratio", "tau", "contextual"), [
    ("static", 6, 12, 0.3, 0.8, 0.0),  # restore: every dense token feeds a static mean
    ("mixed", 9, 16, 0.2, 0.8, 0.0),
    ("mixed", 12, 10, 0.35, 0.8, 0.5),  # contextual clusters too
    ("mixed", 8, 13, 0.45, 0.9, 0.0),
    ("random", 5, 11, 0.3, 0.8, 0.0),  # nothing static: exact == adaptive
    ("static", 4, 9, 1.0, 0.8, 0.0),  # everything back
])
@pytest.mark.parametrize("levels", [0, 3], ids=["distinct", "ties"])
def test_exact_budget_equals_the_loop_formulation(kind, F, N, ratio, tau, contextual, levels) -> None:
    features, attention = _video(kind, F, N, levels=levels, seed=F * N)
    cfg = _config(retain_ratio=ratio, tau=tau, contextual_ratio=contextual, max_window_size=4, budget="exact")
    out = compress_video(features, attention, cfg)
    ref = loop_exact_budget(features, attention, cfg)
    assert out.frames.tolist() == ref["frames"] and out.positions.tolist() == ref["positions"]
    assert out.kinds.tolist() == ref["kinds"]
    torch.testing.assert_close(out.tokens, ref["tokens"], atol=1e-5, rtol=1e-5)
    _check_invariants(out, features, ref["count"])


def test_the_loop_cases_cover_trimming_and_restoring() -> None:
    """The parametrised cases above reconcile in both directions (the test would otherwise prove little)."""
    moves = set()
    for kind, F, N, ratio, contextual in (("static", 6, 12, 0.3, 0.0), ("mixed", 9, 16, 0.2, 0.0),
                                          ("mixed", 12, 10, 0.35, 0.5), ("mixed", 8, 13, 0.45, 0.0)):
        features, attention = _video(kind, F, N, seed=F * N)
        tau = 0.9 if N == 13 else 0.8
        cfg = _config(retain_ratio=ratio, tau=tau, contextual_ratio=contextual, max_window_size=4, budget="exact")
        stats = compress_video(features, attention, cfg).stats
        moves.add("trim" if stats["dropped_tokens"] else "restore" if stats["restored_tokens"] else "none")
    assert {"trim", "restore"} <= moves


# ------------------------------------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["random", "static", "mixed"]),
    F=st.integers(1, 12),
    N=st.integers(1, 24),
    ratio=st.floats(0.01, 1.0),
    tau=st.sampled_from([0.5, 0.8, 0.95, 1.5]),
    contextual=st.sampled_from([0.0, 0.5, 1.0]),
    window=st.integers(1, 6),
    levels=st.sampled_from([0, 2]),
    seed=st.integers(0, 3),
)
def test_exact_count_for_any_video(kind, F, N, ratio, tau, contextual, window, levels, seed) -> None:
    features, attention = _video(kind, F, N, levels=levels, seed=seed)
    values = {"retain_ratio": ratio, "tau": tau, "contextual_ratio": contextual, "max_window_size": window}
    exact = compress_video(features, attention, _config(**values, budget="exact"))
    _check_invariants(exact, features, F * math.ceil(ratio * N))
    adaptive = compress_video(features, attention, _config(**values))
    assert exact.stats["tokens_merged"] == adaptive.num_tokens
    assert exact.stats["dropped_tokens"] == max(0, adaptive.num_tokens - exact.num_tokens)
    assert exact.stats["restored_tokens"] == max(0, exact.num_tokens - adaptive.num_tokens)
    # adaptive is HoliTom's merge itself, untouched (no budget keys, same tokens and origins)
    merged = holitom_merge(features, attention, retain_ratio=ratio, tau=tau, max_window_size=window,
                           contextual_ratio=contextual, knn_k=7, beta=0.6, beta_merge=True)
    assert torch.equal(adaptive.tokens, merged.tokens) and torch.equal(adaptive.frames, merged.frames)
    assert adaptive.stats == {"method": "holitom_wo_m", **merged.stats} and "budget" not in adaptive.stats
    if exact.stats["dropped_tokens"] == exact.stats["restored_tokens"] == 0:  # nothing to reconcile
        assert torch.equal(exact.tokens, adaptive.tokens) and torch.equal(exact.positions, adaptive.positions)


def test_nothing_static_means_nothing_to_reconcile() -> None:
    features, attention = _video("random", 16, 30)
    out = compress_video(features, attention, _config(retain_ratio=0.17, tau=1.5, budget="exact"))
    assert out.stats["dropped_tokens"] == out.stats["restored_tokens"] == 0 and out.num_tokens == 16 * 6


def test_full_holitom_reconciles_its_outer_merge_too() -> None:
    features, attention = _video("mixed", 10, 20)
    cfg = HoliTomConfig(method="holitom", retain_ratio=0.2, merge_layer=2, budget="exact")
    assert compress_video(features, attention, cfg).num_tokens == cfg.visual_budget(10, 20) == 40


# ------------------------------------------------------------------------------------------- the two selections
def test_trim_protects_each_group_and_breaks_ties_low() -> None:
    score = torch.tensor([0.9, 0.8, 0.5, 0.5, 0.1, 0.2, 0.05])
    tier = torch.tensor([0, 0, 0, 0, 0, 0, 1])
    group = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    # each group's best (group 1: a tie, the lower index), then the rest by tier, score, index
    assert trim_keep(score, tier, group, 4).tolist() == [True, False, True, False, False, True, True]
    assert trim_keep(score, tier, group, 5).tolist() == [True, True, True, False, False, True, True]
    assert trim_keep(score, tier, group, 6).tolist() == [True, True, True, True, False, True, True]
    with pytest.raises(ValueError, match=r"count must be in \[4, 7\]"):
        trim_keep(score, tier, group, 3)


def test_restore_prefers_unrepresented_then_saliency() -> None:
    saliency = torch.tensor([0.9, 0.3, 0.3, 0.8, 0.1])
    represented = torch.tensor([True, False, False, True, False])
    taken = torch.tensor([True, False, False, False, False])
    assert restore_pick(saliency, represented, taken, 2).tolist() == [1, 2]
    assert restore_pick(saliency, represented, taken, 4).tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"count must be in \[0, 4\]"):
        restore_pick(saliency, represented, taken, 5)


def test_fit_to_count_rejects_bad_input() -> None:
    features, attention = _video("mixed", 6, 8)
    video = holitom_merge(features, attention, retain_ratio=0.3, tau=0.8, max_window_size=4, contextual_ratio=0.0,
                          knn_k=7, beta=0.6, beta_merge=True)
    with pytest.raises(ValueError, match=r"count must be in \[\d+, 48\]"):
        fit_to_count(video, features, attention, 49)
    with pytest.raises(ValueError, match="kinds"):
        fit_to_count(compress_video(features, attention, HoliTomConfig(method="dense")), features, attention, 8)


# ------------------------------------------------------------------------------------------- entry points
def test_config_values_env_var_and_records() -> None:
    assert HoliTomConfig() == HoliTomConfig(budget="adaptive") and HoliTomConfig().budget == "adaptive"
    assert HoliTomConfig.from_dict({"method": "holitom_wo_m", "budget": " Exact "}).budget == "exact"
    assert HoliTomConfig.from_env({"WRAPPER": "holitom", "HOLITOM_BUDGET": "exact"}).budget == "exact"
    for bad in ("", "fixed", None):
        got = str(bad).strip().lower()
        assert HoliTomConfig.problems({"budget": bad}) == [f"budget must be one of adaptive, exact, got {got!r}"]
    with pytest.raises(ValueError, match=r"^HOLITOM_BUDGET \(budget\): budget must be one of adaptive, exact"):
        HoliTomConfig.from_env({"WRAPPER": "holitom", "HOLITOM_BUDGET": "fixed"})
    # records and manifests (`to_dict`) name the budget only when it is exact; both read back equal
    assert "budget" not in HoliTomConfig().to_dict()
    exact = HoliTomConfig(method="holitom_wo_m", budget="exact")
    assert exact.to_dict()["budget"] == "exact" and HoliTomConfig.from_dict(exact.to_dict()) == exact
    assert HoliTomConfig.from_dict(HoliTomConfig().to_dict()) == HoliTomConfig()


def test_study_runs_name_the_budget_only_when_exact() -> None:
    from lmms_holitom.sweep.config import parse_config

    cfg = parse_config({"name": "t", "model": {"pretrained": "org/m", "max_frames_num": 32}, "tasks": ["videomme"],
                        "runs": [{"grid": {"method": ["holitom_wo_m", "visionzip"], "retain_ratio": [0.1],
                                           "budget": ["adaptive", "exact"]}}]})
    runs = {r.name: r for r in cfg.runs}
    assert sorted(runs) == ["dense", "holitom_wo_m-r0.10-t0.80", "holitom_wo_m-r0.10-t0.80-exact", "visionzip-r0.10"]
    assert runs["holitom_wo_m-r0.10-t0.80-exact"].model_args.endswith("budget=exact")
    assert "budget" not in runs["visionzip-r0.10"].model_args  # VisionZip's count is fixed already


def test_lmms_eval_model_args_take_the_budget(monkeypatch) -> None:
    from lmms_eval.models import get_model

    from lmms_holitom.integrations.lmms_eval.settings import ORIGINAL_ENV_VARS

    for var in ORIGINAL_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    cls = get_model("llava_onevision_holitom")
    lm = cls.create_from_arg_string("pretrained=tiny,method=holitom_wo_m,budget=exact", {"batch_size": 1,
                                                                                          "device": "cpu"})
    assert lm.holitom_config.budget == "exact"
    with pytest.raises(ValueError, match="budget must be one of adaptive, exact, got 'some'"):
        cls.create_from_arg_string("pretrained=tiny,budget=some", {"batch_size": 1, "device": "cpu"})


def test_holitom_run_flag(mp4_clip, capsys) -> None:
    import json

    from lmms_holitom.cli import main

    args = ["run", str(mp4_clip), "-q", "what?", "--method", "holitom_wo_m", "--retain-ratio", "0.3", "--tau=-1",
            "--json", "--max-frames", "4", "--max-new-tokens", "2"]  # tau -1: all static, one segment
    assert main([*args, "--budget", "exact"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["outer_tokens"] == 4 * math.ceil(0.3 * 196) + 1
    assert main([*args]) == 0  # adaptive: r' = 1, the one segment's 196 static tokens and the newline
    assert json.loads(capsys.readouterr().out)["stats"]["outer_tokens"] == 197
    assert main([*args, "--budget", "fixed"]) == 2
    err = capsys.readouterr().err
    assert "--budget: invalid choice: 'fixed'" in err and err.count("\n") == 1


def test_holitom_bench_flag(tmp_path) -> None:
    import json

    from lmms_holitom.bench.settings import build_settings
    from lmms_holitom.cli import main

    settings = build_settings(["holitom_wo_m", "visionzip"], [0.1], 28, budget="exact")
    assert [s.config.budget for s in settings] == ["adaptive", "exact", "adaptive"]
    out = tmp_path / "b.json"
    assert main(["bench", "--shape", "tiny", "--device", "cpu", "--frames", "4", "--methods", "holitom_wo_m",
                 "--retain-ratios", "0.25", "--budget", "exact", "--new-tokens", "2", "--warmup", "0", "--repeats",
                 "1", "--no-probe", "--no-memory", "--json", str(out), "--quiet"]) == 0
    row = json.loads(out.read_text())["settings"][1]
    assert row["config"]["budget"] == "exact" and row["visual_tokens"]["outer"] == 4 * math.ceil(0.25 * 196) + 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["static", "mixed"])
def test_exact_budget_on_cuda_equals_cpu(kind: str) -> None:
    features, attention = _video(kind, 12, 40, E=16, levels=4)
    cfg = _config(retain_ratio=0.2, tau=0.8, contextual_ratio=0.5, budget="exact")
    cpu = compress_video(features, attention, cfg)
    gpu = compress_video(features.cuda(), attention.cuda(), cfg)
    assert torch.equal(gpu.frames.cpu(), cpu.frames) and torch.equal(gpu.positions.cpu(), cpu.positions)
    assert torch.equal(gpu.kinds.cpu(), cpu.kinds) and gpu.plan.frame_counts == cpu.plan.frame_counts
    torch.testing.assert_close(gpu.tokens.cpu(), cpu.tokens, atol=1e-5, rtol=1e-5)
