"""Splice a compressed visual run into the prompt (docs/algorithm.md §5): placeholders out, visual tokens in.

A prompt holds one or more runs of video placeholder ids (LLaVA: one run; Qwen3-VL: one run per temporal group).
The adapter says how many compressed tokens go into each run (`VisualRun.run_lengths`); text rows are kept in
order. Index arithmetic is done once on the host from the placeholder rows (one copy of a (P,) index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Spliced", "VisualRun", "placeholder_runs", "splice"]


@dataclass(frozen=True)
class VisualRun:
    """The visual tokens of one video as the adapter lays them out, ready to splice.

    Attributes:
        tokens: (V, E) visual tokens in sequence order (newlines included).
        origins: (V, 2) long ``(frame, spatial index)`` of each token; ``(-1, -1)`` for a newline.
        run_lengths: tokens per placeholder run, in order (sum = V).
        dense_rows: (V,) long, index into the dense placeholder rows of the row whose position each token takes
            (used by position-preserving adapters), or None.
        streams: further (V, E') tensors aligned with ``tokens`` (Qwen3-VL's deepstack), compressed the same way.
    """

    tokens: torch.Tensor
    origins: torch.Tensor
    run_lengths: tuple[int, ...]
    dense_rows: torch.Tensor | None = None
    streams: tuple[torch.Tensor, ...] = ()


@dataclass(frozen=True)
class Spliced:
    """The sequence entering the decoder.

    Attributes:
        embeds: (1, L', E).
        attention_mask: (1, L') padding mask, or None.
        visual_rows: (V,) long rows of the visual tokens (device of ``embeds``).
        source_rows: (L',) long, the dense row each row takes its position from (text: itself; visual: its
            ``dense_rows`` placeholder), or None when the run has no ``dense_rows``.
        visual_start / visual_stop: the first visual row and one past the last (host ints).
        removed: L - L', tokens the outer merge removed.
    """

    embeds: torch.Tensor
    attention_mask: torch.Tensor | None
    visual_rows: torch.Tensor
    source_rows: torch.Tensor | None
    visual_start: int
    visual_stop: int
    removed: int

    @property
    def contiguous(self) -> bool:
        """True when the visual rows form one run [visual_start, visual_stop)."""
        return self.visual_stop - self.visual_start == int(self.visual_rows.shape[0])


def placeholder_runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs ``(start, length)`` of consecutive row indices in the increasing ``rows``."""
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [rows.size]])
    return [(int(rows[a]), int(b - a)) for a, b in zip(starts, stops)]


def splice(
    embeds: torch.Tensor,
    placeholder_mask: torch.Tensor,
    expected_runs: tuple[int, ...],
    run: VisualRun,
    attention_mask: torch.Tensor | None = None,
) -> Spliced:
    """Replace the placeholder runs of ``embeds`` by the visual run's tokens.

    Args:
        embeds: (1, L, E) text embeddings with placeholder rows.
        placeholder_mask: (L,) bool, True at the video placeholder rows.
        expected_runs: dense placeholder count of each run (the adapter's layout), checked against the prompt.
        run: the compressed visual run; ``run.run_lengths`` has one entry per placeholder run.
        attention_mask: (1, L) padding mask or None; a visual token takes its run's first mask value.

    Raises:
        ValueError: the prompt's placeholder runs differ from ``expected_runs``.
    """
    rows = placeholder_mask.nonzero().flatten().cpu().numpy()
    runs = placeholder_runs(rows)
    found = tuple(n for _, n in runs)
    if found != tuple(expected_runs):
        raise ValueError(
            f"Video features and video tokens do not match: the prompt has placeholder runs {list(found)[:8]} "
            f"(total {rows.size}), the video needs {list(expected_runs)[:8]} (total {sum(expected_runs)}); "
            "build the prompt with the model's processor (one video per prompt)"
        )
    if len(run.run_lengths) != len(runs):
        raise ValueError(f"the visual run has {len(run.run_lengths)} parts for {len(runs)} placeholder runs")
    L = embeds.shape[1]
    pieces, visual = [], []
    cursor, offset = 0, L  # visual token v sits at index L + v of the concatenation [embeds rows, tokens]
    new_pos = 0
    for (start, dense), n in zip(runs, run.run_lengths):
        pieces.append(np.arange(cursor, start))
        new_pos += start - cursor
        pieces.append(np.arange(offset, offset + n))
        visual.append(np.arange(new_pos, new_pos + n))
        new_pos += n
        offset += n
        cursor = start + dense
    pieces.append(np.arange(cursor, L))
    index_host = np.concatenate(pieces).astype(np.int64)
    index = torch.as_tensor(index_host).to(embeds.device, non_blocking=True)
    tokens = run.tokens.to(embeds.device, embeds.dtype)
    out = torch.cat([embeds[0], tokens]).index_select(0, index).unsqueeze(0)
    mask = None
    if attention_mask is not None:
        run_mask = attention_mask[0, torch.as_tensor([s for s, _ in runs], device=attention_mask.device)]
        fill = run_mask.repeat_interleave(torch.as_tensor(run.run_lengths, device=attention_mask.device))
        mask = torch.cat([attention_mask[0], fill]).index_select(0, index.to(attention_mask.device)).unsqueeze(0)
    source = None
    if run.dense_rows is not None:
        dense_rows = torch.as_tensor(rows, device=embeds.device)[run.dense_rows.to(embeds.device)]
        source = torch.cat([torch.arange(L, device=embeds.device), dense_rows]).index_select(0, index)
    visual_rows_host = np.concatenate(visual) if visual else np.zeros(0, np.int64)
    first = int(visual_rows_host[0]) if visual_rows_host.size else 0
    last = int(visual_rows_host[-1]) + 1 if visual_rows_host.size else 0
    return Spliced(
        embeds=out,
        attention_mask=mask,
        visual_rows=torch.as_tensor(visual_rows_host).to(embeds.device),
        source_rows=source,
        visual_start=first,
        visual_stop=last,
        removed=L - int(index_host.size),
    )
