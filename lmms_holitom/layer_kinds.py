"""Decoder layer kinds and the merge layers they allow (docs/algorithm.md §6.7), without torch: the engine
(`lmms_holitom.hf.decoder`, `lmms_holitom.hf.model`) and the cost model (`lmms_holitom.flops`, ``holitom flops``) read
the rule from here.

A decoder's layers are ``full_attention`` or ``linear_attention`` (transformers' ``config.layer_types`` values).
The inner merge at layer K ranks the visual tokens by the attention row of layer K-1, so K-1 must be full attention.
"""

from __future__ import annotations

from lmms_holitom.config import DEFAULTS

__all__ = [
    "FULL_ATTENTION",
    "LAYER_KINDS",
    "LINEAR_ATTENTION",
    "check_merge_layer",
    "default_merge_layer",
    "default_merge_layer_of",
    "merge_layers",
    "nearest_merge_layer",
]

#: the decoder layer kinds HoliTom runs (transformers' ``config.layer_types`` values)
FULL_ATTENTION, LINEAR_ATTENTION = "full_attention", "linear_attention"
LAYER_KINDS = (FULL_ATTENTION, LINEAR_ATTENTION)
_PAPER_MERGE_LAYER, _PAPER_LAYERS = DEFAULTS["merge_layer"], 28  # K = 18 of LLaVA-OV-7B's 28 layers


def merge_layers(types: tuple[str, ...]) -> tuple[int, ...]:
    """The merge layers K a decoder with these layer kinds takes: 1 <= K < n with layer K-1 full attention (its
    attention row of the last prompt token ranks the visual tokens; a linear-attention layer has none)."""
    return tuple(k for k in range(1, len(types)) if types[k - 1] == FULL_ATTENTION)


def check_merge_layer(layer: int, types: tuple[str, ...]) -> None:
    """Raise a one-line ValueError when ``layer`` is not a merge layer of a decoder with these layer kinds."""
    n = len(types)
    if not 1 <= layer < n:
        raise ValueError(f"merge_layer must be in [1, {n - 1}], got {layer}")
    if types[layer - 1] != FULL_ATTENTION:
        allowed = ", ".join(map(str, merge_layers(types))) or "none"
        raise ValueError(
            f"merge_layer must follow a full-attention layer (layer K-1 supplies the attention row); this "
            f"decoder's layer {layer - 1} is {types[layer - 1]}: choose one of {allowed}, got {layer}"
        )


def default_merge_layer(num_layers: int) -> int:
    """``merge_layer`` 18 (the paper's, of 28 layers) when the decoder has more than 18 layers; otherwise the same
    relative depth, ``round(18 * num_layers / 28)`` clamped to [1, num_layers - 1]."""
    if num_layers > _PAPER_MERGE_LAYER:
        return _PAPER_MERGE_LAYER
    return max(1, min(num_layers - 1, round(_PAPER_MERGE_LAYER * num_layers / _PAPER_LAYERS)))


def default_merge_layer_of(types: tuple[str, ...]) -> int | None:
    """`default_merge_layer` of a decoder with these layer kinds, moved to the nearest layer it takes
    (`merge_layers`: layer K-1 full attention); a tie goes to the one nearer the paper's relative depth
    (18/28 of the layers). None: the decoder takes no merge layer."""
    allowed = merge_layers(types)
    if not allowed:
        return None
    n = len(types)
    paper, relative = default_merge_layer(n), _PAPER_MERGE_LAYER * n / _PAPER_LAYERS
    return min(allowed, key=lambda k: (abs(k - paper), abs(k - relative)))


def nearest_merge_layer(target: int, allowed: tuple[int, ...] | list[int]) -> int | None:
    """The allowed merge layer nearest ``target`` (a tie: the deeper one, as `bench.settings` moves K), None if none:
    where a method's own default K (FastV's 2) moves on a decoder that cannot take it."""
    return min(allowed, key=lambda k: (abs(k - target), -k), default=None)
