"""`OpCounter`: counts every aten operator dispatched inside its block (imported as a plain module by the
complexity tests). A Python loop over tokens makes the count grow with the input; a host synchronisation shows up
as ``_local_scalar_dense`` (``.item()``, ``bool(tensor)``), ``nonzero``, ``unique`` or a data-dependent
``masked_select``."""

from __future__ import annotations

from collections import Counter

from torch.utils._python_dispatch import TorchDispatchMode

SYNCING = ("aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.unique")


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def syncs(self) -> int:
        return sum(n for name, n in self.ops.items() if name.startswith(SYNCING))
