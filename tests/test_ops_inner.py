"""merge_inner (algorithm §6): the vectorised merge against the original's sequential rule."""

from __future__ import annotations

import pytest
import torch
from reference_loops import loop_merge_inner

from lmms_holitom.ops import merge_inner, merge_inner_plan

TEXT0 = [7.0, 7.0]
TEXT1 = [-5.0, 1.0]


def _three_token_sequence() -> torch.Tensor:
    # text, three visual tokens h0, h1, h2, text
    return torch.tensor([TEXT0, [4.0, 0.0], [0.0, 8.0], [2.0, 2.0], TEXT1])


def test_merge_formula_on_three_tokens_by_hand():
    hidden = _three_token_sequence()
    attention = torch.tensor([0.1, 0.5, 0.2])
    # keep = round(3 * 0.4) = 1 -> h1 is kept; h0 and h2 (in that order) are merged into it:
    # ((h1 + h0) / 2 + h2) / 2 = h1/4 + h0/4 + h2/2 = [0,2] + [1,0] + [1,1]
    out, keep = merge_inner(hidden, attention, start=1, length=3, ratio=0.6)
    assert keep.tolist() == [0, 2, 4]
    torch.testing.assert_close(out, torch.tensor([TEXT0, [2.0, 3.0], TEXT1]))
    out, _ = merge_inner(hidden, attention, 1, 3, 0.6, fidelity="clean")
    torch.testing.assert_close(out, torch.tensor([TEXT0, [2.0, 10.0 / 3.0], TEXT1]))
    out, keep = merge_inner(hidden, attention, 1, 3, 0.6, mode="drop")
    assert keep.tolist() == [0, 2, 4]
    torch.testing.assert_close(out, torch.tensor([TEXT0, [0.0, 8.0], TEXT1]))


def test_members_go_to_the_most_similar_kept_token():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 0.1], [0.2, 5.0], [1.0, 0.0]])
    attention = torch.tensor([0.9, 0.8, 0.1, 0.1, 0.2])
    # keep round(5 * 0.6) = 3: tokens 0, 1, 4. Token 2 is closest in direction to 0 and 4, which are
    # identical (an exact cosine tie) -> the lower index 0; token 3 -> 1; 4 keeps no member
    out, keep = merge_inner(hidden, attention, 0, 5, 0.4)
    assert keep.tolist() == [0, 1, 4]
    expected = torch.stack([(hidden[0] + hidden[2]) / 2, (hidden[1] + hidden[3]) / 2, hidden[4]])
    torch.testing.assert_close(out, expected)


def test_keep_count_is_half_to_even():
    hidden = torch.randn(12, 4)
    attention = torch.rand(5)
    assert merge_inner(hidden, attention, 3, 5, 0.5)[0].shape[0] == 12 - 5 + 2  # round(2.5) = 2
    attention = torch.rand(7)
    assert merge_inner(hidden, attention, 3, 7, 0.5)[0].shape[0] == 12 - 7 + 4  # round(3.5) = 4


def test_attention_ties_keep_lower_indices():
    hidden = torch.randn(10, 6, generator=torch.Generator().manual_seed(0))
    _, keep = merge_inner(hidden, torch.full((8,), 0.125), 1, 8, 0.5, mode="drop")
    assert keep.tolist() == [0, 1, 2, 3, 4, 9]


def test_nothing_to_merge():
    hidden = torch.randn(6, 3)
    out, keep = merge_inner(hidden, torch.rand(4), 1, 4, 0.0)
    assert torch.equal(out, hidden) and keep.tolist() == list(range(6))
    out, keep = merge_inner(hidden, torch.rand(0), 2, 0, 0.5)
    assert torch.equal(out, hidden) and keep.tolist() == list(range(6))
    # round(1 * 0.5) = 0 kept: the single visual token is dropped (nothing to merge into)
    out, keep = merge_inner(hidden, torch.rand(1), 2, 1, 0.5)
    assert keep.tolist() == [0, 1, 3, 4, 5]
    assert torch.equal(out, hidden[[0, 1, 3, 4, 5]])


@pytest.mark.parametrize(("fidelity", "mode"), [("reference", "merge"), ("clean", "merge"), ("reference", "drop")])
@pytest.mark.parametrize(("L", "start", "length", "ratio"), [(40, 5, 30, 0.5), (64, 0, 64, 0.9), (9, 2, 6, 0.3)])
def test_matches_sequential_loop(fidelity, mode, L, start, length, ratio):
    gen = torch.Generator().manual_seed(L + length)
    hidden = torch.randn(L, 24, generator=gen)
    attention = torch.rand(length, generator=gen)
    out, keep = merge_inner(hidden, attention, start, length, ratio, fidelity=fidelity, mode=mode)
    ref_out, ref_keep = loop_merge_inner(hidden, attention, start, length, ratio, fidelity, mode)
    assert keep.tolist() == ref_keep.tolist()
    torch.testing.assert_close(out, ref_out, rtol=1e-6, atol=1e-6)
    # text outside the run is untouched
    assert torch.equal(out[:start], hidden[:start])
    assert torch.equal(out[out.shape[0] - (L - start - length) :], hidden[start + length :])


def test_large_groups_underflow_harmlessly():
    # one kept token receiving 299 members: weights down to 2^-299 underflow to 0 in fp32 like the loop
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(302, 16, generator=gen)
    attention = torch.rand(300, generator=gen)
    out, keep = merge_inner(hidden, attention, 1, 300, 0.998)
    ref_out, ref_keep = loop_merge_inner(hidden, attention, 1, 300, 0.998)
    assert keep.tolist() == ref_keep.tolist() and out.shape == (3, 16)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref_out, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fidelity", ["reference", "clean"])
def test_low_precision_dtypes(dtype, fidelity):
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(50, 32, generator=gen)
    attention = torch.rand(40, generator=gen)
    ref, ref_keep = merge_inner(hidden, attention, 4, 40, 0.5, fidelity=fidelity)
    out, keep = merge_inner(hidden.to(dtype), attention, 4, 40, 0.5, fidelity=fidelity)
    assert out.dtype == dtype and keep.tolist() == ref_keep.tolist()
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


def test_deterministic():
    gen = torch.Generator().manual_seed(9)
    hidden = torch.randn(80, 16, generator=gen)
    attention = torch.rand(70, generator=gen)
    a = merge_inner(hidden, attention, 5, 70, 0.5)
    b = merge_inner(hidden, attention, 5, 70, 0.5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden": torch.randn(2, 10, 4)}, "hidden must be a 2-D"),
        ({"hidden": torch.ones(10, 4, dtype=torch.long)}, "hidden must have a floating dtype"),
        ({"attention": torch.rand(5)}, r"attention must have shape \(length,\) = \(6,\)"),
        ({"attention": torch.rand(2, 3)}, "attention must be a 1-D"),
        ({"attention": torch.tensor([0.1, 0.2, float("nan"), 0.1, 0.1, 0.1])}, "attention must be finite"),
        ({"start": -1}, "start must be >= 0"),
        ({"start": 5}, "length must be <= 5"),
        ({"length": 11, "attention": torch.rand(11)}, "length must be <= 8"),
        ({"start": 1.5}, "start must be an integer"),
        ({"ratio": 1.0}, r"ratio must be in \[0.0, 1.0\)"),
        ({"ratio": -0.1}, "ratio must be in"),
        ({"ratio": float("nan")}, "ratio must be in"),
        ({"fidelity": "exact"}, "fidelity must be one of"),
        ({"mode": "prune"}, "mode must be one of"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"hidden": torch.randn(10, 4), "attention": torch.rand(6), "start": 2, "length": 6, "ratio": 0.5}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        merge_inner(**args)


@pytest.mark.parametrize("fidelity", ["reference", "clean"])
def test_gemm_path_matches_sequential_loop(monkeypatch, fidelity):
    import lmms_holitom.ops.cluster as cluster

    monkeypatch.setattr(cluster, "_use_index_add", lambda device: False)  # the accelerator code path
    gen = torch.Generator().manual_seed(12)
    hidden = torch.randn(60, 20, generator=gen)
    attention = torch.rand(50, generator=gen)
    out, keep = merge_inner(hidden, attention, 6, 50, 0.7, fidelity=fidelity)
    ref_out, ref_keep = loop_merge_inner(hidden, attention, 6, 50, 0.7, fidelity)
    assert keep.tolist() == ref_keep.tolist()
    torch.testing.assert_close(out, ref_out, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------- the inner plan
@pytest.mark.parametrize(("fidelity", "mode"), [("reference", "merge"), ("clean", "merge"), ("reference", "drop")])
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9])
def test_inner_plan_applies_the_same_merge_to_an_aligned_tensor(fidelity, mode, ratio):
    gen = torch.Generator().manual_seed(3)
    hidden, attention = torch.randn(60, 16, generator=gen), torch.rand(40, generator=gen)
    out, keep, plan = merge_inner_plan(hidden, attention, 12, 40, ratio, fidelity, mode)
    assert torch.equal(plan.keep, keep)
    assert torch.equal(out, merge_inner(hidden, attention, 12, 40, ratio, fidelity, mode)[0])
    if fidelity == "reference":
        assert torch.equal(plan.apply(hidden), out)
    torch.testing.assert_close(plan.apply(hidden), out)
    stream = torch.randn(60, 5, generator=gen)
    ref, ref_keep = loop_merge_inner(hidden, attention, 12, 40, ratio, fidelity, mode, values=stream)
    assert torch.equal(ref_keep, keep)
    torch.testing.assert_close(plan.apply(stream), ref, rtol=1e-5, atol=1e-5)
    if mode == "merge" and ratio > 0:  # every merged row is a mean of the tokens it absorbed
        sums = plan.kept_weight.clone().index_add_(0, plan.group, plan.merged_weight)
        torch.testing.assert_close(sums, torch.ones_like(sums))
