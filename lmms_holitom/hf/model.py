"""`HoliTomModelMixin`: what every HoliTom model class shares — configuration, dispatch, cache, stats, trace.

A family's class is ``class HoliTomXForConditionalGeneration(HoliTomModelMixin, XForConditionalGeneration)`` plus
the `hf.adapter.HoliTomAdapter` methods. Its ``forward`` calls `HoliTomModelMixin.holitom_dispatch`, which
sends a prompt with a video under a compressed method to `prefill.compressed_prefill`, a decoding step after
such a prefill to `decoder.decode_decoder`, and everything else (``dense``, text, images) to the stock forward —
which ``torch.compile(fullgraph=True)`` traces as it is (`HoliTomModelMixin.holitom_records_prefill`), so compiled
generation works for ``dense`` and for requests without a video.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from transformers.cache_utils import DynamicCache
from transformers.modeling_utils import slice_logits_to_keep

from lmms_holitom.compat import check_transformers_version
from lmms_holitom.config import HoliTomConfig
from lmms_holitom.core.state import HoliTomRuntime
from lmms_holitom.core.stats import HoliTomStats, StageTimer
from lmms_holitom.core.trace import HoliTomTrace
from lmms_holitom.hf.cache import HoliTomCache
from lmms_holitom.hf.decoder import check_merge_layer, decode_decoder, layer_types, merge_layers
from lmms_holitom.hf.prefill import PrefillResult, compressed_prefill
from lmms_holitom.layer_kinds import default_merge_layer, default_merge_layer_of, nearest_merge_layer
from lmms_holitom.methods import DENSE, HOLITOM_WO_M

__all__ = ["HoliTomModelMixin", "default_merge_layer", "default_merge_layer_of"]

logger = logging.getLogger(__name__)


class HoliTomModelMixin:
    """HoliTom state and dispatch for a transformers model class (see module docstring).

    Attributes:
        holitom_trace: when True, every following compressed prefill leaves `holitom_last_trace` (default False:
            no tensors of a prefill are kept alive).
        holitom_last_trace: the `HoliTomTrace` of the last compressed prefill while tracing, else None.
        holitom_sync_timings: see `core.stats.StageTimer`.
    """

    def holitom_init(
        self, holitom: HoliTomConfig | Mapping[str, Any] | None, probe_chunk: int, sync_timings: bool
    ) -> None:
        """Call at the end of the family's ``__init__`` (after ``self.model`` exists). Raises
        `compat.UnsupportedTransformersError` below the supported transformers release."""
        check_transformers_version()
        self._holitom_stats: HoliTomStats | None = None
        self._holitom_timer: StageTimer | None = None
        self.holitom_trace = False
        self.holitom_last_trace: HoliTomTrace | None = None
        self.model.holitom_runtime = HoliTomRuntime()  # the one runtime state, shared with the vision side
        self.holitom_probe_chunk = probe_chunk
        self.holitom_sync_timings = sync_timings
        self.set_holitom(self._default_holitom() if holitom is None else holitom)

    # ------------------------------------------------------------------ loading
    @classmethod
    def is_custom_code(cls) -> bool:
        """False (unless loaded from the hub's remote code): the modules and their ``_init_weights`` are the stock
        ones. transformers treats any class defined outside it as custom code and then skips, when it initialises
        missing weights, every module without parameters of its own — e.g. SigLIP's attention and MLP, whose
        ``_init_weights`` sets their projections — so a model built on the meta device (``from_pretrained`` with
        missing keys) would be initialised differently from the stock class."""
        return bool(cls.is_remote_code())

    # ------------------------------------------------------------------ configuration
    @property
    def num_decoder_layers(self) -> int:
        return int(self.config.get_text_config().num_hidden_layers)

    @property
    def decoder_layer_types(self) -> tuple[str, ...]:
        """The kind of each decoder layer (``full_attention`` / ``linear_attention``, `decoder.layer_types`)."""
        return layer_types(self.config.get_text_config())

    def default_merge_layer(self) -> int | None:
        """The paper's merge layer (18 of 28) for this decoder: 18 if it exists, else the same relative depth, moved
        to the nearest layer whose layer K-1 is full attention (`default_merge_layer_of`; families with further
        constraints override this; None: no valid layer)."""
        return default_merge_layer_of(self.decoder_layer_types)

    def _default_holitom(self) -> HoliTomConfig:
        """The paper's defaults, with the merge layer this decoder can take (`default_merge_layer`); a model that
        has none (a decoder too shallow for the family's constraints) defaults to HoliTom w/o M."""
        cfg = HoliTomConfig()
        layer = self.default_merge_layer()
        if layer is None:
            logger.info("lmms-holitom: this %d-layer decoder has no valid merge layer; default method holitom_wo_m",
                        self.num_decoder_layers)
            return cfg.replace(method=HOLITOM_WO_M, merge_layer=None)
        if layer != cfg.merge_layer:
            kinds = self.decoder_layer_types
            rule = ""
            if len(set(kinds)) > 1:
                rule = f" (hybrid: K-1 must be full attention, K in {list(merge_layers(kinds))})"
            logger.info("lmms-holitom: default merge_layer %d -> %d for this %d-layer decoder%s", cfg.merge_layer,
                        layer, self.num_decoder_layers, rule)
            cfg = cfg.replace(merge_layer=layer)
        return cfg

    def validate_holitom(self, holitom: HoliTomConfig | Mapping[str, Any]) -> HoliTomConfig:
        """``holitom`` as a `HoliTomConfig`, checked against this model (merge_layer in [1, layers - 1], the layer
        kinds' rule and the family's own); a default merge layer this model cannot take is moved first
        (`_fit_default_merge_layer`)."""
        if isinstance(holitom, Mapping):
            holitom = HoliTomConfig.from_dict(holitom)
        if not isinstance(holitom, HoliTomConfig):
            raise TypeError(f"holitom must be a HoliTomConfig or a mapping, got {type(holitom).__name__}")
        holitom = self._fit_default_merge_layer(holitom)
        problem = self._merge_layer_problem(holitom)
        if problem is not None:
            raise ValueError(problem)
        return holitom

    def _merge_layer_problem(self, holitom: HoliTomConfig) -> str | None:
        """Why this model cannot run ``holitom`` (its merge layer, or a family rule), or None."""
        n = self.num_decoder_layers
        try:
            if holitom.inner_mode is not None and not 1 <= holitom.merge_layer < n:
                raise ValueError(
                    f"merge_layer must be in [1, {n - 1}] for this model ({n} decoder layers), got "
                    f"{holitom.merge_layer} (method {holitom.method!r})"
                )
            if holitom.inner_mode is not None:
                check_merge_layer(holitom.merge_layer, self.decoder_layer_types)
            self.holitom_check_config(holitom)
        except ValueError as e:
            return str(e)
        return None

    def _fit_default_merge_layer(self, holitom: HoliTomConfig) -> HoliTomConfig:
        """A merge layer nobody chose (not in ``holitom.given``: the package's 18, or a method's own such as FastV's
        2) that this decoder cannot take moves to one it can, with a log line: the model's `default_merge_layer`
        for HoliTom, the nearest valid layer for a method with its own default. A chosen layer is never moved (an
        invalid choice is an error), so ``holitom={"method": "holitom"}`` runs the layer the model defaults to."""
        if "merge_layer" in holitom.given or holitom.inner_mode is None or self._merge_layer_problem(holitom) is None:
            return holitom
        own = holitom.spec.defaults.get("merge_layer")
        if own is None:
            layer = self.default_merge_layer()
        else:
            fits = [k for k in range(1, self.num_decoder_layers)
                    if self._merge_layer_problem(holitom.replace(merge_layer=k)) is None]
            layer = nearest_merge_layer(own, fits)
        if layer is None:
            return holitom  # nothing fits: validate_holitom names the problem
        logger.info("lmms-holitom: default merge_layer %d of %s -> %d for this %d-layer decoder", holitom.merge_layer,
                    holitom.method, layer, self.num_decoder_layers)
        return holitom.replace(merge_layer=layer)

    def holitom_check_config(self, holitom: HoliTomConfig) -> None:
        """Family-specific checks of a configuration (raise ValueError); none by default."""

    def set_holitom(self, holitom: HoliTomConfig | Mapping[str, Any]) -> HoliTomConfig:
        """Validate ``holitom`` against this model and make it the active configuration."""
        cfg = self.validate_holitom(holitom)
        self.holitom_runtime.config = cfg
        return cfg

    # One runtime state (`core.state.HoliTomRuntime`), held by the family's base model (``self.model``, which encodes
    # the videos, also when ``generate`` calls it directly) and read here through it: no copies.
    @property
    def holitom_runtime(self) -> HoliTomRuntime:
        return self.model.holitom_runtime

    @property
    def holitom_probe_chunk(self) -> int:
        return self.holitom_runtime.probe_chunk

    @holitom_probe_chunk.setter
    def holitom_probe_chunk(self, value: int) -> None:
        if isinstance(value, bool) or int(value) < 1:
            raise ValueError(f"probe_chunk must be an integer >= 1, got {value!r}")
        self.holitom_runtime.probe_chunk = int(value)

    @property
    def holitom_sync_timings(self) -> bool:
        return self.holitom_runtime.sync_timings

    @holitom_sync_timings.setter
    def holitom_sync_timings(self, value: bool) -> None:
        self.holitom_runtime.sync_timings = bool(value)

    @property
    def holitom(self) -> HoliTomConfig:
        return self.holitom_runtime.config

    @holitom.setter
    def holitom(self, value: HoliTomConfig | Mapping[str, Any]) -> None:
        self.set_holitom(value)

    @contextmanager
    def holitom_override(self, holitom: HoliTomConfig | Mapping[str, Any] | None) -> Iterator[HoliTomConfig]:
        """Temporarily make ``holitom`` the active configuration (None: keep the current one)."""
        previous = self.holitom
        if holitom is None:
            yield previous
            return
        cfg = self.set_holitom(holitom)
        try:
            yield cfg
        finally:
            self.set_holitom(previous)

    # ------------------------------------------------------------------ stats
    @property
    def holitom_stats(self) -> HoliTomStats | None:
        """Stats of the last prefill; CUDA-event timings are resolved (one sync) on first read."""
        if self._holitom_stats is not None and self._holitom_timer is not None:
            self._holitom_stats = self._holitom_stats.replace(timings_ms=self._holitom_timer.resolve())
            self._holitom_timer = None
        return self._holitom_stats

    def holitom_record(self, stats: HoliTomStats, timer: StageTimer) -> None:
        self._holitom_stats, self._holitom_timer = stats, timer
        if not timer.pending:
            self._holitom_stats = stats.replace(timings_ms=timer.resolve())
            self._holitom_timer = None

    # ------------------------------------------------------------------ generate
    def generate(self, inputs: torch.Tensor | None = None, *args: Any, holitom: Any = None, **kwargs: Any) -> Any:
        """`GenerationMixin.generate`, plus ``holitom=`` (a per-call configuration, active for this call only).

        It also passes ``holitom_prompt_length`` (the prompt length) to every forward, so that
        ``use_cache=False`` recomputes each step with the same compression as cached decoding.
        """
        ids = inputs if inputs is not None else kwargs.get("input_ids")
        length = int(ids.shape[1]) if ids is not None else None
        if length is None and kwargs.get("inputs_embeds") is not None:
            length = int(kwargs["inputs_embeds"].shape[1])
        if length is not None and kwargs.get("holitom_prompt_length") is None:
            kwargs["holitom_prompt_length"] = length
        with self.holitom_override(holitom):
            return super().generate(inputs, *args, **kwargs)

    def _prepare_cache_for_generation(self, generation_config: Any, model_kwargs: dict, *args: Any, **kw: Any) -> Any:
        """The stock preparation; a plain `DynamicCache` it creates becomes a `HoliTomCache` (same arguments)."""
        user_cache = model_kwargs.get("cache") is not None
        out = super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kw)
        cache = model_kwargs.get("cache")
        if not user_cache and type(cache) is DynamicCache and cache.get_seq_length() == 0:
            model_kwargs["cache"] = HoliTomCache(config=self.config.get_text_config(decoder=True))
        return out

    # ------------------------------------------------------------------ dispatch
    #: the text of the video placeholder token in this family's processors (the id is ``config.video_token_id``)
    holitom_video_token: str = "<video>"

    def holitom_records_prefill(self, cache: Any) -> bool:
        """Whether a stock (dense / text / image) forward is a prefill whose stats are recorded: an eager forward on
        an empty cache. A compiled forward records nothing (stage timers and stats are host-side Python, and the
        cache length is a tensor a compiled graph cannot branch on), so ``torch.compile(fullgraph=True)`` of the
        stock path traces the stock forward alone."""
        if torch.compiler.is_compiling():
            return False
        return cache is None or int(cache.get_seq_length()) == 0

    def holitom_check_video_prompt(self, input_ids: torch.Tensor | None) -> None:
        """Raise a ValueError naming the video placeholder token when a video is given but no prompt holds one."""
        token_id = getattr(self.config, "video_token_id", None)
        if input_ids is not None and token_id is not None and not bool((input_ids == token_id).any()):
            raise ValueError(
                f"a video was given but the prompt has no video placeholder token {self.holitom_video_token!r} "
                f"(id {token_id}): put it where the video goes (the processor's chat template does, for a "
                "{'type': 'video'} content entry)"
            )

    def holitom_dispatch(
        self,
        cfg: HoliTomConfig,
        *,
        has_video: bool,
        stock_forward: Callable[[], Any],
        output_class: type,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        cache: Any,
        use_cache: bool | None,
        labels: torch.Tensor | None,
        logits_to_keep: int | torch.Tensor,
        media: dict[str, Any],
        prompt_length: int | None,
    ) -> Any:
        """Route one forward (module docstring); ``stock_forward()`` runs the stock path and records its stats."""
        state = cache.prefill_state if isinstance(cache, HoliTomCache) else None
        if state is not None:
            if has_video:
                raise ValueError("a video cannot be added to a cache that already holds a HoliTom prefill")
            with torch.no_grad():  # compressed methods are inference-only
                embeds = self.get_input_embeddings()(input_ids) if inputs_embeds is None else inputs_embeds
                hidden = decode_decoder(self.holitom_language_model(), embeds, state=state, cache=cache)
                logits = self.lm_head(slice_logits_to_keep(hidden, logits_to_keep))
            return output_class(logits=logits, cache=cache)
        if has_video:
            self.holitom_check_video_prompt(input_ids)
        if not has_video or cfg.method == DENSE:
            return stock_forward()
        if labels is not None:
            raise NotImplementedError(
                f"labels (training loss) are not supported with method {cfg.method!r}: the sequence is shortened"
            )
        use_cache = self.config.get_text_config().use_cache if use_cache is None else use_cache
        with torch.no_grad():
            result: PrefillResult = compressed_prefill(
                self, cfg, input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                media=media, cache=cache, use_cache=bool(use_cache), logits_to_keep=logits_to_keep,
                prompt_length=prompt_length, trace=self.holitom_trace,
            )
        tokens = input_ids if input_ids is not None else inputs_embeds
        if prompt_length is None or int(tokens.shape[1]) == int(prompt_length):
            # an uncached recompute of prompt + generated tokens is not the prompt's prefill: keep its stats
            self.holitom_last_trace = result.trace
            self.holitom_record(result.stats, result.timer)
        return output_class(logits=result.logits, cache=result.cache)
