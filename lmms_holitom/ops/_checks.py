"""Argument validation for the tensor layer.

Every check raises a `ValueError` whose message starts with the argument's name and states the shape or
value it got, so that a bad call never turns into a silent wrong answer. The checks are cheap: shapes and
dtypes are host-side; finiteness is checked on small tensors (attention, per-token norms) rather than on
the whole feature tensor (``torch.isfinite(features).all()`` costs ~20 full passes on a 2-core CPU).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = [
    "check_attention",
    "check_features",
    "check_finite",
    "check_int",
    "check_keys",
    "check_ratio",
    "check_tensor",
]


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_tensor(name: str, value: object, ndim: int, *, floating: bool = True) -> Tensor:
    """`value` must be a `ndim`-D tensor (of a floating dtype when `floating`)."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != ndim:
        raise ValueError(f"{name} must be a {ndim}-D tensor, got shape {_shape(value)}")
    if floating and not value.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype, got {value.dtype} (shape {_shape(value)})")
    return value


def check_features(features: object, name: str = "features") -> Tensor:
    """(F, N, E) floating tensor with F, N, E >= 1."""
    t = check_tensor(name, features, 3)
    if min(t.shape) < 1:
        raise ValueError(f"{name} must be a non-empty (F, N, E) tensor (F, N, E >= 1), got shape {_shape(t)}")
    return t


def check_attention(attention: object, frames: int, tokens: int, name: str = "attention") -> Tensor:
    """(F, N) floating tensor matching the features' first two dimensions, all finite."""
    t = check_tensor(name, attention, 2)
    if _shape(t) != (frames, tokens):
        raise ValueError(
            f"{name} must have shape (F, N) = ({frames}, {tokens}) to match features, got shape {_shape(t)}"
        )
    check_finite(name, t)
    return t


def check_keys(keys: object, frames: int, tokens: int, name: str = "keys") -> Tensor:
    """(F, N, Dk) floating tensor matching the features' first two dimensions, Dk >= 1."""
    t = check_tensor(name, keys, 3)
    if _shape(t)[:2] != (frames, tokens) or t.shape[2] < 1:
        raise ValueError(
            f"{name} must have shape (F, N, Dk) = ({frames}, {tokens}, Dk>=1) to match features, got shape {_shape(t)}"
        )
    return t


def check_finite(name: str, t: Tensor, what: str = "") -> None:
    """Raise when `t` holds NaN or inf (one host sync; meant for small tensors)."""
    if t.numel() and not bool(torch.isfinite(t).all()):
        extra = f" ({what})" if what else ""
        raise ValueError(f"{name} must be finite, found NaN or inf{extra}; shape {_shape(t)}")


def check_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not bool) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v


def check_ratio(name: str, value: object, *, low: float, high: float, high_open: bool) -> float:
    """A finite real number in [low, high) (``high_open``) or [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and low <= v and (v < high if high_open else v <= high)
    if not ok:
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v
