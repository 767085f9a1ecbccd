"""The sub-commands of ``holitom`` (see `lmms_holitom.cli`) and the argument checks they share.

A command reports a user error by raising `UsageError` (a `ValueError`): `lmms_holitom.cli.main` prints it
as one line and exits 2.
"""

from __future__ import annotations

__all__ = ["UsageError", "at_least", "check_device"]


class UsageError(ValueError):
    """A bad value given by the user; the message names it and says what is allowed."""


def at_least(flag: str, value: int | float | None, minimum: int | float) -> None:
    """Raise `UsageError` unless ``value`` is None or ``>= minimum``."""
    if value is not None and value < minimum:
        raise UsageError(f"{flag} must be >= {minimum}, got {value!r}")


def check_device(flag: str, name: str | None) -> None:
    """``cpu``, ``cuda``, ``cuda:N``, ... that exists on this machine (``auto``/None: always fine)."""
    if name is None or name == "auto":
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"{flag} must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{flag} {name}: CUDA is not available on this machine (allowed: auto, cpu)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(f"{flag} {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
