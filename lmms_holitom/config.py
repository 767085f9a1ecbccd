"""The one configuration object of lmms-holitom.

`HoliTomConfig` is a frozen dataclass holding every knob of the method (spec §0) plus the method to run
and the fidelity mode. It is validated once, at construction: every invalid value raises a `ValueError`
naming the parameter, the value and the allowed range.

Three constructors:

* ``HoliTomConfig(retain_ratio=0.15, tau=0.8, ...)`` — keyword arguments;
* ``HoliTomConfig.from_dict({...})`` — a mapping (YAML, lmms-eval ``model_args``); strings are coerced;
* ``HoliTomConfig.from_env()`` — the environment variables of the authors' scripts (``WRAPPER``,
  ``RETAIN_RATIO``, ``T``, ``HOLITOM_k``, ``HOLITOM_r``, ``BETA``, ``D``, ``K``, ``MAX_WINDOW_SIZE``,
  ``NO_BETA``, ``SPATIAL_TOKENS``, ``DOMINANT_RATIO``, ``FASTV_k``, ``FASTV_r``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

__all__ = ["HoliTomConfig", "METHODS", "FIDELITIES", "ENV_VARS"]

METHODS = ("holitom", "holitom_wo_m", "visionzip", "fastv", "dense")
FIDELITIES = ("reference", "clean")

Method = Literal["holitom", "holitom_wo_m", "visionzip", "fastv", "dense"]
Fidelity = Literal["reference", "clean"]

#: Environment variable of the original scripts -> our field name.
ENV_VARS: dict[str, str] = {
    "RETAIN_RATIO": "retain_ratio",
    "T": "tau",
    "HOLITOM_k": "merge_layer",
    "HOLITOM_r": "merge_ratio",
    "BETA": "beta",
    "D": "contextual_ratio",
    "K": "knn_k",
    "MAX_WINDOW_SIZE": "max_window_size",
    "NO_BETA": "beta_merge",
    "SPATIAL_TOKENS": "spatial_tokens",
    "DOMINANT_RATIO": "dominant_ratio",
}

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be a boolean (true/false), got {value!r}")


def _parse_optional_int(name: str, value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
        return None
    return _parse_int(name, value)


def _parse_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be an integer, got {value!r}")


def _parse_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be a number, got {value!r}")


@dataclass(frozen=True)
class HoliTomConfig:
    """All parameters of HoliTom and its baselines (spec §0, §7).

    Attributes:
        method: ``holitom`` (outer + inner merge), ``holitom_wo_m`` (outer only), ``visionzip``,
            ``fastv`` (inner drop only) or ``dense`` (no compression).
        retain_ratio: target fraction of visual tokens entering the LLM, in (0, 1]. Paper: ``RETAIN_RATIO``.
        tau: cosine threshold above which a token position is static between two frames, in [-1, inf);
            ``tau > 1`` disables temporal merging. Paper: ``T`` (0.65 at retain 0.10, 0.80 otherwise).
        merge_layer: decoder layer K of the inner-LLM merge (``holitom``) or drop (``fastv``); ``None``
            turns ``holitom`` into ``holitom_wo_m``. Paper: ``HOLITOM_k``.
        merge_ratio: fraction of visual tokens merged (or dropped) at ``merge_layer``, in [0, 1).
            Paper: ``HOLITOM_r``.
        beta: weight of a cluster centre against the mean of its members, in [0, 1]. Paper: ``BETA``.
        contextual_ratio: share of each frame's dynamic budget spent on contextual (clustered) tokens,
            in [0, 1]. Paper: ``D``.
        knn_k: neighbours for the DPC-kNN density, >= 1. Original env var: ``K``.
        max_window_size: longest temporal segment in frames, >= 1. Original: ``MAX_WINDOW_SIZE``.
        beta_merge: when false a cluster token is the plain mean of centre and members (``NO_BETA``).
        fidelity: ``reference`` reproduces the original code's quirks (spec §6.3, §6.5); ``clean``
            does the principled thing.
        spatial_tokens: VisionZip tokens per frame; ``None`` means ``round(retain_ratio * N)``.
            Original: ``SPATIAL_TOKENS``.
        dominant_ratio: VisionZip share of dominant tokens, in [0, 1]. Original: ``DOMINANT_RATIO``.
    """

    method: Method = "holitom"
    retain_ratio: float = 0.10
    tau: float = 0.80
    merge_layer: int | None = 18
    merge_ratio: float = 0.5
    beta: float = 0.6
    contextual_ratio: float = 0.0
    knn_k: int = 7
    max_window_size: int = 1024
    beta_merge: bool = True
    fidelity: Fidelity = "reference"
    spatial_tokens: int | None = None
    dominant_ratio: float = field(default=54 / 64)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        coerce = {
            "method": lambda n, v: str(v).strip().lower(),
            "retain_ratio": _parse_float,
            "tau": _parse_float,
            "merge_layer": _parse_optional_int,
            "merge_ratio": _parse_float,
            "beta": _parse_float,
            "contextual_ratio": _parse_float,
            "knn_k": _parse_int,
            "max_window_size": _parse_int,
            "beta_merge": _parse_bool,
            "fidelity": lambda n, v: str(v).strip().lower(),
            "spatial_tokens": _parse_optional_int,
            "dominant_ratio": _parse_float,
        }
        for name, fn in coerce.items():
            object.__setattr__(self, name, fn(name, getattr(self, name)))

        def bad(name: str, allowed: str) -> ValueError:
            return ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")

        def finite(name: str) -> None:
            if not math.isfinite(getattr(self, name)):
                raise bad(name, "a finite number")

        if self.method not in METHODS:
            raise bad("method", "one of " + ", ".join(METHODS))
        if self.fidelity not in FIDELITIES:
            raise bad("fidelity", "one of " + ", ".join(FIDELITIES))
        for name in ("retain_ratio", "tau", "merge_ratio", "beta", "contextual_ratio", "dominant_ratio"):
            finite(name)
        if not 0.0 < self.retain_ratio <= 1.0:
            raise bad("retain_ratio", "in (0, 1]")
        if self.tau < -1.0:
            raise bad("tau", "in [-1, inf) (a cosine threshold; > 1 disables temporal merging)")
        if not 0.0 <= self.merge_ratio < 1.0:
            raise bad("merge_ratio", "in [0, 1)")
        if self.merge_layer is not None and self.merge_layer < 1:
            raise bad("merge_layer", "an integer >= 1 (a decoder layer index) or None")
        if self.method == "fastv" and self.merge_layer is None:
            raise ValueError("merge_layer must be set (an integer >= 1) for method 'fastv', got None")
        if not 0.0 <= self.beta <= 1.0:
            raise bad("beta", "in [0, 1]")
        if not 0.0 <= self.contextual_ratio <= 1.0:
            raise bad("contextual_ratio", "in [0, 1]")
        if self.knn_k < 1:
            raise bad("knn_k", "an integer >= 1")
        if self.max_window_size < 1:
            raise bad("max_window_size", "an integer >= 1")
        if self.spatial_tokens is not None and self.spatial_tokens < 1:
            raise bad("spatial_tokens", "an integer >= 1 or None")
        if not 0.0 <= self.dominant_ratio <= 1.0:
            raise bad("dominant_ratio", "in [0, 1]")

    # ------------------------------------------------------------------ derived views
    @property
    def outer_merge(self) -> bool:
        """True when the visual tokens are compressed before the LLM (HoliTom or VisionZip)."""
        return self.method in ("holitom", "holitom_wo_m", "visionzip")

    @property
    def inner_mode(self) -> Literal["merge", "drop"] | None:
        """``merge`` (HoliTom), ``drop`` (FastV) or ``None`` (no inner-LLM step)."""
        if self.method == "holitom" and self.merge_layer is not None:
            return "merge"
        if self.method == "fastv":
            return "drop"
        return None

    def visionzip_tokens(self, tokens_per_frame: int) -> int:
        """Tokens kept per frame by VisionZip: ``spatial_tokens`` or ``round(retain_ratio * N)``."""
        if self.spatial_tokens is not None:
            return min(self.spatial_tokens, tokens_per_frame)
        return max(1, min(tokens_per_frame, round(self.retain_ratio * tokens_per_frame)))

    def replace(self, **changes: Any) -> HoliTomConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HoliTomConfig:
        """Build from a mapping; unknown keys raise a ValueError listing the valid ones."""
        known = set(cls.field_names())
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown HoliTom parameter(s) {', '.join(unknown)}; valid: {', '.join(cls.field_names())}"
            )
        return cls(**dict(values))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> HoliTomConfig:
        """Build from the original scripts' environment variables; ``overrides`` win.

        ``WRAPPER`` selects the method as in the authors' lmms-eval fork: ``holitom`` is full HoliTom
        when both ``HOLITOM_k`` and ``HOLITOM_r`` are set and HoliTom w/o M otherwise (exactly the
        original's rule); ``visionzip`` and ``fastv`` select those baselines (FastV reads ``FASTV_k`` /
        ``FASTV_r``); unset or empty means ``dense``. ``NO_BETA=1`` means ``beta_merge=False``.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        wrapper = env.get("WRAPPER", "").strip().lower()
        for var, name in ENV_VARS.items():
            if var in env and env[var].strip() != "":
                values[name] = env[var]
        if "beta_merge" in values:  # NO_BETA=1 -> plain mean
            values["beta_merge"] = not _parse_bool("NO_BETA", values["beta_merge"])
        if wrapper in ("", "none", "dense"):
            values["method"] = "dense"
        elif wrapper == "holitom":
            full = env.get("HOLITOM_k", "").strip() != "" and env.get("HOLITOM_r", "").strip() != ""
            values["method"] = "holitom" if full else "holitom_wo_m"
            if not full:
                values.pop("merge_layer", None)
                values.pop("merge_ratio", None)
        elif wrapper == "fastv":
            values["method"] = "fastv"
            if env.get("FASTV_k", "").strip():
                values["merge_layer"] = env["FASTV_k"]
            if env.get("FASTV_r", "").strip():
                values["merge_ratio"] = env["FASTV_r"]
        elif wrapper in METHODS:
            values["method"] = wrapper
        else:
            raise ValueError(f"WRAPPER must be one of holitom, visionzip, fastv, dense, got {wrapper!r}")
        values.update(overrides)
        return cls.from_dict(values)
