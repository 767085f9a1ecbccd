"""The framework-free core every backend reuses (torch only; no transformers, no lmms-eval, no vLLM).

* `outer.compress_video` — the method switch: a config's outer merge from the registry (`lmms_holitom.methods`)
  over the tensor layer (`lmms_holitom.ops`);
* `video.EncodedVideo` — one video after a model's vision side;
* `splice` — the compressed visual run placed in the prompt's embeddings;
* `state` — what decoding needs to know about a compressed prefill (`PrefillState`, `SequenceState`);
* `stats` — `HoliTomStats` (the per-prompt record) and `StageTimer` (named, timed stages);
* `trace` — `HoliTomTrace` (what a prefill fed the decoder, for replay and debugging);
* `threads.intra_op_threads` — torch's CPU thread count for a block (the vLLM plugin's merges run on one).

``tests/test_methods_registry.py`` checks that importing this package, `methods` and `ops` imports no transformers.
"""
