"""`core.hooks`: a probe's hook runs while the probe is active, sees the module's inputs (`PreHookProbe`) or output
(`OutputHookProbe`) without changing them, and is removed on exit, also when the block raises."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from lmms_holitom.core.hooks import OutputHookProbe, PreHookProbe


class _Inputs(PreHookProbe):
    def __init__(self, module: nn.Module) -> None:
        self.module, self.seen = module, []

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.seen.append(args[0].clone())


class _Outputs(OutputHookProbe):
    def __init__(self, module: nn.Module) -> None:
        self.module, self.seen = module, []

    def _hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.seen.append(output.clone())


@pytest.mark.parametrize("probe_class", [_Inputs, _Outputs])
def test_hook_sees_each_call_leaves_results_unchanged_and_is_removed(probe_class: type) -> None:
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    stock = layer(x)
    with probe_class(layer) as probe:
        assert torch.equal(layer(x), stock)
        layer(2 * x)
    assert len(probe.seen) == 2
    assert torch.equal(probe.seen[0], x if probe_class is _Inputs else stock)
    layer(x)
    assert len(probe.seen) == 2 and not layer._forward_hooks and not layer._forward_pre_hooks


@pytest.mark.parametrize("probe_class", [_Inputs, _Outputs])
def test_hook_is_removed_when_the_block_raises(probe_class: type) -> None:
    layer = nn.Linear(4, 3)
    with pytest.raises(RuntimeError, match="boom"), probe_class(layer):
        raise RuntimeError("boom")
    assert not layer._forward_hooks and not layer._forward_pre_hooks
