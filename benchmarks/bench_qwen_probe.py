"""Cost of HoliTom's saliency probe on the real Qwen2.5-VL-7B / Qwen3-VL-8B / Qwen3.5 vision encoder geometry.

Random weights (seeded), the encoder of `lmms_holitom.shapes.QWEN_SHAPES` on SDPA, one video of ``--frames``
frames at ``--size``×``--size`` px (default 4 frames at 448×448: 2 temporal groups of 1024 / 784 patches, as
lmms-eval's default ``min_pixels = 256·28·28`` gives). For each encoder the script times, side by side and
interleaved over the repeats (after warm-up runs): the encoder alone, the encoder inside
`QwenVisionSaliencyProbe`, and the probe's own computation on the captured block inputs; it checks that the
features are unchanged and reports medians, the overhead ratio and the probe's peak score tensor.

    python benchmarks/bench_qwen_probe.py --json out/qwen_probe.json
    python benchmarks/bench_qwen_probe.py --encoders qwen2.5-vl-7b --frames 8 --size 336 --repeats 5
    python benchmarks/bench_qwen_probe.py --encoders qwen3.5-9b     # Qwen3.5's encoder (its own class, no deepstack)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from lmms_holitom.hf.models.qwen_vision import QwenVisionSaliencyProbe
from lmms_holitom.shapes import QWEN_SHAPES, init_random_weights

ENCODERS = ("qwen2.5-vl-7b", "qwen3-vl-8b")  #: the default: the two distinct geometries (any QWEN_SHAPES name runs)


def build_encoder(name: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The vision encoder of a `QWEN_SHAPES` entry, seeded random weights, SDPA, eval mode."""
    from transformers import Qwen2_5_VLVisionConfig, Qwen3_5VisionConfig, Qwen3VLVisionConfig
    from transformers.initialization import no_init_weights
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
    from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5VisionModel
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

    info = QWEN_SHAPES[name]
    family = info["family"].removesuffix("_moe")  # an MoE checkpoint has its dense twin's encoder
    config_cls, cls = {"qwen2_5_vl": (Qwen2_5_VLVisionConfig, Qwen2_5_VisionTransformerPretrainedModel),
                       "qwen3_vl": (Qwen3VLVisionConfig, Qwen3VLVisionModel),
                       "qwen3_5": (Qwen3_5VisionConfig, Qwen3_5VisionModel)}[family]
    config = config_cls(**info["vision"])
    config._attn_implementation = "sdpa"
    with torch.device(device), no_init_weights():
        model = cls._from_config(config, dtype=dtype)
    init_random_weights(model, seed=0)
    return model.eval()


def video_input(model: torch.nn.Module, frames: int, size: int, device: torch.device, dtype: torch.dtype):
    """(pixel_values (S, C·2·p·p), grid_thw (1, 3)) of one random video."""
    cfg = model.config
    grid = torch.tensor([[frames // cfg.temporal_patch_size, size // cfg.patch_size, size // cfg.patch_size]])
    dim = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randn(int(grid.prod()), dim, generator=gen).to(device, dtype)
    return pixels, grid.to(device)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000.0


@torch.no_grad()
def measure(name: str, args: argparse.Namespace) -> dict:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    model = build_encoder(name, device, dtype)
    pixels, grid = video_input(model, args.frames, args.size, device, dtype)
    probe = QwenVisionSaliencyProbe(model, frames_per_chunk=args.chunk)
    captured: dict = {}
    hook = probe.module.register_forward_pre_hook(lambda m, a, kw: captured.update(a=a, kw=kw), with_kwargs=True)
    dense = model(pixels, grid_thw=grid).pooler_output
    hook.remove()
    a, kw = captured["a"], captured["kw"]

    def run_dense():
        model(pixels, grid_thw=grid)

    def run_probe():
        probe.reset()
        with probe:
            model(pixels, grid_thw=grid)

    def run_compute():
        probe.compute(probe.module, a[0], kw["cu_seqlens"], kw["position_embeddings"])

    runs = {"encoder": run_dense, "encoder_with_probe": run_probe, "probe_compute": run_compute}
    for _ in range(args.warmup):
        for fn in runs.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
        for key, fn in runs.items():
            times[key].append(_timed(fn))
    probe.reset()
    with probe:
        probed = model(pixels, grid_thw=grid).pooler_output
    med = {k: statistics.median(v) for k, v in times.items()}
    cfg = model.config
    return {
        "encoder": name, "family": QWEN_SHAPES[name]["family"], "device": args.device, "dtype": args.dtype,
        "frames": args.frames, "size": args.size, "grid_thw": grid[0].tolist(),
        "patches": int(grid.prod()), "tokens": int(grid.prod()) // cfg.spatial_merge_size**2,
        "depth": cfg.depth, "hidden": cfg.hidden_size, "heads": cfg.num_heads,
        "probed_block": probe.block_index, "frames_per_chunk": args.chunk,
        "features_equal": bool(torch.equal(probed, dense)),
        "saliency_shape": list(probe.saliency()[0].shape),
        "probe_peak_elements": probe.peak_elements, "probe_peak_mb": probe.peak_elements * 4 / 2**20,
        "median_ms": med, "times_ms": times,
        "probe_overhead": med["encoder_with_probe"] / med["encoder"] - 1.0,
        "probe_compute_share": med["probe_compute"] / med["encoder"],
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }


def print_table(rows: list[dict]) -> None:
    head = (f"{'encoder':<15} {'grid':<12} {'encoder ms':>11} {'+probe ms':>10} {'overhead':>9} "
            f"{'probe ms':>9} {'share':>7} {'peak MB':>8} {'equal':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        m = r["median_ms"]
        print(f"{r['encoder']:<15} {tuple(r['grid_thw'])!s:<12} {m['encoder']:>11.1f} "
              f"{m['encoder_with_probe']:>10.1f} {r['probe_overhead']:>+8.1%} {m['probe_compute']:>9.1f} "
              f"{r['probe_compute_share']:>6.1%} {r['probe_peak_mb']:>8.1f} {r['features_equal']!s:>6}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated (default %(default)s)")
    p.add_argument("--frames", type=int, default=4, help="input frames, even (default %(default)s)")
    p.add_argument("--size", type=int, default=448, help="frame height = width in px (default %(default)s)")
    p.add_argument("--chunk", type=int, default=8, help="probe frames_per_chunk (default %(default)s)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.encoders.split(",") if n.strip()]
    unknown = [n for n in names if n not in QWEN_SHAPES]
    if unknown:
        print(f"error: --encoders: unknown {', '.join(unknown)}; choose from {', '.join(QWEN_SHAPES)}", file=sys.stderr)
        return 2
    if args.frames < 2 or args.repeats < 1 or args.warmup < 0 or args.chunk < 1:
        print("error: --frames >= 2, --repeats >= 1, --warmup >= 0 and --chunk >= 1 are required", file=sys.stderr)
        return 2
    for name in names:
        vision = QWEN_SHAPES[name]["vision"]
        unit = vision["patch_size"] * vision["spatial_merge_size"]
        if args.size % unit or args.frames % vision["temporal_patch_size"]:
            print(f"error: {name}: --size must be a multiple of {unit} and --frames even, got --size {args.size} "
                  f"--frames {args.frames}", file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(name, args) for name in names]
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"schema": "holitom-qwen-probe/1", "results": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
