"""The one way a probe watches a module: a forward hook registered on entry and removed on exit (also on errors),
the module's inputs and outputs unchanged — `PreHookProbe` sees its inputs, `OutputHookProbe` its output. The
saliency probes of every backend build on them."""

from __future__ import annotations

from typing import Any, TypeVar

from torch import nn

__all__ = ["OutputHookProbe", "PreHookProbe"]

_P = TypeVar("_P", bound="PreHookProbe")
_O = TypeVar("_O", bound="OutputHookProbe")


class PreHookProbe:
    """Base of a context manager that calls ``self._hook(module, args, kwargs)`` before each forward of
    ``self.module`` while active (subclasses set ``module`` in ``__init__`` and define ``_hook``)."""

    module: nn.Module
    _handle: Any = None

    def __enter__(self: _P) -> _P:
        self._handle = self.module.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        raise NotImplementedError


class OutputHookProbe:
    """Base of a context manager that calls ``self._hook(module, args, output)`` after each forward of
    ``self.module`` while active (subclasses set ``module`` in ``__init__`` and define ``_hook``, which returns
    None: the output is left as it is)."""

    module: nn.Module
    _handle: Any = None

    def __enter__(self: _O) -> _O:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        raise NotImplementedError
