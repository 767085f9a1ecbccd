"""The token-reduction methods, one module each, and their registry: the one list of methods.

``METHODS`` maps each name to its `Method` (what it reads, its defaults, the signals it needs, its outer merge,
its step at layer K, its token budget, its label), in the order reports list them. A new method is a module here
(plus, for a new kind of merge, its tensor functions in `lmms_holitom.ops`) and one line below; the config's
validation, the CLI's choices, ``flops``, ``bench``, studies, reports and plots read this registry.
"""

from __future__ import annotations

from lmms_holitom.methods import dense, evs, fastv, holitom, vidcom2, visionzip
from lmms_holitom.methods.base import InnerMode, Method, OuterMerge

__all__ = ["DENSE", "FASTV", "HOLITOM", "HOLITOM_WO_M", "METHODS", "InnerMode", "Method", "OuterMerge",
           "get_method", "method_names"]

METHODS: dict[str, Method] = {m.name: m for m in (
    dense.METHOD, fastv.METHOD, visionzip.METHOD, holitom.WO_M, holitom.METHOD, evs.METHOD, vidcom2.METHOD,
)}

#: the names with a role outside their module: the no-reduction baseline; the package's own method (its default,
#: its paper's targets) with its outer-merge-only variant; and the two the authors' ``WRAPPER`` variable maps with
#: their own rules (`config.HoliTomConfig.from_env`)
DENSE, HOLITOM, HOLITOM_WO_M, FASTV = dense.METHOD.name, holitom.METHOD.name, holitom.WO_M.name, fastv.METHOD.name


def method_names() -> tuple[str, ...]:
    """Every method's name, in report order."""
    return tuple(METHODS)


def get_method(name: str) -> Method:
    """The `Method` called ``name``; ValueError listing the known names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {name!r}") from None
