"""Hooks of the ``holitom_smoke`` / ``holitom_smoke_corrupt`` tasks (tiny local multiple-choice video QA).

Clips are generated on first use by ``make_clips.ensure_clips()`` (see that module for where they live).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from functools import lru_cache
from pathlib import Path

LETTERS = "ABCD"
POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


def _make_clips():
    name = "holitom_smoke_make_clips"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("make_clips.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@lru_cache(maxsize=1)
def _clips() -> Path:
    return _make_clips().ensure_clips()


def doc_to_visual(doc: dict) -> list[str]:
    """The clip path (generated on first use); the corrupt task also points at missing/corrupt files."""
    return [str(_clips() / doc["video"])]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    pre = kwargs.get("pre_prompt", "")
    post = kwargs.get("post_prompt", POST_PROMPT)
    options = "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(doc["options"]))
    return f"{pre}{doc['question']}\n{options}{post}"


def extract_letter(response: str, options: list[str] | None = None) -> str | None:
    """The chosen option letter of a free-form answer (``"B"``, ``"(C)"``, ``"Answer: A. ..."``), or None."""
    text = response.strip()
    match = re.match(r"^\(?([A-D])\)?(?:[.:)\s]|$)", text)
    if match:
        return match.group(1)
    match = re.search(r"(?:answer|option)\s*(?:is)?\s*[:\-]?\s*\(?([A-D])\b", text, flags=re.IGNORECASE)
    if match:
        return match.group(1).upper()
    match = re.search(r"\b([A-D])\b", text)
    if match:
        return match.group(1)
    if options:
        lowered = text.lower()
        hits = [LETTERS[i] for i, opt in enumerate(options) if opt.lower() in lowered]
        if len(hits) == 1:
            return hits[0]
    return None


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    pred = extract_letter(results[0] if results else "", doc.get("options"))
    return {"accuracy": float(pred == doc["answer"])}
