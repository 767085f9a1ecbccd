"""Inner-LLM merge of one sequence at layer K (algorithm §6.2–§6.4, §6.6).

``merge_inner`` keeps the ``round(length * (1 - ratio))`` visual tokens of the run [start, start+length)
with the highest attention of the last prompt token (ties: lower index), assigns every other visual token
to the kept visual token of highest cosine similarity (fp32, on the input hidden states, computed once;
ties: lower index) and either merges it into that token or drops it:

* ``fidelity="reference"``: the original applies ``h[t] = (h[t] + h[j]) / 2`` for its members j in
  increasing order, i.e. ``h_t / 2^m + sum_i h_{j_i} / 2^(m - i + 1)``. Vectorised: the rank of every
  member within its group (stable sort by group + position in group) gives its weight
  ``2^-(m - rank)``; one grouped sum (`group_sum`) adds the weighted members (fp32; ``2^-m`` underflows to 0
  harmlessly for m > 149);
* ``fidelity="clean"``: the plain mean of t and its members;
* ``mode="drop"`` (FastV): no merge, the other tokens are just dropped.

Text tokens outside the run are kept unchanged; the result is in the input dtype.

`merge_inner_plan` returns the same merge with its `InnerPlan` (kept / merged tokens, groups and the
weights above), so the merge decided on the hidden states can be applied to any aligned (L, E') tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lmms_holitom.ops._checks import check_finite, check_int, check_ratio, check_tensor
from lmms_holitom.ops.cluster import group_sum
from lmms_holitom.ops.plan import InnerPlan

__all__ = ["merge_inner", "merge_inner_plan"]

FIDELITIES = ("reference", "clean")
MODES = ("merge", "drop")


def merge_inner(
    hidden: Tensor,
    attention: Tensor,
    start: int,
    length: int,
    ratio: float,
    fidelity: str = "reference",
    mode: str = "merge",
    *,
    check_finite_attention: bool = True,
) -> tuple[Tensor, Tensor]:
    """Merge (or drop) the least attended visual tokens of one sequence.

    Args:
        hidden: (L, E) input hidden states of layer K for one sequence.
        attention: (length,) attention of the last token over the visual run, finite.
        start: first index of the visual run; ``0 <= start`` and ``start + length <= L``.
        length: number of visual tokens V (including a trailing newline token if the caller counts it).
        ratio: fraction merged away, in [0, 1); ``keep = round(length * (1 - ratio))``.
        fidelity: ``reference`` (sequential-halving rule) or ``clean`` (mean).
        mode: ``merge`` (HoliTom) or ``drop`` (FastV).
        check_finite_attention: reject NaN/inf attention (costs one host sync). The model's decoder passes
            False: its attention row is a softmax it computed itself, and the merge then runs without any
            device-to-host synchronisation.

    Returns:
        ``(hidden_out, keep)``: (L', E) in hidden's dtype with ``L' = L - length + keep``; (L',) long
        original indices of the kept rows, increasing (text, kept visual, text).

    Raises:
        ValueError: wrong ranks/shapes, run outside ``hidden``, attention length mismatch, non-finite
            attention, ratio outside [0, 1), unknown fidelity/mode.
    """
    out, keep, _ = merge_inner_plan(
        hidden, attention, start, length, ratio, fidelity, mode, check_finite_attention=check_finite_attention
    )
    return out, keep


def merge_inner_plan(
    hidden: Tensor,
    attention: Tensor,
    start: int,
    length: int,
    ratio: float,
    fidelity: str = "reference",
    mode: str = "merge",
    *,
    check_finite_attention: bool = True,
) -> tuple[Tensor, Tensor, InnerPlan]:
    """`merge_inner` and its `InnerPlan`: ``(hidden_out, keep, plan)``, ``plan.apply(hidden)`` equal to
    ``hidden_out`` (bit for bit with ``reference`` fidelity, to rounding with ``clean``)."""
    check_tensor("hidden", hidden, 2)
    L = hidden.shape[0]
    start = check_int("start", start, minimum=0, maximum=L)
    length = check_int("length", length, minimum=0, maximum=L - start)
    check_tensor("attention", attention, 1)
    if attention.shape[0] != length:
        raise ValueError(f"attention must have shape (length,) = ({length},), got {tuple(attention.shape)}")
    if check_finite_attention:
        check_finite("attention", attention)
    ratio = check_ratio("ratio", ratio, low=0.0, high=1.0, high_open=True)
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity must be one of {', '.join(FIDELITIES)}, got {fidelity!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")

    device = hidden.device
    n_keep = round(length * (1 - ratio))
    none = torch.zeros(0, dtype=torch.long, device=device)
    if n_keep == length:
        every = torch.arange(L, device=device)
        ones = torch.ones(length, dtype=torch.float32, device=device)
        run_all = torch.arange(length, device=device)
        return hidden, every, InnerPlan(every, start, run_all, none, none, ones, none.float())

    order = torch.sort(attention.to(device).float(), descending=True, stable=True).indices
    kept = torch.sort(order[:n_keep]).values  # (k,) run-relative, increasing
    keep = torch.cat(
        [
            torch.arange(start, device=device),
            kept + start,
            torch.arange(start + length, L, device=device),
        ]
    )
    if mode == "drop" or n_keep == 0:
        ones = torch.ones(n_keep, dtype=torch.float32, device=device)
        return hidden.index_select(0, keep), keep, InnerPlan(keep, start, kept, none, none, ones, none.float())

    merged_away = torch.sort(order[n_keep:]).values  # (m_total,) increasing
    run = hidden[start : start + length]
    h_keep = run.index_select(0, kept).float()
    h_merge = run.index_select(0, merged_away).float()
    norms_keep = torch.linalg.vector_norm(h_keep, dim=-1)
    norms_merge = torch.linalg.vector_norm(h_merge, dim=-1)
    cos = (h_merge @ h_keep.T) / (norms_merge.unsqueeze(1) * norms_keep.unsqueeze(0)).clamp_min(1e-8)
    group = cos.argmax(dim=1)  # (m_total,) index into kept; ties -> lower index
    members = torch.zeros(n_keep, dtype=torch.long, device=device)
    members.scatter_add_(0, group, torch.ones_like(group))  # m per kept token (bincount would sync)

    if fidelity == "clean":
        acc = (h_keep + group_sum(h_merge, group, n_keep)) / (members + 1).unsqueeze(1)
        kept_weight = 1.0 / (members + 1).to(torch.float32)
        weight = kept_weight.index_select(0, group)
    else:
        # rank of every merged token within its group, by increasing original index
        by_group = torch.sort(group, stable=True).indices
        group_sorted = group[by_group]
        first_in_group = torch.cumsum(members, 0) - members  # (k,)
        rank_sorted = torch.arange(group.shape[0], device=device) - first_in_group[group_sorted]
        rank = torch.empty_like(rank_sorted).scatter_(0, by_group, rank_sorted)
        weight = torch.exp2(-(members[group] - rank).to(torch.float32))  # 2^-(m - rank), rank from 0
        kept_weight = torch.exp2(-members.to(torch.float32))
        acc = h_keep * kept_weight.unsqueeze(1)
        acc += group_sum(h_merge, group, n_keep, weight)

    out = hidden.index_select(0, keep)
    out[start : start + n_keep] = acc.to(hidden.dtype)
    return out, keep, InnerPlan(keep, start, kept, merged_away, group, kept_weight, weight)
