"""The method registry (`lmms_holitom.methods`) is the one list: each method's defaults hold everywhere (FastV is
K = 2, r = 0.8 in the config, the env vars, ``holitom flops`` and ``holitom run``), a config knows which fields were
set, and the methods and the tensor layer import no transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmms_holitom.config import METHODS, HoliTomConfig
from lmms_holitom.methods import METHODS as REGISTRY
from lmms_holitom.methods import get_method


def test_the_registry_is_the_list() -> None:
    from lmms_holitom.sweep.report_rows import METHOD_LABELS
    from lmms_holitom.sweep.spec import HEADLINE, IRRELEVANT

    assert tuple(REGISTRY) == METHODS and METHODS[0] == "dense"
    for name, spec in REGISTRY.items():
        assert spec.name == name and METHOD_LABELS[name] == spec.label and HEADLINE[name] == spec.headline
        assert set(spec.headline) <= spec.reads <= set(HoliTomConfig.field_names())
        assert IRRELEVANT[name] == set(HoliTomConfig.field_names()) - {"method"} - spec.reads
        assert spec.inner is None or {"merge_layer", "merge_ratio"} <= spec.reads
    with pytest.raises(ValueError, match="method must be one of dense, fastv"):
        get_method("tome")


@pytest.mark.parametrize("make", [
    lambda: HoliTomConfig(method="fastv"),
    lambda: HoliTomConfig.from_dict({"method": "fastv"}),
    lambda: HoliTomConfig.from_env({"WRAPPER": "fastv"}),
    lambda: HoliTomConfig(retain_ratio=0.2).replace(method="fastv"),
])
def test_fastv_defaults_everywhere(make) -> None:
    cfg = make()
    assert (cfg.method, cfg.merge_layer, cfg.merge_ratio, cfg.inner_mode) == ("fastv", 2, 0.8, "drop")


def test_fastv_defaults_in_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """``holitom flops --method fastv`` is the paper's 9.31 TFLOPs row (K = 2, r = 0.8); ``holitom run``'s config
    for FastV keeps K = 2 where HoliTom takes the model's depth-scaled K."""
    import argparse

    from lmms_holitom.cli import main
    from lmms_holitom.commands.run import _holitom_config

    assert main(["flops", "--method", "fastv", "--json"]) == 0
    assert round(json.loads(capsys.readouterr().out)["tflops"], 2) == 9.31
    args = argparse.Namespace(method="fastv", retain_ratio=None, tau=None, merge_ratio=None, fidelity=None, budget=None,
                              merge_layer=None)
    assert (_holitom_config(args, 3).merge_layer, _holitom_config(args, 3).merge_ratio) == (2, 0.8)
    args.method = "holitom"
    assert (_holitom_config(args, 3).merge_layer, _holitom_config(args, 3).merge_ratio) == (3, 0.5)


def test_a_config_knows_what_was_set() -> None:
    cfg = HoliTomConfig(retain_ratio=0.2, merge_layer=3)
    assert cfg.given == {"retain_ratio", "merge_layer"} and cfg.given_dict() == {"retain_ratio": 0.2, "merge_layer": 3}
    fastv = cfg.replace(method="fastv")  # what was set stays; the rest follows FastV's defaults
    assert (fastv.merge_layer, fastv.merge_ratio, fastv.retain_ratio) == (3, 0.8, 0.2)
    assert HoliTomConfig().given == frozenset() and HoliTomConfig() == HoliTomConfig(method="holitom", merge_layer=18)
    assert "given" not in HoliTomConfig.field_names()  # to_dict: every field; budget only when not adaptive
    assert set(cfg.to_dict()) == set(HoliTomConfig.field_names()) - {"budget"}
    assert set(cfg.replace(budget="exact").to_dict()) == set(HoliTomConfig.field_names())


def test_core_methods_and_ops_import_no_transformers() -> None:
    code = ("import sys, lmms_holitom.methods, lmms_holitom.ops, lmms_holitom.config, lmms_holitom.core.outer, "
            "lmms_holitom.core.splice, lmms_holitom.core.state, lmms_holitom.core.stats, lmms_holitom.core.trace, "
            "lmms_holitom.core.video; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'lmms_eval')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
