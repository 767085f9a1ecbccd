"""The merge plan of an outer merge: a sparse (M x F·N) matrix applicable to any aligned tensor.

Every output token of an outer merge is a linear combination of dense tokens (HoliTom static: the mean
over the segment's frames, then the cluster merge; dominant: a selection; contextual: the cluster merge
within a frame; VisionZip contextual: ``target + mean(members)``; dense / FastV: the identity). The plan
stores that matrix as ``(target, source, weight)`` triples sorted by ``(target, source)``, so applying it
to a second stream aligned with the features (same (F, N) grid, any width) is one ``embedding_bag``:
vectorised, deterministic on every device (one bag per output row, summed in order), fp32
accumulation, no host synchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from lmms_holitom.ops.cluster import group_sum

__all__ = ["InnerPlan", "MergePlan"]


@dataclass(frozen=True)
class MergePlan:
    """Which dense tokens make each output token, with what weights, and each output's origin.

    Attributes:
        frames, tokens_per_frame: F and N of the dense grid.
        target: (K,) long output row 0..M-1 of each entry, non-decreasing.
        source: (K,) long flat dense index ``f * N + n`` of each entry (increasing within a row).
        weight: (K,) fp32 weight of each entry.
        origin_frame: (M,) long frame of each output token (static tokens: their segment's first frame).
        origin_position: (M,) long spatial index 0..N-1 (cluster tokens: their centre's position).
        frame_counts: host-side output tokens per frame (len F; outputs are in frame order).
        num_outputs: M.
        offsets: (M,) long index of each output row's first entry (rows are contiguous runs).
        is_identity: the plan is ``x.reshape(F * N, E')`` (dense / FastV); `apply` returns that view.
    """

    frames: int
    tokens_per_frame: int
    target: Tensor
    source: Tensor
    weight: Tensor
    origin_frame: Tensor
    origin_position: Tensor
    frame_counts: tuple[int, ...]
    num_outputs: int
    offsets: Tensor = field(repr=False)
    is_identity: bool = False

    # ------------------------------------------------------------------------------------- building
    @classmethod
    def identity(cls, frames: int, tokens_per_frame: int, device: torch.device) -> MergePlan:
        """The plan of no merge: output row ``f * N + n`` is dense token (f, n)."""
        total = frames * tokens_per_frame
        every = torch.arange(total, device=device)
        return cls(
            frames=frames,
            tokens_per_frame=tokens_per_frame,
            target=every,
            source=every,
            weight=torch.ones(total, dtype=torch.float32, device=device),
            origin_frame=torch.arange(frames, device=device).repeat_interleave(tokens_per_frame),
            origin_position=torch.arange(tokens_per_frame, device=device).repeat(frames),
            frame_counts=(tokens_per_frame,) * frames,
            num_outputs=total,
            offsets=every,
            is_identity=True,
        )

    @classmethod
    def from_entries(
        cls,
        frames: int,
        tokens_per_frame: int,
        entries: list[tuple[Tensor, Tensor, Tensor]],
        origin_frame: Tensor,
        origin_position: Tensor,
        frame_counts: list[int],
    ) -> MergePlan:
        """A plan from unordered ``(target, source, weight)`` parts (each source used at most once per
        target): one sort by ``(target, source)`` puts them in canonical order, one ``searchsorted``
        finds each row's first entry. No host synchronisation."""
        M = int(origin_frame.shape[0])
        target = torch.cat([t for t, _, _ in entries])
        source = torch.cat([s for _, s, _ in entries])
        weight = torch.cat([w.to(torch.float32) for _, _, w in entries])
        order = torch.sort(target * (frames * tokens_per_frame) + source).indices
        target, source, weight = target[order], source[order], weight[order]
        offsets = torch.searchsorted(target, torch.arange(M, device=target.device))
        return cls(
            frames=frames,
            tokens_per_frame=tokens_per_frame,
            target=target,
            source=source,
            weight=weight,
            origin_frame=origin_frame,
            origin_position=origin_position,
            frame_counts=tuple(int(c) for c in frame_counts),
            num_outputs=M,
            offsets=offsets,
        )

    # ------------------------------------------------------------------------------------- use
    def _rows(self, x: Tensor, name: str) -> Tensor:
        F, N = self.frames, self.tokens_per_frame
        if not isinstance(x, Tensor) or x.dim() < 1:
            raise ValueError(f"{name} must be a tensor aligned with the ({F}, {N}) token grid, got {type(x).__name__}")
        if x.dim() >= 2 and tuple(x.shape[:2]) == (F, N):
            return x.reshape(F * N, *x.shape[2:])
        if x.shape[0] == F * N:
            return x
        raise ValueError(
            f"{name} must have shape (F, N, ...) = ({F}, {N}, ...) or (F*N, ...) = ({F * N}, ...), "
            f"got {tuple(x.shape)}"
        )

    def apply(self, x: Tensor) -> Tensor:
        """The merge applied to a tensor aligned with the features.

        Args:
            x: (F, N, E') or (F*N, E') floating, any width E' (features, a second feature stream, ...).

        Returns:
            (M, E') in x.dtype: ``out[m] = sum_k weight[k] * x[source[k]]`` over the entries of row m,
            accumulated in fp32 (fp64 for fp64 input). The identity plan returns a view of x.
        """
        rows = self._rows(x, "x")
        if rows.dim() != 2 or not rows.is_floating_point():
            raise ValueError(f"x must be a floating (F, N, E') or (F*N, E') tensor, got {x.dtype} {tuple(x.shape)}")
        if self.is_identity:
            return rows
        device = rows.device
        source, weight, offsets = (t.to(device, non_blocking=True) for t in (self.source, self.weight, self.offsets))
        if rows.dtype in (torch.float32, torch.float64):
            table, index = rows, source  # embedding_bag reads the rows in place
        else:  # fp16 / bf16: gather the rows used, in fp32, so the weights and sums are fp32
            table, index = rows.index_select(0, source).float(), torch.arange(source.shape[0], device=device)
        out = torch.nn.functional.embedding_bag(
            index, table, offsets, mode="sum", per_sample_weights=weight.to(table.dtype)
        )
        return out.to(x.dtype)

    def take(self, x: Tensor) -> Tensor:
        """The value of x at each output token's origin (for tensors that are not averaged, e.g.
        position ids): x (F, N, ...) or (F*N, ...) -> (M, ...)."""
        rows = self._rows(x, "x")
        flat = self.origin_frame * self.tokens_per_frame + self.origin_position
        return rows.index_select(0, flat.to(rows.device))

    def origins(self) -> Tensor:
        """(M, 2) long ``(frame, spatial index)`` of every output token."""
        return torch.stack([self.origin_frame, self.origin_position], dim=1)

    def dense(self) -> Tensor:
        """The plan as a dense (M, F*N) fp32 matrix (for tests and inspection; memory M*F*N)."""
        total = self.frames * self.tokens_per_frame
        out = torch.zeros((self.num_outputs, total), dtype=torch.float32, device=self.target.device)
        return out.index_put_((self.target, self.source), self.weight, accumulate=True)


@dataclass(frozen=True)
class InnerPlan:
    """The inner merge of one sequence (`inner.merge_inner_plan`) as a plan for aligned (L, E') tensors.

    Attributes:
        keep: (L',) long original rows kept, increasing (text, kept visual, text).
        start: first row of the visual run; ``kept`` lands at rows ``start .. start + k - 1`` of the output.
        kept: (k,) long run-relative kept visual tokens, increasing.
        merged: (m,) long run-relative tokens merged away, increasing (empty for ``drop``).
        group: (m,) long index into ``kept`` of the token each merged token joined.
        kept_weight: (k,) fp32 weight of each kept token in its own row (1 when nothing is merged).
        merged_weight: (m,) fp32 weight of each merged token in its group's row. Reference fidelity:
            ``2^-m`` for the kept token and ``2^-(m - rank)`` for its members (the sequential halving);
            clean: ``1 / (m + 1)`` for all.
    """

    keep: Tensor
    start: int
    kept: Tensor
    merged: Tensor
    group: Tensor
    kept_weight: Tensor
    merged_weight: Tensor

    def apply(self, x: Tensor) -> Tensor:
        """(L, E') aligned with the sequence -> (L', E') in x.dtype, fp32 arithmetic; no host sync."""
        out = x.index_select(0, self.keep.to(x.device))
        if self.merged.numel() == 0:
            return out
        run = x[self.start :]
        acc = run.index_select(0, self.kept).float() * self.kept_weight.unsqueeze(1)
        acc += group_sum(run.index_select(0, self.merged), self.group, acc.shape[0], self.merged_weight)
        out[self.start : self.start + acc.shape[0]] = acc.to(x.dtype)
        return out
