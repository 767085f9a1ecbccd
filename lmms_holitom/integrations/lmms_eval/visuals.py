"""A request's visuals: the task's ``doc_to_visual`` called safely, and its video decoded.

lmms-eval tasks fail in their own ways when a video is missing: Video-MME and EgoSchema call ``sys.exit``,
MVBench only logs and returns the path, LongVideoBench returns the path. Whatever ``doc_to_visual`` raises
(``SystemExit`` included) and whatever decoding raises (`VideoDecodeError`) becomes a `VisualError` for that
one sample, naming the file when it can be found.

A document with several videos is one failed sample too (`check_one_video`): the models compress one video per
prompt, and answering from the first video alone would score a question the model never saw whole. Every method,
``dense`` included, fails the same documents, so a dense run and a compressed run score the same samples.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmms_holitom.video import VideoDecodeError, load_video_frames

__all__ = ["FAILED_ANSWER", "Visuals", "VisualError", "call_doc_to_visual", "check_one_video", "load_visuals"]

#: The answer of a sample whose video failed. Not empty (MVBench's aggregation skips empty answers, which
#: would raise its accuracy) and free of option letters (no task parses a choice out of it): MVBench and
#: Video-MME score it wrong; EgoSchema and LongVideoBench map an unparseable answer to a random choice.
FAILED_ANSWER = "[video error]"

_PATH_RE = re.compile(r"(/[^\s:'\"]+\.(?:mp4|MP4|mkv|webm|avi|mov))")


class VisualError(RuntimeError):
    """The visuals of one sample could not be produced (``video``: the file, when known)."""

    def __init__(self, message: str, video: str | None = None) -> None:
        super().__init__(message)
        self.video = video


@dataclass
class Visuals:
    """What the model gets for one sample: one video's frames, or images, or nothing (text only)."""

    video: Any = None  # (F, H, W, 3) uint8 frames
    video_path: str | None = None
    images: list[Any] = field(default_factory=list)
    decode_ms: float | None = None

    @property
    def modality(self) -> str:
        return "video" if self.video is not None else ("image" if self.images else "text")


def call_doc_to_visual(doc_to_visual: Callable[[Any], Any], doc: Any) -> list[Any]:
    """``doc_to_visual(doc)`` as a list; anything it raises (``SystemExit`` too) becomes a `VisualError`."""
    try:
        visuals = doc_to_visual(doc)
    except (Exception, SystemExit) as exc:
        text = str(exc.code if isinstance(exc, SystemExit) else exc).strip() or type(exc).__name__
        match = _PATH_RE.search(text)
        raise VisualError(f"doc_to_visual raised {type(exc).__name__}: {text}",
                          match.group(1) if match else None) from exc
    return [] if visuals is None else list(visuals)


def check_one_video(paths: list[Any]) -> str:
    """The document's one video path; several videos raise a `VisualError` naming each (and which are missing).

    The error's ``video`` is the first missing file, else the first file.
    """
    paths = [os.fspath(p) for p in paths]
    if len(paths) == 1:
        return paths[0]
    missing = [p for p in paths if not os.path.isfile(p)]
    shown = ", ".join(p + (" (missing)" if p in missing else "") for p in paths)
    raise VisualError(f"{len(paths)} videos in one document ({shown}); the model takes one video per prompt",
                      (missing or paths)[0])


def load_visuals(visuals: list[Any], max_frames_num: int, backend: str) -> Visuals:
    """Decode the document's one video (a path) or pass images through. Raises `VisualError` for a bad video or
    several videos (`check_one_video`)."""
    if not visuals:
        return Visuals()
    if not all(isinstance(v, (str, os.PathLike)) for v in visuals):
        return Visuals(images=list(visuals))
    path = check_one_video(visuals)
    t0 = time.perf_counter()
    try:
        frames = load_video_frames(path, max_frames_num, backend)
    except VideoDecodeError as exc:
        raise VisualError(f"VideoDecodeError: {exc}", path) from exc
    return Visuals(video=frames, video_path=path, decode_ms=(time.perf_counter() - t0) * 1000.0)
