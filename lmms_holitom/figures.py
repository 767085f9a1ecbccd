"""What every figure of the package shares: matplotlib Figures without pyplot, and one colour and marker per method.

Figures are built as ``matplotlib.figure.Figure`` objects (no pyplot, no global backend or figure list): a
function builds and returns one, its caller saves it with ``fig.savefig`` (the Agg canvas), and tests read its
axes, labels, limits and texts. matplotlib is an optional dependency (``pip install 'lmms-holitom[plot]'``).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from lmms_holitom.io import default_file_mode
from lmms_holitom.methods import METHODS

__all__ = ["METHOD_COLORS", "METHOD_MARKERS", "PlotsUnavailable", "log_scale", "new_figure", "save_png"]

# one colour and marker per method, in the registry's order (dense, FastV, VisionZip, HoliTom w/o M, HoliTom, EVS,
# VidCom2, then any later method)
_PALETTE = ("#444444", "#9467bd", "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#8c564b", "#e377c2", "#17becf")
_SHAPES = ("s", "D", "o", "^", "*", "v", "P", "X", "h")
METHOD_COLORS = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(METHODS)}
METHOD_MARKERS = {name: _SHAPES[i % len(_SHAPES)] for i, name in enumerate(METHODS)}


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def new_figure(remedy: str = "", **kwargs: Any) -> Any:
    """A ``matplotlib.figure.Figure(**kwargs)``; without matplotlib, `PlotsUnavailable` naming the install
    command (and ``remedy``, e.g. the flag that skips the plots)."""
    try:
        import matplotlib  # noqa: F401  (first: a submodule already imported would not say matplotlib is gone)
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotsUnavailable("plots need matplotlib: pip install matplotlib (or pip install 'lmms-holitom[plot]')"
                               + (f"; {remedy}" if remedy else "")) from None
    return Figure(**kwargs)


def log_scale(axis: Any) -> None:
    """A logarithmic ``ax.xaxis`` / ``ax.yaxis`` with plain numbers (0.5, 2, 10 — no 10^x), minor ticks at 2 and 5
    labelled so a short range still has numbers."""
    from matplotlib.ticker import FuncFormatter

    if axis is axis.axes.xaxis:
        axis.axes.set_xscale("log")
    else:
        axis.axes.set_yscale("log")
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


def save_png(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG atomically (a temporary file beside ``path``, then ``os.replace``): concurrent
    writers and readers never see half an image. Parent folders are created; returns the path."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
