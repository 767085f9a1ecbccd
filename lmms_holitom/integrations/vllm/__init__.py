"""HoliTom inside vLLM: a `vllm.general_plugins` plugin that replaces the video path of the supported families.

* `plugin.register` (the entry point) registers our subclasses for the architectures in `plugin.FAMILIES`; they
  behave exactly as vLLM's own classes unless the model's config carries a ``holitom`` entry
  (``hf_overrides={"holitom": {...}}`` / ``--hf-overrides '{"holitom": {...}}'``);
* `settings.vllm_settings` validates that entry once, when the engine reads the config (one line per problem);
* `probe.QKVSaliencyProbe` records the vision tower's received attention (and keys) from vLLM's fused ``qkv_proj``,
  reduced across tensor-parallel ranks;
* one module per family (`llava_onevision`, `qwen2_5_vl`, `qwen3_vl`) mirrors the vLLM code it overrides, naming it;
  `limits` refuses the engine settings under which the Qwen families could not set the kept rows' positions.

Only methods whose visual token count is known before the video is encoded can run here: vLLM sizes a video's
placeholders when it processes the prompt, and keeps one KV length per request across layers, so no token can be
dropped at decoder layer K (full HoliTom, FastV). ``docs/algorithm.md`` (exact budget) gives the rule.
"""
