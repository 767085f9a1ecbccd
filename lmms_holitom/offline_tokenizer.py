"""A byte-level BPE tokenizer built offline from a word list: the tiny models' tokenizers and the bench's stand-in.

The alphabet is GPT-2's reversible byte map (every string encodes, every id decodes), so any text round-trips;
a few merges keep common words short; the special tokens come last, in the order given. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["bytes_to_unicode", "byte_level_tokenizer"]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode map (the alphabet of byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _vocab_and_merges(words: Iterable[str], special_tokens: Sequence[str]) -> tuple[dict[str, int], list]:
    """The byte alphabet, then left-to-right merges spelling each word, then the special tokens."""
    vocab = {ch: i for i, ch in enumerate(sorted(bytes_to_unicode().values()))}
    merges: list[tuple[str, str]] = []
    for word in words:
        pieces = list(word)
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append((pieces[0], pieces[1]))
            pieces = [merged, *pieces[2:]]
    for tok in special_tokens:
        vocab[tok] = len(vocab)
    return vocab, merges


def byte_level_tokenizer(
    special_tokens: Sequence[str],
    *,
    words: Iterable[str] = (),
    additional_special_tokens: Sequence[str] = (),
    chat_template: str | None = None,
    **kwargs: Any,
) -> Any:
    """A transformers ``Qwen2Tokenizer`` over the byte alphabet, ``words``' merges and ``special_tokens``.

    Args:
        special_tokens: tokens appended to the vocabulary, in this order (their ids follow the alphabet + merges).
        words: words whose left-to-right merges are added (shorter prompts; the ids are fixed by the list order).
        additional_special_tokens: of ``special_tokens``, those registered as special (never split, skipped on
            ``decode(skip_special_tokens=True)``).
        chat_template: the tokenizer's chat template.
        **kwargs: passed to ``Qwen2Tokenizer`` (``eos_token``, ``pad_token``, ``extra_special_tokens``...).
    """
    from transformers import Qwen2Tokenizer

    vocab, merges = _vocab_and_merges(words, special_tokens)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, **kwargs)
    if additional_special_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(additional_special_tokens)})
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer
