"""The transformers releases this package's mirrored internals were checked against, and the check at load time.

Two pieces of the engine mirror transformers code rather than call it (`hf.decoder`: the decoder-layer loop of
``Qwen2Model.forward`` and its Qwen2.5-VL / Qwen3-VL text-model twins; `hf.attention`: one row of a decoder
layer's attention). ``tests/test_transformers_mirror.py`` compares each with the stock modules of the installed
transformers on random inputs, so a release that diverges turns ``make test-latest`` red.

`check_transformers_version` runs when a HoliTom model is built: below `TRANSFORMERS_FLOOR` (the floor in
``pyproject.toml``; a test keeps the two equal) it raises `UnsupportedTransformersError`, one line naming the
installed and the supported versions; above `TRANSFORMERS_NEWEST_CHECKED` it logs one warning per process and goes
on. Versions compare by release (major.minor): a patch release of a checked minor counts as checked.
"""

from __future__ import annotations

import logging

from packaging.version import Version

__all__ = [
    "TRANSFORMERS_FLOOR",
    "TRANSFORMERS_NEWEST_CHECKED",
    "UnsupportedTransformersError",
    "check_transformers_version",
]

logger = logging.getLogger(__name__)

#: the oldest transformers release the test suite passes on (``pyproject.toml``'s floor)
TRANSFORMERS_FLOOR = "5.24.0"
#: the newest transformers release the mirrored code was compared with (``make test-latest``)
TRANSFORMERS_NEWEST_CHECKED = "5.25.0"

_warned: set[str] = set()


class UnsupportedTransformersError(RuntimeError):
    """The installed transformers is older than the package supports."""


def _minor(version: str) -> tuple[int, int]:
    release = Version(version).release
    return release[0], release[1] if len(release) > 1 else 0


def check_transformers_version(installed: str | None = None) -> None:
    """Raise `UnsupportedTransformersError` below the floor; warn once above the newest checked release.

    Args:
        installed: the version to check (default: the installed ``transformers.__version__``).
    """
    if installed is None:
        import transformers

        installed = transformers.__version__
    if Version(installed) < Version(TRANSFORMERS_FLOOR):
        raise UnsupportedTransformersError(
            f"lmms-holitom needs transformers >= {TRANSFORMERS_FLOOR} (checked up to {TRANSFORMERS_NEWEST_CHECKED}); "
            f"transformers {installed} is installed: pip install 'transformers>={TRANSFORMERS_FLOOR},<6'"
        )
    if _minor(installed) > _minor(TRANSFORMERS_NEWEST_CHECKED) and installed not in _warned:
        _warned.add(installed)
        logger.warning(
            "lmms-holitom: transformers %s is newer than the newest release its decoder loop and attention probe "
            "were checked against (%s); if results look wrong, run its test suite (make test-latest) or install "
            "transformers<=%s", installed, TRANSFORMERS_NEWEST_CHECKED, TRANSFORMERS_NEWEST_CHECKED,
        )
