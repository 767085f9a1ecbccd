"""Our model classes are drop-ins for transformers' own: the contracts transformers' model tests check, asserted
against the stock class of each family on the same tiny checkpoint (``method="dense"`` unless a test says otherwise).

A new family adds one row to `FAMILIES`. Compilation uses a graph-counting eager backend: ``fullgraph=True`` fails
on any graph break, and the count proves the compiled path really ran (``generate`` silently skips compilation when
its criteria are not met).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from lmms_holitom.config import HoliTomConfig

DENSE = HoliTomConfig(method="dense")
#: a compressing configuration (text-only requests must still run the stock path); its merge layer is each model's
#: default (`for_model`: a hybrid decoder takes only layers after a full-attention layer)
HOLITOM = HoliTomConfig(method="holitom", merge_layer=2)
EXTRAS = ("holitom", "holitom_prompt_length")  # what our forward adds to the stock parameters
GEN = {"max_new_tokens": 4, "do_sample": False}
VIDEO_Q = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what is in the video?"}]}]
IMAGE_Q = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is it?"}]}]


@dataclass(frozen=True)
class Family:
    """One row: the built-in tiny checkpoint, our class and the stock class (names in their packages)."""

    tiny: str
    ours: str
    stock: str
    video_kwargs: dict[str, Any] = field(default_factory=dict)  # processor kwargs of a video prompt
    #: eager vs sdpa logits: the stock model's own gap on the tiny random checkpoint (hybrid Qwen3.5: up to 7e-4,
    #: its 8 layers of random gated attention and Gated DeltaNet amplify the softmax rounding)
    eager_atol: float = 1e-5

    def classes(self) -> tuple[type, type]:
        import transformers

        from lmms_holitom.hf import models

        return getattr(models, self.ours), getattr(transformers, self.stock)


_QWEN3_VIDEO = {"do_sample_frames": False,
                "video_metadata": [{"fps": 2.0, "total_num_frames": 2, "frames_indices": [0, 1]}]}
FAMILIES = (
    Family("tiny", "HoliTomLlavaOnevisionForConditionalGeneration", "LlavaOnevisionForConditionalGeneration"),
    Family("tiny-qwen2.5-vl", "HoliTomQwen2_5_VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration"),
    Family("tiny-qwen3-vl", "HoliTomQwen3VLForConditionalGeneration", "Qwen3VLForConditionalGeneration",
           _QWEN3_VIDEO),
    Family("tiny-qwen3-vl-moe", "HoliTomQwen3VLMoeForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration",
           _QWEN3_VIDEO),
    Family("tiny-qwen3.5", "HoliTomQwen3_5ForConditionalGeneration", "Qwen3_5ForConditionalGeneration", _QWEN3_VIDEO,
           eager_atol=1e-3),
    Family("tiny-qwen3.5-moe", "HoliTomQwen3_5MoeForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration",
           _QWEN3_VIDEO, eager_atol=1e-3),
)
IDS = [f.tiny for f in FAMILIES]


@dataclass
class Pair:
    family: Family
    path: str
    ours: Any
    stock: Any
    processor: Any

    def video(self, question: str = "what is in the video?", seed: int = 0, batch: int = 1) -> dict:
        """Processor outputs of ``batch`` one-video prompts (2 frames of 64 px; longer questions pad on the left)."""
        rng = np.random.default_rng(seed)
        texts, videos = [], []
        for i in range(batch):
            q = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question + " ok" * 3 * i}]}]
            texts.append(self.processor.apply_chat_template(q, add_generation_prompt=True))
            videos.append(rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8))
        kwargs = dict(self.family.video_kwargs)
        if "video_metadata" in kwargs:
            kwargs["video_metadata"] = kwargs["video_metadata"] * batch
        self.processor.tokenizer.padding_side = "left"
        return dict(self.processor(text=texts, videos=videos, return_tensors="pt", padding=True, **kwargs))

    def image(self) -> dict:
        prompt = self.processor.apply_chat_template(IMAGE_Q, add_generation_prompt=True)
        picture = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        return dict(self.processor(text=prompt, images=[picture], return_tensors="pt"))

    def text(self, words: str = "hello there, what is in the video?") -> dict:
        return dict(self.processor.tokenizer([words], return_tensors="pt"))

    def for_model(self, cfg: HoliTomConfig) -> HoliTomConfig:
        """``cfg`` with this model's default merge layer when it merges inside the decoder."""
        return cfg if cfg.inner_mode is None else cfg.replace(merge_layer=self.ours.default_merge_layer())


@pytest.fixture(scope="module", params=FAMILIES, ids=IDS)
def pair(request) -> Pair:
    from transformers import AutoProcessor

    from lmms_holitom.testing import resolve_pretrained

    family: Family = request.param
    path = resolve_pretrained(family.tiny)
    ours_cls, stock_cls = family.classes()
    return Pair(family, path, ours_cls.from_pretrained(path, holitom=DENSE).eval(),
                stock_cls.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path))


def counting_backend() -> tuple[Any, list]:
    """An eager ``torch.compile`` backend that records every graph it is given (a plain function: ``CompileConfig``
    deep-copies its backend, and a function is copied as itself)."""
    graphs: list = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list) -> Any:
        graphs.append(gm)
        return gm.forward

    return backend, graphs


def _same(a: Any, b: Any) -> bool:
    """Equal tensors, or equal nestings of lists / tuples of them (None for None)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a is None and b is None


# ---------------------------------------------------------------------------------------------- signatures
@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_signatures_are_the_stock_ones_with_transformers_kwargs(family: Family) -> None:
    """Every stock parameter, in the stock order, with its kind and default; ``**kwargs`` annotated
    ``Unpack[TransformersKwargs]`` itself (not a string), so tools see ``output_attentions`` as transformers' tests
    do (``annotation.__args__[0].__annotations__``)."""
    ours_cls, stock_cls = family.classes()
    ours_base = ours_cls.base_model_class
    stock_base = next(c for c in ours_base.__mro__ if c.__module__.startswith("transformers."))
    pairs = [(ours_cls.forward, stock_cls.forward, EXTRAS)]
    for name in ("get_image_features", "get_video_features"):
        for owner, stock_owner in ((ours_cls, stock_cls), (ours_base, stock_base)):
            if hasattr(stock_owner, name):
                pairs.append((getattr(owner, name), getattr(stock_owner, name), ()))
    for ours, stock, extras in pairs:
        got = [p for p in inspect.signature(ours).parameters.values() if p.name != "self"]
        want = [p for p in inspect.signature(stock).parameters.values() if p.name != "self"]
        assert [(p.name, p.kind, p.default) for p in got] == [
            *[(p.name, p.kind, p.default) for p in want[:-1]],
            *[(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, None) for name in extras],
            (want[-1].name, want[-1].kind, want[-1].default),
        ], ours.__qualname__
        annotation = got[-1].annotation
        assert annotation == want[-1].annotation and not isinstance(annotation, str), ours.__qualname__
        assert {"output_attentions", "output_hidden_states"} <= set(annotation.__args__[0].__annotations__)


# ---------------------------------------------------------------------------------------------- torch.compile
@pytest.mark.parametrize("cfg", [DENSE, HOLITOM], ids=["dense", "holitom"])
def test_compiled_forward_of_a_text_request_has_no_graph_break(pair: Pair, cfg: HoliTomConfig) -> None:
    torch._dynamo.reset()
    backend, graphs = counting_backend()
    inputs = pair.text()
    compiled = torch.compile(pair.ours.forward, fullgraph=True, backend=backend)
    with torch.no_grad(), pair.ours.holitom_override(pair.for_model(cfg)):
        got = compiled(**inputs).logits
    with torch.no_grad():
        want = pair.stock(**inputs).logits
    assert len(graphs) == 1
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def _compiled_generate(model: Any, inputs: dict, backend: Any, **kwargs: Any) -> torch.Tensor:
    from transformers import CompileConfig

    compile_config = CompileConfig(fullgraph=True, dynamic=False, backend=backend, mode=None)
    compile_config._compile_all_devices = True  # compile on the CPU too
    with torch.no_grad():
        return model.generate(**inputs, **GEN, cache_implementation="static", compile_config=compile_config,
                              **kwargs)


@pytest.mark.parametrize("request_kind", ["dense-video", "holitom-text"])
def test_compiled_generation_equals_the_stock_model(pair: Pair, request_kind: str) -> None:
    """``generate`` with a static cache compiles the decoding forward (fullgraph): a dense video request and a
    text-only request under HoliTom decode as the stock model does, twice in a row with inputs of the same shape —
    the second without any recompilation (the cache is reset, nothing the graph guards on changed)."""
    torch._dynamo.reset()
    backend, graphs = counting_backend()
    cfg = DENSE if request_kind == "dense-video" else pair.for_model(HOLITOM)
    first = pair.video(seed=0) if request_kind == "dense-video" else pair.text()
    rolled = {**first, "input_ids": first["input_ids"].roll(1, dims=1)}  # same shape, other tokens
    second = pair.video(seed=1) if request_kind == "dense-video" else rolled
    for i, inputs in enumerate((first, second)):
        with torch.compiler.set_stance("fail_on_recompile" if i else "default"):
            got = _compiled_generate(pair.ours, inputs, backend, holitom=cfg)
        with torch.no_grad():
            want = pair.stock.generate(**inputs, **GEN)
        assert torch.equal(got, want)
    assert len(graphs) >= 1 and hasattr(pair.ours, "_compiled_call")


# ---------------------------------------------------------------------------------------------- vision features
def test_get_features_return_dict_false_is_the_stock_tuple(pair: Pair) -> None:
    """Every ``get_*_features`` (outer and base model) with ``return_dict=False`` returns the stock tuple; its
    arguments are picked by name from the processor outputs, as ``generate`` does."""
    checked = 0
    for name, inputs in (("get_image_features", pair.image()), ("get_video_features", pair.video())):
        for ours, stock in ((pair.ours, pair.stock), (pair.ours.model, pair.stock.model)):
            if not hasattr(stock, name):
                continue
            params = inspect.signature(getattr(stock, name)).parameters
            kwargs = {k: v for k, v in inputs.items() if k in params}
            with torch.no_grad():
                got = getattr(ours, name)(**kwargs, return_dict=False)
                want = getattr(stock, name)(**kwargs, return_dict=False)
            assert type(got) is tuple and _same(got, want), f"{type(ours).__name__}.{name}"
            checked += 1
    assert checked == 4


# ---------------------------------------------------------------------------------------------- initialisation
@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_missing_weights_are_initialised_as_the_stock_class_does(family: Family) -> None:
    """``from_pretrained(None, config=..., state_dict={})`` builds on the meta device and initialises every weight
    with ``_init_weights``: nothing left on meta, and (same seed) the very values of the stock class — a module
    whose ``_init_weights`` branch were skipped would change them. A model built on meta and initialised has no
    parameter or buffer left unwritten."""
    from transformers import AutoConfig

    from lmms_holitom.testing import resolve_pretrained

    ours_cls, stock_cls = family.classes()
    config = AutoConfig.from_pretrained(resolve_pretrained(family.tiny))
    states = []
    for cls in (ours_cls, stock_cls):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = cls.from_pretrained(None, config=copy.deepcopy(config), state_dict={})
        assert not [k for k, v in [*model.named_parameters(), *model.named_buffers()] if v.is_meta]
        states.append(model.state_dict())
    ours, stock = states
    assert list(ours) == list(stock)
    assert [k for k in ours if not torch.equal(ours[k], stock[k])] == []

    with torch.device("meta"):
        model = ours_cls(copy.deepcopy(config), holitom=DENSE)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    model.init_weights()
    unwritten = [k for k, v in [*model.named_parameters(), *model.named_buffers()]
                 if v.is_floating_point() and bool(v.isnan().any())]
    assert unwritten == []


# ---------------------------------------------------------------------------------------------- save / load
def test_save_pretrained_round_trip(pair: Pair, tmp_path) -> None:
    """Same class, same config (the video layout included: it lives in the config), same logits. The HoliTom method
    is not part of the checkpoint: ``from_pretrained(..., holitom=...)`` selects it."""
    cfg = HoliTomConfig(method="holitom_wo_m", retain_ratio=0.5)
    pair.ours.save_pretrained(tmp_path)
    again = type(pair.ours).from_pretrained(tmp_path, holitom=cfg).eval()
    assert type(again) is type(pair.ours) and again.holitom == cfg
    saved = {k: v for k, v in again.config.to_dict().items() if k != "_name_or_path"}
    assert saved == {k: v for k, v in pair.ours.config.to_dict().items() if k != "_name_or_path"}
    if hasattr(pair.ours, "video_layout"):
        assert again.video_layout == pair.ours.video_layout
    inputs = pair.video()
    with torch.no_grad():
        assert torch.equal(again(**inputs, holitom=DENSE).logits, pair.ours(**inputs).logits)
        assert torch.equal(again(**inputs).logits, pair.ours(**inputs, holitom=cfg).logits)


# ---------------------------------------------------------------------------------------------- numerics
def test_eager_attention_equals_sdpa(pair: Pair) -> None:
    """Dense logits with eager attention equal sdpa's (fp32; tolerance ``eager_atol`` absolute, 1e-4 relative)."""
    eager = type(pair.ours).from_pretrained(pair.path, holitom=DENSE, attn_implementation="eager").eval()
    inputs = pair.video()
    with torch.no_grad():
        got, want = eager(**inputs).logits, pair.ours(**inputs).logits
    assert eager.config.get_text_config()._attn_implementation == "eager"
    torch.testing.assert_close(got, want, atol=pair.family.eager_atol, rtol=1e-4)


def test_output_attentions_and_hidden_states_are_the_stock_ones(pair: Pair) -> None:
    """The `TransformersKwargs` the signature shows work: ``output_attentions`` / ``output_hidden_states`` return the
    stock model's tensors (eager attention, a video prompt under ``dense``)."""
    eager = type(pair.ours).from_pretrained(pair.path, holitom=DENSE, attn_implementation="eager").eval()
    stock = type(pair.stock).from_pretrained(pair.path, attn_implementation="eager").eval()
    inputs = pair.video()
    with torch.no_grad():
        got = eager(**inputs, output_attentions=True, output_hidden_states=True)
        want = stock(**inputs, output_attentions=True, output_hidden_states=True)
    from lmms_holitom.hf.decoder import layer_types

    types = layer_types(eager.config.get_text_config())
    layers = len(types)  # one attention map per full-attention layer (a linear-attention layer has none)
    assert len(got.attentions) == types.count("full_attention") and _same(got.attentions, want.attentions)
    assert len(got.hidden_states) == layers + 1 and _same(got.hidden_states, want.hidden_states)


def test_batched_left_padded_generate_equals_the_stock_model(pair: Pair) -> None:
    inputs = pair.video(batch=2)
    assert bool((inputs["attention_mask"][:, 0] == 0).any())  # really left-padded
    with torch.no_grad():
        got = pair.ours.generate(**inputs, **GEN)
        want = pair.stock.generate(**inputs, **GEN)
    assert got.shape[0] == 2 and torch.equal(got, want)


def test_dense_loss_is_the_stock_loss(pair: Pair) -> None:
    """``labels`` give the stock loss, bit for bit (the dense path is the stock forward)."""
    inputs = pair.video()
    labels = inputs["input_ids"].clone()
    with torch.no_grad():
        got = pair.ours(**inputs, labels=labels).loss
        want = pair.stock(**inputs, labels=labels).loss
    assert got is not None and torch.isfinite(got) and torch.equal(got, want)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("cfg", [DENSE, HOLITOM], ids=["dense", "holitom"])
def test_a_prompt_without_the_video_token_names_it(pair: Pair, cfg: HoliTomConfig) -> None:
    inputs = pair.video()
    token_id = pair.ours.config.video_token_id
    keep = inputs["input_ids"][0] != token_id
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        if key in inputs:
            inputs[key] = inputs[key][:, keep]
    token = pair.ours.holitom_video_token
    assert pair.processor.tokenizer.convert_tokens_to_ids(token) == token_id
    with pytest.raises(ValueError, match=f"no video placeholder token '{token}'") as info:
        pair.ours.generate(**inputs, **GEN, holitom=pair.for_model(cfg))
    assert "holitom_prompt_length" not in str(info.value) and str(token_id) in str(info.value)
