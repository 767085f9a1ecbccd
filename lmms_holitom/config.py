"""The one configuration object of lmms-holitom.

`HoliTomConfig` is a frozen dataclass holding every knob of the method (spec §0) plus the method to run
and the fidelity mode. It is validated once, at construction: every invalid value raises a `ValueError`
naming the parameter, the value and the allowed range.

Three constructors:

* ``HoliTomConfig(retain_ratio=0.15, tau=0.8, ...)`` — keyword arguments;
* ``HoliTomConfig.from_dict({...})`` — a mapping (YAML, lmms-eval ``model_args``); strings are coerced;
* ``HoliTomConfig.from_env()`` — the environment variables of the authors' scripts (``WRAPPER``,
  ``RETAIN_RATIO``, ``T``, ``HOLITOM_k``, ``HOLITOM_r``, ``BETA``, ``D``, ``K``, ``MAX_WINDOW_SIZE``,
  ``NO_BETA``, ``SPATIAL_TOKENS``, ``DOMINANT_RATIO``, ``FASTV_k``, ``FASTV_r``), and this package's own
  ``HOLITOM_BUDGET`` (``budget``), read like them.

Over 300 lines on purpose: the config's fields, ranges, per-method resolution and the authors' env-var rules.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from lmms_holitom.methods import DENSE, FASTV, HOLITOM, HOLITOM_WO_M, Method, get_method, method_names
from lmms_holitom.methods import METHODS as METHOD_REGISTRY
from lmms_holitom.values import (
    MAX_FRAMES,
    MAX_LAYER,
    MAX_TOKENS,
    parse_bool,
    parse_float,
    parse_int,
    parse_name,
    parse_optional_int,
)

__all__ = ["BUDGETS", "DEFAULTS", "ENV_VARS", "FIDELITIES", "METHODS", "HoliTomConfig"]

#: every method's name (the registry, `lmms_holitom.methods`, is the one list)
METHODS = method_names()
FIDELITIES = ("reference", "clean")
#: ``adaptive``: HoliTom's count follows the video; ``exact``: reconciled to ``F · ceil(retain_ratio · N)`` (§5c)
BUDGETS = ("adaptive", "exact")

Fidelity = Literal["reference", "clean"]
Budget = Literal["adaptive", "exact"]

#: the default of every field; a method's own defaults (`Method.defaults`, e.g. FastV's K = 2, r = 0.8) win
DEFAULTS: dict[str, Any] = {
    "method": HOLITOM,
    "retain_ratio": 0.10,
    "tau": 0.80,
    "merge_layer": 18,
    "merge_ratio": 0.5,
    "beta": 0.6,
    "contextual_ratio": 0.0,
    "knn_k": 7,
    "max_window_size": 1024,
    "beta_merge": True,
    "fidelity": "reference",
    "spatial_tokens": None,
    "dominant_ratio": 54 / 64,
    "budget": "adaptive",
}

#: fields added after records existed: `HoliTomConfig.to_dict` leaves them out at these (default) values, so the
#: records and manifests of runs that do not use them are what they were
_QUIET_DEFAULTS: dict[str, Any] = {"budget": "adaptive"}


class _Default:
    """The value of a field nobody set: resolved to the method's default, else `DEFAULTS`."""

    def __repr__(self) -> str:
        return "<default>"


_DEFAULT: Any = _Default()

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
    "HOLITOM_BUDGET": "budget",
}

#: field -> coercion (raises ValueError naming the field)
_COERCE: dict[str, Any] = {
    "method": parse_name,
    "retain_ratio": parse_float,
    "tau": parse_float,
    "merge_layer": parse_optional_int,
    "merge_ratio": parse_float,
    "beta": parse_float,
    "contextual_ratio": parse_float,
    "knn_k": parse_int,
    "max_window_size": parse_int,
    "beta_merge": parse_bool,
    "fidelity": parse_name,
    "spatial_tokens": parse_optional_int,
    "dominant_ratio": parse_float,
    "budget": parse_name,
}
_FINITE = ("retain_ratio", "tau", "merge_ratio", "beta", "contextual_ratio", "dominant_ratio")
_UNIT = "in [0, 1]"
#: field -> (is the coerced value allowed, what is allowed); the one source of the ranges
_RULES: dict[str, tuple[Any, str]] = {
    "method": (lambda v: v in METHODS, "one of " + ", ".join(METHODS)),
    "fidelity": (lambda v: v in FIDELITIES, "one of " + ", ".join(FIDELITIES)),
    "retain_ratio": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    "tau": (lambda v: v >= -1.0, "in [-1, inf) (a cosine threshold; > 1 disables temporal merging)"),
    "merge_ratio": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "merge_layer": (lambda v: v is None or 1 <= v <= MAX_LAYER,
                    f"an integer in [1, {MAX_LAYER}] (a decoder layer index) or none"),
    "beta": (lambda v: 0.0 <= v <= 1.0, _UNIT),
    "contextual_ratio": (lambda v: 0.0 <= v <= 1.0, _UNIT),
    "knn_k": (lambda v: 1 <= v <= MAX_TOKENS, f"an integer in [1, {MAX_TOKENS}]"),
    "max_window_size": (lambda v: 1 <= v <= MAX_FRAMES, f"an integer in [1, {MAX_FRAMES}] (frames)"),
    "spatial_tokens": (lambda v: v is None or 1 <= v <= MAX_TOKENS, f"an integer in [1, {MAX_TOKENS}] or none"),
    "dominant_ratio": (lambda v: 0.0 <= v <= 1.0, _UNIT),
    "budget": (lambda v: v in BUDGETS, "one of " + ", ".join(BUDGETS)),
}


def _unknown_message(unknown: list[str], valid: tuple[str, ...]) -> str:
    return f"unknown HoliTom parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}"


def _coerce(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Coerce and check every field of ``values`` (all fields present); return (coerced, problems)."""
    out: dict[str, Any] = {}
    problems: list[str] = []
    for name, parse in _COERCE.items():
        try:
            out[name] = parse(name, values[name])
        except ValueError as e:
            problems.append(str(e))
    for name, (ok, allowed) in _RULES.items():
        if name not in out:
            continue
        if name in _FINITE and not math.isfinite(out[name]):
            problems.append(f"{name} must be a finite number, got {out[name]!r}")
        elif not ok(out[name]):
            problems.append(f"{name} must be {allowed}, got {out[name]!r}")
    method = METHOD_REGISTRY.get(out.get("method", ""))
    if method is not None and method.outer is None and method.inner and out.get("merge_layer", 0) is None:
        problems.append(f"merge_layer must be set (an integer >= 1) for method {method.name!r}, got None")
    return out, problems


def _resolve(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], frozenset[str]]:
    """Every field of ``values`` (`_DEFAULT` or missing: unset) resolved — the method's own defaults, else
    `DEFAULTS` — coerced and checked: (coerced, problems, the fields that were set)."""
    given = frozenset(n for n in _COERCE if n in values and values[n] is not _DEFAULT)
    try:
        own = get_method(parse_name("method", values["method"])).defaults if "method" in given else {}
    except ValueError:
        own = {}  # the unknown method is reported by _coerce
    resolved = {n: values[n] if n in given else own.get(n, DEFAULTS[n]) for n in _COERCE}
    coerced, problems = _coerce(resolved)
    return coerced, problems, given


@dataclass(frozen=True)
class HoliTomConfig:
    """All parameters of HoliTom and its baselines (spec §0, §7).

    Attributes:
        method: a name of the method registry (`lmms_holitom.methods`; ``METHODS`` lists them), e.g. ``holitom``
            (outer + inner merge), ``holitom_wo_m`` (outer only), ``fastv`` (inner drop only) or ``dense`` (no
            compression). A field left unset takes the method's own default (FastV: K = 2, r = 0.8), else
            `DEFAULTS`; ``given`` names the fields that were set.
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
        budget: ``adaptive`` (HoliTom's count follows the video, as the paper's code does) or ``exact`` (the
            outer merge is reconciled to ``F · ceil(retain_ratio · N)`` tokens, `visual_budget`, fixed before
            the video is seen, as a serving engine needs; algorithm §5c). Read by ``holitom`` and
            ``holitom_wo_m``; the other methods' counts are fixed already. Env var: ``HOLITOM_BUDGET``.
    """

    method: str = _DEFAULT
    retain_ratio: float = _DEFAULT
    tau: float = _DEFAULT
    merge_layer: int | None = _DEFAULT
    merge_ratio: float = _DEFAULT
    beta: float = _DEFAULT
    contextual_ratio: float = _DEFAULT
    knn_k: int = _DEFAULT
    max_window_size: int = _DEFAULT
    beta_merge: bool = _DEFAULT
    fidelity: Fidelity = _DEFAULT
    spatial_tokens: int | None = _DEFAULT
    dominant_ratio: float = _DEFAULT
    budget: Budget = _DEFAULT
    #: the fields the caller set (the others hold the method's or the package's defaults)
    given: frozenset[str] = field(default=frozenset(), init=False, compare=False, repr=False)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        coerced, problems, given = _resolve({name: getattr(self, name) for name in _COERCE})
        if problems:
            raise ValueError("; ".join(problems))
        for name, value in coerced.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "given", given)

    @classmethod
    def problems(cls, values: Mapping[str, Any]) -> list[str]:
        """Every problem of a mapping of field values, one line each (``[]``: ``from_dict`` accepts it).

        Unlike the constructor, which raises on the first invalid configuration, this lists all of them:
        unknown keys, values of the wrong type and values out of range (the study validator uses it).
        """
        known = set(cls.field_names())
        problems = [_unknown_message(sorted(set(values) - known), cls.field_names())] if set(values) - known else []
        _, found, _ = _resolve({k: v for k, v in values.items() if k in known})
        return problems + found

    # ------------------------------------------------------------------ derived views
    @property
    def spec(self) -> Method:
        """The registry's `Method` of ``method`` (its label, signals, merges, budget)."""
        return get_method(self.method)

    @property
    def outer_merge(self) -> bool:
        """True when the method reduces the visual tokens before the LLM (`Method.outer`)."""
        return self.spec.outer is not None

    @property
    def needs_saliency(self) -> bool:
        """True when the method reads the vision tower's attention (the saliency probe must run)."""
        return self.spec.saliency

    @property
    def inner_mode(self) -> Literal["merge", "drop"] | None:
        """``merge`` (HoliTom), ``drop`` (FastV) or ``None`` (no inner-LLM step)."""
        return self.spec.inner_mode(self.merge_layer)

    def visual_budget(self, frames: int, tokens_per_frame: int) -> int:
        """Visual tokens entering the LLM as the cost model counts them (`Method.budget`)."""
        return self.spec.budget(self, frames, tokens_per_frame)

    def replace(self, **changes: Any) -> HoliTomConfig:
        """A validated copy with some fields changed; fields nobody set follow the (new) method's defaults."""
        return HoliTomConfig(**{**{name: getattr(self, name) for name in self.given}, **changes})

    def to_dict(self) -> dict[str, Any]:
        """Every field's effective value (``given`` aside), except ``budget`` while it is ``adaptive`` (records
        and manifests name it only when it changes something); ``from_dict`` reads it back to an equal config."""
        values = {name: getattr(self, name) for name in self.field_names()}
        return {k: v for k, v in values.items() if k not in _QUIET_DEFAULTS or v != _QUIET_DEFAULTS[k]}

    def given_dict(self) -> dict[str, Any]:
        """The fields the caller set, with their values."""
        return {name: getattr(self, name) for name in self.field_names() if name in self.given}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.init)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HoliTomConfig:
        """Build from a mapping; unknown keys raise a ValueError listing the valid ones."""
        problems = cls.problems(values)
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**dict(values))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> HoliTomConfig:
        """Build from the original scripts' environment variables; ``overrides`` win.

        ``WRAPPER`` selects the method as in the authors' lmms-eval fork: ``holitom`` is full HoliTom
        when both ``HOLITOM_k`` and ``HOLITOM_r`` are set and HoliTom w/o M otherwise (exactly the
        original's rule; a lone ``HOLITOM_k`` or ``HOLITOM_r`` is still checked, and an invalid one is an
        error); ``holitom_wo_m`` and ``visionzip`` select those methods, ``fastv`` FastV (which reads
        ``FASTV_k`` / ``FASTV_r``); unset, empty, ``none`` or ``dense`` mean ``dense``.
        ``NO_BETA=1`` means ``beta_merge=False``. A variable set to the empty string counts as unset
        (the default), as in the original shell scripts. Errors name the variable, e.g.
        ``HOLITOM_k (merge_layer): merge_layer must be an integer >= 1 ..., got -1``.
        """
        env = os.environ if environ is None else environ
        given = {var: env[var] for var in (*ENV_VARS, "FASTV_k", "FASTV_r") if env.get(var, "").strip() != ""}
        values = {ENV_VARS[var]: value for var, value in given.items() if var in ENV_VARS}
        if "beta_merge" in values:  # NO_BETA=1 -> plain mean
            values["beta_merge"] = not parse_bool("NO_BETA", values["beta_merge"])
        wrapper = env.get("WRAPPER", "").strip().lower()
        if wrapper in ("", "none", DENSE):
            values["method"] = DENSE
        elif wrapper == HOLITOM:
            full = "HOLITOM_k" in given and "HOLITOM_r" in given
            values["method"] = HOLITOM if full else HOLITOM_WO_M
            if not full:  # the original ignores a lone K or r, but not an invalid one
                _raise_env_problems(cls.problems({k: values.pop(k) for k in ("merge_layer", "merge_ratio")
                                                  if k in values}))
        elif wrapper == FASTV:
            values["method"] = FASTV
            values.update({name: given[var] for var, name in (("FASTV_k", "merge_layer"), ("FASTV_r", "merge_ratio"))
                           if var in given})
        elif wrapper in METHODS:
            values["method"] = wrapper
        else:
            allowed = ", ".join((*METHODS, "none"))
            raise ValueError(f"WRAPPER must be one of {allowed} (or unset), got {env.get('WRAPPER')!r}")
        _raise_env_problems(cls.problems({k: v for k, v in values.items() if k not in overrides}),
                            fastv=values["method"] == FASTV)
        values.update(overrides)
        return cls.from_dict(values)


def _raise_env_problems(problems: list[str], fastv: bool = False) -> None:
    """Raise one ValueError naming the environment variable of each problem (``HOLITOM_k (merge_layer): ...``)."""
    if not problems:
        return
    names = {name: var for var, name in ENV_VARS.items()}
    if fastv:
        names.update(merge_layer="FASTV_k", merge_ratio="FASTV_r")
    lines = []
    for problem in problems:
        field_name = problem.split(" ", 1)[0]
        var = names.get(field_name)
        lines.append(f"{var} ({field_name}): {problem}" if var else problem)
    raise ValueError("; ".join(lines))
