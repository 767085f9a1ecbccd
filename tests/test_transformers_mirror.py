"""The code that mirrors transformers internals equals the stock modules of the INSTALLED transformers.

`engine.decoder.prefill_decoder` / `decode_decoder` mirror the text model's forward (rotary embedding, causal mask,
the layers, the final norm) and `engine.attention.last_token_attention` one row of a decoder layer's attention.
Each is compared here with the stock module of every decoder kind the families use — Qwen2 (LLaVA-OneVision,
1-D RoPE), Qwen2.5-VL's text model (M-RoPE) and Qwen3-VL's (interleaved M-RoPE, q/k norms) — on random weights and
random inputs, so a transformers release that changes what the stock code computes fails here first
(`make test-latest`). The supported range itself (`lmms_holitom.compat`) is tested at the end.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version
from transformers import AutoConfig
from transformers.cache_utils import DynamicCache

from lmms_holitom import compat
from lmms_holitom.core.state import PrefillState, SequenceState
from lmms_holitom.hf.attention import last_token_attention
from lmms_holitom.hf.decoder import decode_decoder, prefill_decoder
from lmms_holitom.testing import resolve_pretrained

KINDS = ("tiny", "tiny-qwen2.5-vl", "tiny-qwen3-vl")
LENGTH = 40


def _text_model(name: str, attn: str) -> torch.nn.Module:
    """The stock text model of a tiny model's config (random weights, fp32), with attention ``attn``."""
    from transformers import Qwen2_5_VLTextModel, Qwen2Model, Qwen3VLTextModel

    config = AutoConfig.from_pretrained(resolve_pretrained(name)).get_text_config()
    config._attn_implementation = attn
    cls = {"tiny": Qwen2Model, "tiny-qwen2.5-vl": Qwen2_5_VLTextModel, "tiny-qwen3-vl": Qwen3VLTextModel}[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = cls(config).eval()
        with torch.no_grad():  # norms start at 1: give them values so a skipped norm shows
            for name_, param in model.named_parameters():
                if "norm" in name_:
                    param.uniform_(0.5, 1.5)
    return model


def _positions(name: str, length: int, start: int = 0) -> torch.Tensor:
    """(1, L) positions for 1-D RoPE; (3, 1, L) M-RoPE positions with distinct t/h/w rows for the Qwen models."""
    base = torch.arange(start, start + length)
    if name == "tiny":
        return base.unsqueeze(0)
    return torch.stack([base, base // 3 + 7, base % 5 + start]).unsqueeze(1)


def _cache_tensors(cache: DynamicCache) -> list[torch.Tensor]:
    return [t for layer in cache.layers for t in (layer.keys, layer.values)]


@pytest.mark.parametrize("name", KINDS)
def test_prefill_and_decode_equal_the_stock_text_model(name: str) -> None:
    """`prefill_decoder` without an inner step and `decode_decoder` after it give the stock forward's hidden states
    and fill the cache with the same keys and values, bit for bit."""
    model = _text_model(name, "sdpa")
    gen = torch.Generator().manual_seed(1)
    embeds = torch.randn(1, LENGTH, model.config.hidden_size, generator=gen)
    step = torch.randn(1, 1, model.config.hidden_size, generator=gen)
    positions = _positions(name, LENGTH)
    with torch.no_grad():
        stock_cache = DynamicCache(config=model.config)
        stock = model(inputs_embeds=embeds, position_ids=positions, cache=stock_cache, use_cache=True)
        ours_cache = DynamicCache(config=model.config)
        ours = prefill_decoder(model, embeds, attention_mask=None, position_ids=positions, prompt_length=LENGTH,
                               cache=ours_cache, use_cache=True)
        assert torch.equal(ours.last_hidden_state, stock.last_hidden_state)
        assert all(torch.equal(a, b) for a, b in zip(_cache_tensors(ours_cache), _cache_tensors(stock_cache)))

        # decoding continues at next_position on every M-RoPE axis
        nxt = torch.tensor([LENGTH])
        step_positions = nxt.unsqueeze(0) if name == "tiny" else nxt.view(1, 1, 1).expand(3, 1, 1)
        stock_step = model(inputs_embeds=step, position_ids=step_positions, cache=stock_cache,
                           use_cache=True).last_hidden_state
        sequence = SequenceState(prompt_length=LENGTH, prompt_length_high=LENGTH, next_position=LENGTH)
        state = PrefillState(method="holitom_wo_m", merge_layer=None, rope_dims=1 if name == "tiny" else 3,
                             sequences=(sequence,))
        ours_step = decode_decoder(model, step, state=state, cache=ours_cache)
    assert torch.equal(ours_step, stock_step)
    assert all(torch.equal(a, b) for a, b in zip(_cache_tensors(ours_cache), _cache_tensors(stock_cache)))


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("query_index", [LENGTH - 1, 17])
def test_last_token_attention_equals_the_stock_layer(name: str, query_index: int) -> None:
    """One attention row from the layer's own projections equals the stock eager attention weights of that row
    (head mean), for every decoder kind, at M-RoPE positions with gaps."""
    model = _text_model(name, "eager")
    layer = model.layers[1]
    hidden = torch.randn(1, LENGTH, model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    positions = _positions(name, LENGTH) * 2 + 3  # gaps, as after the outer merge
    pe = model.rotary_emb(hidden, positions)
    causal = torch.full((LENGTH, LENGTH), float("-inf")).triu(1).view(1, 1, LENGTH, LENGTH)
    with torch.no_grad():
        _, weights = layer.self_attn(hidden_states=layer.input_layernorm(hidden), position_embeddings=pe,
                                     attention_mask=causal)
        row = last_token_attention(layer, hidden, pe, query_index)
    want = weights[0, :, query_index, : query_index + 1].mean(dim=0)
    torch.testing.assert_close(row, want, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------- supported range
def test_the_floors_are_pyprojects() -> None:
    """`compat.TRANSFORMERS_FLOOR` and every pin of requirements/floor.txt (what ``make test-floor`` installs) are
    the floors of the installed distribution's requirements; the newest checked release is inside the range."""
    requires: dict[str, Requirement] = {}
    for r in map(Requirement, importlib.metadata.requires("lmms-holitom") or ()):
        if r.marker is None:
            requires.setdefault(r.name, r)
        elif "extra" in str(r.marker) and r.marker.evaluate({"extra": "hf"}) and "platform" not in str(r.marker):
            requires[r.name] = r  # the transformers backend's pin (the `hf` extra) is the floor floor.txt tests
    floor_file = Path(__file__).resolve().parents[1] / "requirements" / "floor.txt"
    pins = [Requirement(line) for line in floor_file.read_text().splitlines() if line and not line.startswith("#")]
    assert {pin.name for pin in pins} == {"transformers", "accelerate", "torch", "lmms-eval"}
    for pin in pins:
        (version,) = [Version(s.version) for s in pin.specifier]
        floors = [Version(s.version) for s in requires[pin.name].specifier if s.operator in (">=", "==")]
        assert floors == [version], pin.name
    assert Version(compat.TRANSFORMERS_FLOOR) == next(Version(s.version) for s in requires["transformers"].specifier
                                                      if s.operator == ">=")
    assert compat.TRANSFORMERS_NEWEST_CHECKED in requires["transformers"].specifier


def test_below_the_floor_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(compat.UnsupportedTransformersError) as err:
        compat.check_transformers_version("5.23.0")
    assert str(err.value) == (
        f"lmms-holitom needs transformers >= {compat.TRANSFORMERS_FLOOR} (checked up to "
        f"{compat.TRANSFORMERS_NEWEST_CHECKED}); transformers 5.23.0 is installed: "
        f"pip install 'transformers>={compat.TRANSFORMERS_FLOOR},<6'"
    )
    # building a HoliTom model checks the installed release
    import transformers

    from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration

    monkeypatch.setattr(transformers, "__version__", "5.23.0")
    with pytest.raises(compat.UnsupportedTransformersError, match="transformers 5.23.0 is installed"):
        HoliTomLlavaOnevisionForConditionalGeneration.from_pretrained(resolve_pretrained("tiny"))


def test_newer_than_checked_warns_once(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "_warned", set())
    newest = compat.TRANSFORMERS_NEWEST_CHECKED
    major, minor = (int(x) for x in newest.split(".")[:2])
    with caplog.at_level(logging.WARNING, logger="lmms_holitom.compat"):
        for version in (compat.TRANSFORMERS_FLOOR, newest, f"{major}.{minor}.9"):  # checked: silent
            compat.check_transformers_version(version)
        assert caplog.records == []
        later = f"{major}.{minor + 1}.0"
        compat.check_transformers_version(later)
        compat.check_transformers_version(later)
    assert len(caplog.records) == 1
    assert f"transformers {later} is newer than the newest release" in caplog.records[0].getMessage()
    assert newest in caplog.records[0].getMessage()
