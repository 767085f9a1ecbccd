"""``holitom flops``: theoretical LLM TFLOPs of a setting, or the paper's whole table (``--table``).

Bad values (``--frames 0``, ``--retain-ratio 2``, ``--merge-layer`` beyond the preset's layers, an unknown
``--preset``) raise `UsageError`/ValueError, which ``holitom`` reports as one line (exit 2).

Hybrid presets (Qwen3.5: Gated DeltaNet layers, one full-attention layer in four) take only merge layers K whose
layer K-1 is full attention (`lmms_holitom.layer_kinds`, docs/algorithm.md §6.7): a ``--merge-layer`` that breaks
the rule is an error naming the allowed layers; a method's default K that breaks it moves to the model's default
(`layer_kinds.default_merge_layer_of`: Qwen3.5-9B's 32 layers -> K = 20), as the model and lmms-eval do.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from lmms_holitom.config import DEFAULTS, METHODS, HoliTomConfig
from lmms_holitom.layer_kinds import check_merge_layer, default_merge_layer_of, merge_layers, nearest_merge_layer
from lmms_holitom.methods import DENSE
from lmms_holitom.methods import METHODS as METHODS_BY_NAME
from lmms_holitom.values import MAX_FRAMES, MAX_TOKENS, float_flag, int_flag

if TYPE_CHECKING:
    from lmms_holitom.flops import ModelShape

HELP = ("theoretical LLM TFLOPs of a setting (the paper's cost model; hybrid linear-attention and MoE decoders: "
        "Qwen3.5, Qwen3.5-MoE, Qwen3-VL-MoE)")

# Published settings of the paper's main table (LLaVA-OV-7B, 32 frames).
_TABLE_RATIOS = (0.25, 0.20, 0.15, 0.10)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="llava-onevision-7b",
                   help="model shape: llava-onevision-{0.5b,7b,72b}, llava-video-7b, qwen2.5-vl-7b, qwen3-vl-8b, "
                   "qwen3-vl-30b-a3b (Qwen3-VL-MoE), qwen3.5-9b (Qwen3.5, hybrid), qwen3.5-35b-a3b (Qwen3.5-MoE) "
                   "(default %(default)s)")
    p.add_argument("--frames", type=int_flag(1, MAX_FRAMES), default=None,
                   help=f"frames, 1 to {MAX_FRAMES} (default: the preset's, 32 or 64)")
    p.add_argument("--method", choices=METHODS, default=DEFAULTS["method"])
    p.add_argument("--retain-ratio", type=float_flag(), default=None, help="in (0, 1] (default: 0.10)")
    p.add_argument("--merge-layer", type=str, default=None, help="K, or none for no inner step (default: the method's, "
                   "HoliTom 18, FastV 2; on a hybrid preset the nearest layer after a full-attention one, e.g. 20 "
                   "and 4 on qwen3.5-9b)")
    p.add_argument("--merge-ratio", type=float_flag(), default=None,
                   help="default: the method's (HoliTom 0.5, FastV 0.8)")
    p.add_argument("--spatial-tokens", type=int_flag(1, MAX_TOKENS), default=None, help="VisionZip tokens per frame")
    p.add_argument("--visual-tokens", type=int_flag(0, MAX_TOKENS), default=None,
                   help="override the visual token count (default: the paper's F*ceil(retain*N))")
    p.add_argument("--convention", choices=("paper", "exact"), default="paper")
    p.add_argument("--text-tokens", type=int_flag(0, MAX_TOKENS), default=0, help="text tokens (exact convention)")
    p.add_argument("--table", action="store_true", help="print every method at 25/20/15/10 %% instead")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _config(args: argparse.Namespace, shape: ModelShape, **over) -> HoliTomConfig:
    values: dict = {"method": args.method}
    for name in ("retain_ratio", "merge_layer", "merge_ratio", "spatial_tokens"):
        if getattr(args, name) is not None:  # unset: the method's default
            values[name] = getattr(args, name)
    values.update(over)
    return fit_merge_layer(HoliTomConfig(**values), shape)


def fit_merge_layer(cfg: HoliTomConfig, shape: ModelShape) -> HoliTomConfig:
    """``cfg`` with a merge layer a hybrid ``shape``'s decoder takes: a given one is checked (ValueError naming the
    allowed layers), a default one that breaks the layer-kind rule moves as the model classes move it: HoliTom's to
    the model's default K, a method's own (FastV's 2) to the nearest layer the decoder takes."""
    if cfg.inner_mode is None or cfg.merge_layer is None or shape.layer_types is None:
        return cfg  # a full-attention decoder: the cost model's own range check ([0, layers])
    kinds = shape.kinds
    if "merge_layer" in cfg.given:
        check_merge_layer(cfg.merge_layer, kinds)
        return cfg
    if cfg.merge_layer in merge_layers(kinds):
        return cfg
    own = cfg.spec.defaults.get("merge_layer")  # a method's own K (FastV's 2) moves to the nearest allowed layer
    layer = default_merge_layer_of(kinds) if own is None else nearest_merge_layer(own, merge_layers(kinds))
    if layer is None:
        raise ValueError(f"preset {shape.name!r} has no merge layer (no full-attention layer before its last)")
    return cfg.replace(merge_layer=layer)


def table_rows(preset: str, frames: int | None, convention: str = "paper") -> list[dict]:
    """The paper's main-table settings with their TFLOPs and share of dense."""
    from lmms_holitom.flops import get_preset, paper_visual_tokens, setting_flops

    shape = get_preset(preset)
    frames = shape.default_frames if frames is None else frames
    settings: list[tuple[str, HoliTomConfig]] = []
    for name, spec in METHODS_BY_NAME.items():  # methods without a retain ratio once, at their defaults
        if "retain_ratio" not in spec.reads:
            cfg = fit_merge_layer(HoliTomConfig(method=name), shape)
            label = f"{name} K={cfg.merge_layer} r={cfg.merge_ratio:g}" if cfg.inner_mode else name
            settings.append((label, cfg))
    for ratio in _TABLE_RATIOS:
        for name, spec in METHODS_BY_NAME.items():
            if "retain_ratio" not in spec.reads:
                continue
            values: dict = {"method": name, "retain_ratio": ratio}
            if "tau" in spec.reads:
                values["tau"] = 0.65 if ratio <= 0.10 else 0.80
            if "spatial_tokens" in spec.reads:  # the paper counts ceil(retain · N) per frame
                values["spatial_tokens"] = _ceil_tokens(ratio, shape.tokens_per_frame)
            settings.append((f"{name} {ratio:.0%}", fit_merge_layer(HoliTomConfig(**values), shape)))
    dense = setting_flops(settings[0][1], shape, frames, convention=convention)
    rows = []
    for name, cfg in settings:
        flops = setting_flops(cfg, shape, frames, convention=convention)
        rows.append({
            "setting": name,
            "visual_tokens": paper_visual_tokens(cfg, frames, shape.tokens_per_frame),
            "tflops": flops / 1e12,
            "share_of_dense": flops / dense,
        })
    return rows


def _kinds_note(shape: ModelShape) -> str:
    """`` (hybrid: 24 linear-attention + 8 full-attention layers, MoE 8 of 256 experts)`` or empty for a dense
    full-attention decoder."""
    parts = []
    if shape.layer_types is not None:
        linear = sum(k != "full_attention" for k in shape.kinds)
        parts.append(f"hybrid: {linear} linear-attention + {shape.layers - linear} full-attention layers")
    if shape.moe is not None:
        shared = " + shared expert" if shape.moe.shared_intermediate else ""
        parts.append(f"MoE {shape.moe.experts_per_token} of {shape.moe.experts} experts{shared}")
    return f" ({', '.join(parts)})" if parts else ""


def _ceil_tokens(ratio: float, n: int) -> int:
    import math

    return math.ceil(ratio * n)


def main(args: argparse.Namespace) -> int:
    from lmms_holitom.flops import get_preset, paper_visual_tokens, setting_flops

    shape = get_preset(args.preset)  # ValueError naming the known presets
    frames = shape.default_frames if args.frames is None else args.frames
    if args.table:
        rows = table_rows(args.preset, frames, args.convention)
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        print(f"{shape.name}, {frames} frames x {shape.tokens_per_frame} tokens, convention={args.convention}"
              f"{_kinds_note(shape)}")
        print(f"{'setting':<22} {'visual tokens':>13} {'TFLOPs':>8} {'% dense':>8}")
        for r in rows:
            print(f"{r['setting']:<22} {r['visual_tokens']:>13} {r['tflops']:>8.2f} {100 * r['share_of_dense']:>7.1f}%")
        return 0
    cfg = _config(args, shape)
    n = args.visual_tokens if args.visual_tokens is not None else paper_visual_tokens(
        cfg, frames, shape.tokens_per_frame)
    flops = setting_flops(cfg, shape, frames, visual_tokens=n, convention=args.convention,
                          text_tokens=args.text_tokens)
    dense = setting_flops(HoliTomConfig(method=DENSE), shape, frames, convention=args.convention,
                          text_tokens=args.text_tokens)
    out = {"preset": shape.name, "frames": frames, "method": cfg.method, "visual_tokens": n,
           "merge_layer": cfg.merge_layer if cfg.inner_mode else None,
           "tflops": flops / 1e12, "dense_tflops": dense / 1e12, "share_of_dense": flops / dense}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        inner = f", K={cfg.merge_layer}" if cfg.inner_mode else ""
        print(f"{cfg.method} on {shape.name}{_kinds_note(shape)}: {n} visual tokens{inner}, {flops / 1e12:.2f} TFLOPs "
              f"({100 * flops / dense:.1f}% of dense {dense / 1e12:.2f})")
    return 0
