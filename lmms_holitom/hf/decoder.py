"""The language-model forward of HoliTom: an explicit loop over the decoder layers of a transformers decoder.

This loop mirrors ``Qwen2Model.forward`` of transformers (the same for Llama, Qwen2.5-VL's and Qwen3-VL's text
models: rotary embedding once, a causal mask, the layers, the final norm), checked against transformers 5.24 and 5.25
(the range is `lmms_holitom.compat`; ``tests/test_transformers_mirror.py`` compares it with the installed stock text
models bit for bit); it is the one place in the package that mirrors it. It runs the stock module's own submodules
(``embed_tokens`` is applied by the caller; ``layers``, ``rotary_emb``, ``norm`` here) — nothing is monkeypatched —
and adds what the stock forward cannot do:

* **inner-LLM merge at layer K** (docs/algorithm.md §6, prefill only): before layer K-1 runs, the attention row
  of the last prompt token is computed from that layer's q/k (`attention.last_token_attention`); at the input
  of layer K, `lmms_holitom.ops.merge_inner` merges (HoliTom) or drops (FastV) the least-attended visual tokens.
  Layers < K see (and cache) the full sequence, layers >= K a shorter one; kept tokens keep their ORIGINAL position
  ids (RoPE positions with gaps); each layer group gets a causal mask sized to its own cache.
* **reference quirk** (docs/algorithm.md §6.5, ``fidelity: reference``): during prefill layer K-1 runs without
  the causal mask among the prompt tokens (every prompt token sees every prompt token); ``fidelity: clean`` keeps it
  causal. Applied to FastV as well (same step, §6.6).
* **decoding** from a cache whose layers hold different lengths: positions continue from the prefill
  (``next_position + tokens decoded so far``, read from the cache of layer 0), not from ``generate``'s counter
  (which counts the un-shortened prompt); masks per layer group. Position ids are (1, L) for 1-D RoPE or
  (3, 1, L) for M-RoPE alike: the rotary embedding turns either into per-token ``(cos, sin)``.
* **visual residuals** (Qwen3-VL's deepstack): tensors added at the visual rows after given layers, before the
  inner step.

Prompt vs continuation (uncached recompute). A prefill may carry tokens after the prompt (``prompt_length <
L``): e.g. prompt + the tokens generated so far, recomputed without a cache. Those tail tokens are causal
everywhere (also at layer K-1 under ``reference``), are never merged, and the merge saliency is the attention
of the LAST PROMPT token (index ``prompt_length - 1``) — so one uncached forward over prompt + generated tokens
gives the same logits as cached decoding.

Layer kinds (``config.layer_types``): ``full_attention`` layers (keys and values per token, a causal mask sized to
their cache) and ``linear_attention`` layers (a convolution state and a recurrent state, the 2-D padding mask or
None) — hybrid decoders such as Gated DeltaNet + attention. Each layer gets the mask of its kind; the cache
(`HoliTomCache`, built from the config) holds the matching state kind per layer. Linear-attention layers >= K run
on the shortened sequence from the start, so their states are those of the shortened sequence; layers < K hold
the full one. The inner step needs layer K-1 to be full attention (`merge_layers`, docs/algorithm.md §6.7).

Limitations: batch size 1; full- and linear-attention layers only (no sliding-window layers); a `DynamicCache`
(the engine's `HoliTomCache`); ``output_hidden_states``/``output_attentions`` are not collected on this path.

Over 300 lines on purpose: the one mirror of transformers' decoder forward, prefill and decoding side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask

from lmms_holitom.core.state import PrefillState
from lmms_holitom.hf.attention import last_token_attention
from lmms_holitom.layer_kinds import FULL_ATTENTION, LAYER_KINDS, LINEAR_ATTENTION, check_merge_layer, merge_layers

__all__ = [
    "FULL_ATTENTION",
    "LINEAR_ATTENTION",
    "DecoderOutput",
    "InnerMergeSpec",
    "VisualResidual",
    "check_language_model",
    "check_merge_layer",
    "decode_decoder",
    "layer_types",
    "merge_layers",
    "prefill_decoder",
]

def layer_types(config: Any) -> tuple[str, ...]:
    """The kind of each decoder layer: ``config.layer_types``, or all ``full_attention`` when it has none."""
    n = int(config.num_hidden_layers)
    return tuple(getattr(config, "layer_types", None) or (FULL_ATTENTION,) * n)[:n]


@dataclass(frozen=True)
class InnerMergeSpec:
    """Where and how the inner-LLM step happens (docs/algorithm.md §6).

    Attributes:
        layer: K, the first decoder layer that sees the reduced sequence (1 <= K < num layers).
        ratio: fraction of the visual run merged/dropped; ``round(V * (1 - ratio))`` visual tokens are kept.
        mode: ``merge`` (HoliTom) or ``drop`` (FastV).
        fidelity: ``reference`` (non-causal layer K-1 during prefill, sequential-halving merge) or ``clean``.
        visual_start: index a of the first visual token (in the sequence entering the LLM).
        visual_length: V, visual tokens incl. newlines.
        rows: (V,) long increasing rows of the visual tokens when they do not form one run [a, a + V) (Qwen3-VL:
            one run per temporal group, timestamps between), else None.
        visual_stop: one past the last visual row (with ``rows``).
    """

    layer: int
    ratio: float
    mode: str
    fidelity: str
    visual_start: int
    visual_length: int
    rows: torch.Tensor | None = None
    visual_stop: int | None = None

    @property
    def kept_visual(self) -> int:
        return round(self.visual_length * (1 - self.ratio))

    @property
    def last_row(self) -> int:
        """Row of the last visual token."""
        return self.visual_start + self.visual_length - 1 if self.visual_stop is None else self.visual_stop - 1


def merge_rows(
    hidden: torch.Tensor, attention: torch.Tensor, spec: InnerMergeSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """`ops.merge_inner` on visual tokens at arbitrary rows: (L, E) -> (L', E) and the kept rows (L',).

    The visual rows are gathered into one run, merged there, and written back between the untouched text rows;
    index arithmetic only (no host sync), equal to `merge_inner` when the rows are contiguous.
    """
    from lmms_holitom.ops import merge_inner

    rows = spec.rows.to(hidden.device)
    run, kept = merge_inner(
        hidden.index_select(0, rows), attention, 0, spec.visual_length, spec.ratio, fidelity=spec.fidelity,
        mode=spec.mode, check_finite_attention=False,
    )
    length = hidden.shape[0]
    dropped = torch.ones(spec.visual_length, dtype=torch.bool, device=hidden.device).index_fill_(0, kept, False)
    order = torch.where(
        torch.zeros(length, dtype=torch.bool, device=hidden.device).index_put_((rows,), dropped),
        length, torch.arange(length, device=hidden.device),
    )
    keep = torch.sort(order).values[: length - spec.visual_length + spec.kept_visual]
    out = hidden.index_select(0, keep)
    out.index_copy_(0, torch.searchsorted(keep, rows.index_select(0, kept)), run)
    return out, keep


@dataclass
class DecoderOutput:
    """Result of `prefill_decoder`.

    Attributes:
        last_hidden_state: (1, L_out, E) after the final norm; L_out = L - (V - kept) with an inner step.
        keep: (L_out,) long, indices (into the input sequence) of the tokens layers >= K saw; None without
            an inner step.
        attention_row: (V,) fp32, attention of the last prompt token over the visual run at layer K-1.
    """

    last_hidden_state: torch.Tensor
    keep: torch.Tensor | None = None
    attention_row: torch.Tensor | None = None


@dataclass(frozen=True)
class VisualResidual:
    """A tensor added to the hidden states at the visual rows after one decoder layer (Qwen3-VL's deepstack).

    Attributes:
        layer: the decoder layer after which it is added (before the inner step's layer K).
        rows: (M,) long, the sequence rows of the visual tokens.
        values: (M, E) added to those rows.
    """

    layer: int
    rows: torch.Tensor
    values: torch.Tensor


def check_language_model(language_model: nn.Module, cache: Cache | None) -> None:
    """Raise a clear error when the decoder or cache is outside what this forward supports."""
    types = layer_types(language_model.config)
    if any(t not in LAYER_KINDS for t in types):
        raise NotImplementedError(
            f"HoliTom's decoder forward supports {' and '.join(LAYER_KINDS)} layers; this model has layer types "
            f"{sorted(set(types))}"
        )
    if cache is not None and not isinstance(cache, DynamicCache):
        raise NotImplementedError(
            f"HoliTom needs a DynamicCache (layers hold different lengths after the inner merge and the prompt "
            f"is shortened inside the model); got {type(cache).__name__}. Do not set cache_implementation."
        )


def _prompt_block(prompt_length: int) -> Callable[..., Any]:
    """Mask function: prompt tokens attend to all prompt tokens (union with the causal mask)."""

    def inner(batch_idx: Any, head_idx: Any, q_idx: Any, kv_idx: Any) -> Any:
        return (q_idx < prompt_length) & (kv_idx < prompt_length)

    return inner


def _noncausal_mask(
    config: Any, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None, prompt_length: int
) -> tuple[Any, dict[str, Any]]:
    """Mask (and extra attention kwargs) of layer K-1 under the reference quirk, for a prefill from an empty
    cache: bidirectional among the first ``prompt_length`` tokens, causal for the tail."""
    if inputs_embeds.shape[1] == prompt_length:
        mask = create_bidirectional_mask(config=config, inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return mask, {"is_causal": False}
    if config._attn_implementation.startswith("flash"):
        raise NotImplementedError(
            "an uncached recompute with continuation tokens under fidelity 'reference' needs a mask function; "
            "flash attention takes none (use sdpa/eager, or fidelity 'clean')"
        )
    mask = create_causal_mask(
        config=config,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        cache=None,
        position_ids=None,
        or_mask_function=_prompt_block(prompt_length),
    )
    return mask, {}


def _check_inner(inner: InnerMergeSpec, types: tuple[str, ...], prompt_length: int, residuals: tuple) -> None:
    """Reject an inner step the sequence cannot take (layer range and kind, video after the last prompt token, a
    visual residual that would be added after the merge)."""
    check_merge_layer(inner.layer, types)
    if prompt_length - 1 <= inner.last_row:
        raise ValueError(
            "the inner merge needs the last prompt token after the video (its attention ranks the visual tokens); "
            f"the visual run is [{inner.visual_start}, {inner.last_row + 1}) but the prompt ends at {prompt_length}"
        )
    late = [r.layer for r in residuals if r.layer >= inner.layer]  # added after layer K-1: before the merge
    if late:
        raise ValueError(
            f"merge_layer {inner.layer} would merge visual tokens before the visual residual of layer {max(late)} "
            f"is added; choose merge_layer >= {max(late) + 1}"
        )


def _merge(
    hidden: torch.Tensor, attention_row: torch.Tensor, inner: InnerMergeSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inner step on one sequence (L, E): (L'', E) and the kept rows (L'',), on hidden's device."""
    from lmms_holitom.ops import merge_inner

    if inner.rows is not None:
        merged, keep = merge_rows(hidden, attention_row, inner)
    else:
        merged, keep = merge_inner(
            hidden, attention_row, inner.visual_start, inner.visual_length, inner.ratio, fidelity=inner.fidelity,
            mode=inner.mode, check_finite_attention=False,
        )
    return merged, keep.to(hidden.device)


def _layer_masks(
    config: Any, types: tuple[str, ...], start: int, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
    cache: Cache | None,
) -> dict[str, Any]:
    """The mask of each layer kind for layers ``start..``: full attention a causal mask sized to the cache of the
    first such layer; linear attention the 2-D padding mask (None: no padding), as transformers' recurrent mask of
    a prefill (the caller passes None for a mask without padding)."""
    masks: dict[str, Any] = {LINEAR_ATTENTION: attention_mask}
    full = next((i for i in range(start, len(types)) if types[i] == FULL_ATTENTION), None)
    if full is not None:
        masks[FULL_ATTENTION] = create_causal_mask(
            config=config, inputs_embeds=hidden, attention_mask=attention_mask, cache=cache, position_ids=None,
            layer_idx=full,
        )
    return masks


def prefill_decoder(
    language_model: nn.Module,
    inputs_embeds: torch.Tensor,
    *,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    prompt_length: int,
    cache: Cache | None,
    use_cache: bool,
    inner: InnerMergeSpec | None = None,
    residuals: tuple[VisualResidual, ...] = (),
    timer: Any = None,
) -> DecoderOutput:
    """Prefill (or uncached recompute) through the decoder layers, with the optional inner merge.

    Args:
        language_model: a transformers decoder model (its ``layers``, ``rotary_emb``, ``norm`` and ``config``).
        inputs_embeds: (1, L, E) the sequence entering the LLM (already outer-merged).
        attention_mask: (1, L) 2D padding mask, or None (no padding).
        position_ids: (1, L) RoPE positions, or (3, 1, L) M-RoPE positions (the adapter's policy).
        prompt_length: tokens [0, prompt_length) are the prompt; the rest are continuation tokens (see module
            doc). The last prompt token must lie after the visual run.
        cache: an empty `DynamicCache` (filled here), or None.
        use_cache: write keys/values into ``cache``.
        inner: the inner-LLM step, or None.
        residuals: visual residuals, each after a layer < ``inner.layer`` when there is an inner step (the one
            after layer K-1 is added before the merge at K's input).
        timer: optional `StageTimer`; the inner step is timed as ``inner_merge``.
    """
    config = language_model.config
    types = layer_types(config)
    hidden = inputs_embeds
    length = hidden.shape[1]
    if not 0 < prompt_length <= length:
        raise ValueError(f"prompt_length must be in [1, {length}], got {prompt_length}")
    position_embeddings = language_model.rotary_emb(hidden, position_ids)
    # the layers read position ids only for packed sequences (flash attention); M-RoPE models pass them none
    layer_position_ids: torch.Tensor | None = position_ids if position_ids.dim() == 2 else None
    masks = _layer_masks(config, types, 0, hidden, attention_mask, cache)

    noncausal: tuple[Any, dict[str, Any]] | None = None
    if inner is not None:
        _check_inner(inner, types, prompt_length, residuals)
        if inner.fidelity == "reference":
            noncausal = _noncausal_mask(config, hidden, attention_mask, prompt_length)
    added = {r.layer: r for r in residuals}

    def stage(name: str) -> Any:
        return timer.stage(name) if timer is not None else nullcontext()

    attention_row = keep = None
    for layer_idx, decoder_layer in enumerate(language_model.layers[: len(types)]):
        if inner is not None and layer_idx == inner.layer:
            with stage("inner_merge"):
                merged, keep = _merge(hidden[0], attention_row, inner)
                hidden = merged.unsqueeze(0)
                cos, sin = position_embeddings  # (layers may sit on several devices: index on each one's own)
                position_embeddings = (cos[:, keep.to(cos.device)], sin[:, keep.to(sin.device)])
                layer_position_ids = None  # gaps: never let them be read as packed sequences
                if attention_mask is not None:
                    attention_mask = attention_mask[:, keep.to(attention_mask.device)]
                masks = _layer_masks(config, types, layer_idx, hidden, attention_mask, cache)
        if inner is not None and layer_idx == inner.layer - 1:
            with stage("inner_merge"):
                key_mask = attention_mask[0] if attention_mask is not None else None
                row = last_token_attention(decoder_layer, hidden, position_embeddings, prompt_length - 1, key_mask)
                if inner.rows is None:
                    attention_row = row[inner.visual_start : inner.visual_start + inner.visual_length]
                else:
                    attention_row = row.index_select(0, inner.rows.to(row.device))
        layer_mask, extra = masks[types[layer_idx]], {}
        if noncausal is not None and layer_idx == inner.layer - 1:
            layer_mask, extra = noncausal
        hidden = decoder_layer(
            hidden,
            attention_mask=layer_mask,
            position_ids=layer_position_ids,
            cache=cache if use_cache else None,
            use_cache=use_cache,
            position_embeddings=position_embeddings,
            **extra,
        )
        if layer_idx in added:
            residual = added[layer_idx]
            rows = residual.rows.to(hidden.device)
            hidden = hidden.index_add(1, rows, residual.values.to(hidden.device, hidden.dtype).unsqueeze(0))
    hidden = language_model.norm(hidden)
    return DecoderOutput(last_hidden_state=hidden, keep=keep, attention_row=attention_row)


def decode_decoder(
    language_model: nn.Module, inputs_embeds: torch.Tensor, *, state: PrefillState, cache: Cache
) -> torch.Tensor:
    """One decoding forward (q >= 1 new tokens) on a cache filled by `prefill_decoder`.

    Positions are ``next_position + decoded_so_far + arange(q)`` with ``decoded_so_far`` = cache length of layer 0
    minus the sequence's ``prompt_length`` (repeated over the 3 M-RoPE axes when ``state.rope_dims == 3``); each
    layer group gets a causal mask sized to its own cache.

    Args:
        inputs_embeds: (1, q, E) embeddings of the new tokens.

    Returns:
        (1, q, E) hidden states after the final norm.
    """
    config = language_model.config
    types = layer_types(config)
    q = inputs_embeds.shape[1]
    device = inputs_embeds.device
    if inputs_embeds.shape[0] != len(state.sequences) or len(state.sequences) != 1:
        raise ValueError(f"HoliTom decoding runs with batch size 1, got {inputs_embeds.shape[0]}")
    seq = state.sequences[0]
    done = int(cache.get_seq_length(0)) - seq.prompt_length  # a linear-attention layer counts its tokens too
    position_ids = (seq.next_position + done + torch.arange(q, device=device)).unsqueeze(0)
    if state.rope_dims == 3:
        position_ids = position_ids.unsqueeze(0).expand(3, 1, q)
    position_embeddings = language_model.rotary_emb(inputs_embeds, position_ids)

    def group_masks(start: int, prompt_mask: torch.Tensor | None) -> dict[str, Any]:
        mask_2d = None
        if prompt_mask is not None:
            mask_2d = torch.cat([prompt_mask, prompt_mask.new_ones(done + q)]).unsqueeze(0)
        masks = _layer_masks(config, types, start, inputs_embeds, mask_2d, cache)
        masks[LINEAR_ATTENTION] = None  # decoded tokens are never padding (transformers' recurrent mask: None)
        return masks

    masks = {"low": group_masks(0, seq.mask_low)}
    masks["high"] = group_masks(state.merge_layer, seq.mask_high) if state.merge_layer is not None else masks["low"]
    hidden = inputs_embeds
    for layer_idx, decoder_layer in enumerate(language_model.layers[: len(types)]):
        hidden = decoder_layer(
            hidden,
            attention_mask=masks[state.group_of(layer_idx)][types[layer_idx]],
            position_ids=position_ids if position_ids.dim() == 2 else None,
            cache=cache,
            use_cache=True,
            position_embeddings=position_embeddings,
        )
    return language_model.norm(hidden)
