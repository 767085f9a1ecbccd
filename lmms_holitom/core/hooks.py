"""The one way a probe watches a module: a forward hook registered on entry and removed on exit (also on errors),
the module's inputs and outputs unchanged — `PreHookProbe` sees its inputs, `OutputHookProbe` its output. The
saliency probes of every backend build on them."""

from __future__ import annotations

from typing import Any, TypeVar

from torch import nn

__all__ = ["OutputHookProbe", "PreHookProbe"]

_P = TypeVar("_P", bound="_HookProbe")


class _HookProbe:
    """A context manager holding one hook on ``self.module`` while active (subclasses say which hook)."""

    module: nn.Module
    _handle: Any = None

    def __enter__(self: _P) -> _P:
        self._handle = self._register()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _register(self) -> Any:
        raise NotImplementedError


class PreHookProbe(_HookProbe):
    """Calls ``self._hook(module, args, kwargs)`` before each forward of ``self.module`` while active (subclasses
    set ``module`` in ``__init__`` and define ``_hook``)."""

    def _register(self) -> Any:
        return self.module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        raise NotImplementedError


class OutputHookProbe(_HookProbe):
    """Calls ``self._hook(module, args, output)`` after each forward of ``self.module`` while active (subclasses set
    ``module`` in ``__init__`` and define ``_hook``, which returns None: the output is left as it is)."""

    def _register(self) -> Any:
        return self.module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        raise NotImplementedError
