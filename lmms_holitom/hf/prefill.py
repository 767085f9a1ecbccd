"""The compressed prefill, as stages (docs/algorithm.md §1–§6, §10), for any adapter (`hf.adapter`).

encode (adapter) -> outer merge (`outer.compress_video`) -> layout (adapter) -> splice (`splice`) -> positions
(adapter policy) -> decoder layers with the inner step (`decoder.prefill_decoder`) -> cache state.
No model-family names here: everything family-specific is a method of the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers.modeling_utils import slice_logits_to_keep

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.outer import compress_video
from lmms_holitom.core.splice import Spliced, splice
from lmms_holitom.core.state import PrefillState, SequenceState
from lmms_holitom.core.stats import HoliTomStats, StageTimer
from lmms_holitom.core.trace import HoliTomTrace
from lmms_holitom.core.video import EncodedVideo
from lmms_holitom.hf.adapter import HoliTomAdapter
from lmms_holitom.hf.cache import HoliTomCache
from lmms_holitom.hf.decoder import InnerMergeSpec, VisualResidual, check_language_model, prefill_decoder

__all__ = ["PrefillResult", "compressed_prefill"]


@dataclass
class PrefillResult:
    """What `compressed_prefill` returns: logits of the shortened sequence, the filled cache, stats, trace."""

    logits: torch.Tensor
    cache: HoliTomCache | None
    stats: HoliTomStats
    timer: StageTimer
    trace: HoliTomTrace | None


def _check_request(cfg: HoliTomConfig, tokens: torch.Tensor, videos: int | None, cache: Any) -> None:
    if tokens.shape[0] != 1 or videos not in (None, 1):
        raise ValueError(
            f"method {cfg.method!r} compresses one video per call: got batch size {tokens.shape[0]} with {videos} "
            "video(s); use batch size 1 (one video per prompt) or method 'dense'"
        )
    if cache is not None and cache.get_seq_length() > 0:
        raise NotImplementedError("a video prefill must start from an empty cache under HoliTom")
    if cache is not None and not isinstance(cache, HoliTomCache):
        raise NotImplementedError(
            f"a compressed prefill needs a HoliTomCache (a DynamicCache that records the shortened sequence; "
            f"generate creates one), got {type(cache).__name__}. Do not set cache_implementation."
        )


def _outer_merge(cfg: HoliTomConfig, video: EncodedVideo) -> Any:
    if not cfg.outer_merge:
        return None
    if cfg.needs_saliency and video.saliency is None:
        raise ValueError(
            f"method {cfg.method!r} needs the vision saliency recorded while the video is encoded; these video "
            "features were encoded without it (pre-computed mm_encoder_outputs?) — pass the pixel values, or use "
            "method 'dense' or 'fastv'"
        )
    return compress_video(video.features, video.saliency, cfg, keys=video.keys)


def _prompt_length(spliced: Spliced, prompt_length: int | None, dense_length: int) -> tuple[int, int]:
    """(dense prompt length, shortened prompt length), checked to cover the video."""
    prompt_dense = dense_length if prompt_length is None else int(prompt_length)
    video_end = spliced.visual_stop + spliced.removed
    if not video_end <= prompt_dense <= dense_length:
        raise ValueError(
            f"holitom_prompt_length must cover the video and not exceed the input: the video ends at {video_end}, "
            f"the input has {dense_length} tokens, got {prompt_length}"
        )
    return prompt_dense, prompt_dense - spliced.removed


def _inner_spec(cfg: HoliTomConfig, spliced: Spliced) -> InnerMergeSpec | None:
    if cfg.inner_mode is None:
        return None
    contiguous = spliced.contiguous
    return InnerMergeSpec(
        layer=cfg.merge_layer, ratio=cfg.merge_ratio, mode=cfg.inner_mode, fidelity=cfg.fidelity,
        visual_start=spliced.visual_start, visual_length=int(spliced.visual_rows.shape[0]),
        rows=None if contiguous else spliced.visual_rows, visual_stop=None if contiguous else spliced.visual_stop,
    )


def _prefill_state(
    cfg: HoliTomConfig, inner: InnerMergeSpec | None, spliced: Spliced, positions: torch.Tensor, prompt: int,
    keep: torch.Tensor | None,
) -> PrefillState:
    dropped = inner.visual_length - inner.kept_visual if inner is not None else 0
    mask = spliced.attention_mask
    mask_high = mask
    if mask is not None and keep is not None:
        mask_high = mask[:, keep.to(mask.device)]
    sequence = SequenceState(
        prompt_length=prompt,
        prompt_length_high=prompt - dropped,
        next_position=int(positions[..., :prompt].max()) + 1,
        mask_low=mask[0, :prompt] if mask is not None else None,
        mask_high=mask_high[0, : prompt - dropped] if mask_high is not None else None,
    )
    return PrefillState(
        method=cfg.method, merge_layer=inner.layer if inner is not None else None,
        rope_dims=3 if positions.dim() == 3 else 1, sequences=(sequence,),
    )


def compressed_prefill(
    model: HoliTomAdapter,
    cfg: HoliTomConfig,
    *,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    media: dict[str, Any],
    cache: HoliTomCache | None,
    use_cache: bool,
    logits_to_keep: int | torch.Tensor,
    prompt_length: int | None,
    trace: bool,
) -> PrefillResult:
    """Prefill of a prompt with one video under a compressed method (HoliTom, w/o M, VisionZip, FastV)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
    tokens = input_ids if input_ids is not None else inputs_embeds
    _check_request(cfg, tokens, model.holitom_video_count(media), cache)
    language_model = model.holitom_language_model()
    if use_cache and cache is None:
        cache = HoliTomCache(config=model.config.get_text_config())
    check_language_model(language_model, cache)
    timer = StageTimer(tokens.device, model.holitom_sync_timings)
    with timer.stage("prefill"):
        embeds, video = model.holitom_encode(input_ids, inputs_embeds, media, timer)
        with timer.stage("outer_merge"):
            compressed = _outer_merge(cfg, video)
            run = model.holitom_layout(video, compressed)
            placeholders = model.holitom_placeholder_mask(input_ids, embeds)
            dense_runs = model.holitom_dense_runs(video)
            if prompt_length is not None and int(prompt_length) < sum(dense_runs):
                raise ValueError(
                    f"holitom_prompt_length must cover the video and not exceed the input: the video has "
                    f"{sum(dense_runs)} placeholders, got {prompt_length}"
                )
            if prompt_length is not None:  # generated tokens (uncached recompute) are never placeholders
                placeholders = placeholders & (torch.arange(placeholders.shape[0], device=placeholders.device)
                                               < int(prompt_length))
            spliced = splice(embeds, placeholders, dense_runs, run, attention_mask)
        prompt_dense, prompt = _prompt_length(spliced, prompt_length, tokens.shape[1])
        if spliced.attention_mask is not None and bool(spliced.attention_mask.all()):
            spliced = replace(spliced, attention_mask=None)  # no padding: no mask at all
        positions = model.holitom_positions(spliced, input_ids=input_ids, attention_mask=attention_mask, media=media)
        mask = spliced.attention_mask
        inner = _inner_spec(cfg, spliced)
        residuals = _residuals(spliced, run, video)
        with timer.stage("llm"):
            result = prefill_decoder(
                language_model, spliced.embeds, attention_mask=mask, position_ids=positions, prompt_length=prompt,
                cache=cache, use_cache=use_cache, inner=inner, residuals=residuals, timer=timer,
            )
            logits = model.lm_head(slice_logits_to_keep(result.last_hidden_state, logits_to_keep))
    if use_cache and cache is not None:
        cache.prefill_state = _prefill_state(cfg, inner, spliced, positions, prompt, result.keep)
    v = int(run.tokens.shape[0])
    stats = HoliTomStats(
        method=cfg.method,
        frames=video.frames,
        tokens_per_frame=video.tokens_per_frame,
        dense_tokens=sum(model.holitom_dense_runs(video)),
        outer_tokens=v,
        inner_tokens=inner.kept_visual if inner is not None else v,
        merge_layer=inner.layer if inner is not None else None,
        segments=int(compressed.stats["segments"]) if compressed is not None else video.frames,
        static_tokens=int(compressed.stats["static_tokens"]) if compressed is not None else 0,
        prompt_tokens_dense=prompt_dense,
        prompt_tokens=prompt,
        probe_peak_elements=video.peak_elements,
    )
    recorded = None
    if trace:
        recorded = HoliTomTrace(
            inputs_embeds=spliced.embeds.detach(), position_ids=positions.detach(),
            visual_mask=_visual_mask(spliced), origins=run.origins, inner_keep=result.keep,
            deepstack=tuple(run.streams) if run.streams else None,
            segments=tuple(compressed.segments) if compressed is not None else None,
            saliency=video.saliency, inner_attention=result.attention_row,
        )
    return PrefillResult(logits=logits, cache=cache if use_cache else None, stats=stats, timer=timer, trace=recorded)


def _residuals(spliced: Spliced, run: Any, video: EncodedVideo) -> tuple[VisualResidual, ...]:
    """Stream i (the compressed video's, and the images' at their shifted rows) is added after layer i."""
    image_rows = None
    if video.image_streams:
        visual = _visual_mask(spliced)
        dense_length = spliced.embeds.shape[1] + spliced.removed
        new_of_dense = torch.full((dense_length,), -1, dtype=torch.long, device=visual.device)
        rows = torch.arange(spliced.embeds.shape[1], device=visual.device)
        new_of_dense[spliced.source_rows.to(visual.device)[~visual]] = rows[~visual]
        image_rows = new_of_dense[video.image_rows.to(visual.device)]
    out = []
    for i in range(max(len(run.streams), len(video.image_streams))):
        parts = []
        if i < len(run.streams):
            parts.append((spliced.visual_rows, run.streams[i]))
        if i < len(video.image_streams):
            parts.append((image_rows, video.image_streams[i]))
        rows = torch.cat([r.to(parts[0][0].device) for r, _ in parts])
        values = torch.cat([v.to(parts[0][1].device) for _, v in parts])
        out.append(VisualResidual(layer=i, rows=rows, values=values))
    return tuple(out)


def _visual_mask(spliced: Spliced) -> torch.Tensor:
    mask = torch.zeros(spliced.embeds.shape[1], dtype=torch.bool, device=spliced.embeds.device)
    mask[spliced.visual_rows] = True
    return mask
