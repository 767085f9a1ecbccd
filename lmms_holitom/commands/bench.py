"""``holitom bench``: measured TTFT, decoding speed, memory and merge overhead, dense vs every method.

Examples::

    holitom bench --shape tiny --device cpu --json out/bench.json          # CI smoke, about a minute
    holitom bench --shape 7b --frames 32 --json out/7b.json --plot out/7b.png   # on a GPU
    holitom bench --pretrained tiny --methods dense,holitom --retain-ratios 0.25
    holitom bench --pretrained tiny-qwen3-vl --device cpu --frames 4     # Qwen: 4 frames = 2 temporal groups
    holitom bench --shape qwen2.5-vl-7b --frames 32 --json out/qwen25.json  # on a GPU
    .venv-vllm/bin/holitom bench --backend vllm --json out/vllm.json        # vLLM, shape issue, 8 frames
    .venv-vllm/bin/holitom bench --backend vllm --shape issue --frames 32 --concurrency 1,4,8

The engine is `lmms_holitom.bench` (``--backend vllm``: `lmms_holitom.bench.vllm_engine`, run in an environment
with vLLM); this module only maps flags onto `BenchOptions` / `VllmBenchOptions`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmms_holitom.config import BUDGETS, DEFAULTS, METHODS
from lmms_holitom.values import (
    MAX_FRAMES,
    MAX_LAYER,
    MAX_REPEATS,
    MAX_SEED,
    MAX_TOKENS,
    float_flag,
    int_flag,
    parse_float,
    parse_int,
)

HELP = "measure vision/merge/prefill time, TTFT, decoding speed and memory, dense vs methods"
#: what ``--frames`` / ``--new-tokens`` / ``--repeats`` mean when not given, per backend
BACKEND_DEFAULTS = {"transformers": {"frames": 32, "new_tokens": 32, "repeats": 3},
                    "vllm": {"frames": 8, "new_tokens": 16, "repeats": 2}}
#: flags of the transformers backend only (dest names); ``--backend vllm`` refuses them when given
TRANSFORMERS_ONLY = ("pretrained", "device", "attn_implementation", "merge_layer", "merge_ratio", "tau", "budget",
                     "fastv_layer", "fastv_ratio", "text_tokens", "threads", "no_memory", "no_probe", "no_eager",
                     "probe_chunks")
VLLM_VENV_HINT = (".venv-vllm/bin/holitom bench --backend vllm ... (the vLLM environment; `make venv-vllm` builds "
                  "it from requirements/vllm-lock.txt)")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(parse_float("", x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers, got {text!r}") from None


def _chunks(text: str) -> tuple[int, ...]:
    try:
        return tuple(parse_int("", x, 1, MAX_FRAMES) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers in [1, {MAX_FRAMES}], got {text!r}") \
            from None


def _methods(text: str) -> tuple[str, ...]:
    from lmms_holitom.config import METHODS

    names = tuple(x.strip().lower() for x in text.split(",") if x.strip())
    bad = [n for n in names if n not in METHODS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(bad)}; known: {', '.join(METHODS)}")
    return names


def _fastv_ratio(text: str) -> float | str:
    if text.strip().lower() == "match":
        return "match"
    try:
        return parse_float("", text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'match', got {text!r}") from None


def _concurrency(text: str) -> tuple[int, ...]:
    try:
        values = tuple(parse_int("", x, 1, 1024) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers in [1, 1024], got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"must list at least one integer in [1, 1024], got {text!r}")
    return tuple(dict.fromkeys(values))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("transformers", "vllm"), default="transformers",
                   help="transformers (default; every method, stage times) or vllm (in-process vLLM engines through "
                        "the plugin: requests/s, TTFT p50/p90, output tok/s, peak RSS at each --concurrency; run it "
                        "in the vLLM environment; reads --shape tiny|small|issue, --step-tokens, --frames, --methods, "
                        "--retain-ratios, --new-tokens, --warmup, --repeats, --stat, --seed, --scenes, --dtype)")
    p.add_argument("--concurrency", type=_concurrency, default=None, metavar="C1,C2",
                   help="--backend vllm: concurrent requests per engine (default 1,4,16)")
    p.add_argument("--step-tokens", default=None, metavar="default|prompt|N",
                   help="--backend vllm: each engine's step budget (max_num_batched_tokens): default (vLLM's, or the "
                        "dense prompt when longer), prompt (the engine's own prompt: at most one new video per "
                        "step, every engine), or N tokens for every engine")
    model = p.add_argument_group("model")
    src = model.add_mutually_exclusive_group()
    src.add_argument("--pretrained", default=None, metavar="PATH|tiny",
                     help="a LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL(-MoE) or Qwen3.5(-MoE) checkpoint folder / hub id "
                          "(the HoliTom class follows its model_type), or a built-in tiny model: tiny, "
                          "tiny-qwen2.5-vl, tiny-qwen3-vl, tiny-qwen3-vl-moe, tiny-qwen3.5, tiny-qwen3.5-moe")
    src.add_argument("--shape", default=None, metavar="NAME",
                     help="random weights with a published architecture: tiny, 0.5b, 7b, 72b, qwen2.5-vl-7b, "
                          "qwen3-vl-8b, qwen3-vl-30b-a3b (Qwen3-VL-MoE), qwen3.5-9b (Qwen3.5), qwen3.5-35b-a3b "
                          "(Qwen3.5-MoE), or '<preset>-layers=N' (e.g. 72b-layers=8, qwen3.5-9b-layers=8: a hybrid "
                          "keeps its first N layers' kinds); default tiny when --pretrained is not given")
    model.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    model.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                       help="auto = bf16 on CUDA, fp32 on CPU")
    model.add_argument("--attn-implementation", default="sdpa", help="LLM/vision attention (default sdpa)")

    study = p.add_argument_group("settings")
    study.add_argument("--methods", type=_methods, default=METHODS,
                       help=f"comma list (default: every method, {','.join(METHODS)}); dense always runs")
    study.add_argument("--retain-ratios", type=_floats, default=(0.10, 0.25), help="comma list (default 0.10,0.25)")
    study.add_argument("--merge-layer", type=int_flag(1, MAX_LAYER), default=DEFAULTS["merge_layer"],
                       help=f"HoliTom K (default {DEFAULTS['merge_layer']}); on a model without layer K: "
                       "round(K/28 * layers)")
    study.add_argument("--merge-ratio", type=float_flag(), default=0.5, help="HoliTom r (default 0.5)")
    study.add_argument("--tau", type=float_flag(), default=None,
                       help="default: the paper's 0.65 at retain 10%%, else 0.80")
    study.add_argument("--budget", choices=BUDGETS, default=DEFAULTS["budget"],
                       help="HoliTom's outer merge count: adaptive (default) or exact (F*ceil(retain*N) tokens)")
    study.add_argument("--fastv-layer", type=int_flag(1, MAX_LAYER), default=2,
                       help="FastV K (default 2, scaled like --merge-layer)")
    study.add_argument("--fastv-ratio", type=_fastv_ratio, default=0.8,
                       help="FastV r (default 0.8, the paper's, one run); 'match' = one run per retain ratio "
                            "with r = 1 - retain")

    inp = p.add_argument_group("input and measurement")
    inp.add_argument("--frames", type=int_flag(1, MAX_FRAMES), default=None,
                     help="frames of the synthetic video (default 32; --backend vllm: 8); Qwen VL: input frames, a "
                          "multiple of 2 (F/2 temporal groups = HoliTom frames, 448x448 px each)")
    inp.add_argument("--text-tokens", type=int_flag(0, MAX_TOKENS), default=30,
                     help="text tokens around the video (default 30)")
    inp.add_argument("--scenes", type=int_flag(1, MAX_FRAMES), default=4,
                     help="scenes of the synthetic video (default 4)")
    inp.add_argument("--new-tokens", type=int_flag(1, MAX_TOKENS), default=None,
                     help="tokens decoded for the speed figure (default 32; --backend vllm: 16 per request)")
    inp.add_argument("--warmup", type=int_flag(0, MAX_REPEATS), default=1, help="warm-up calls per setting (default 1)")
    inp.add_argument("--repeats", type=int_flag(1, MAX_REPEATS), default=None,
                     help="timed calls per setting (default 3; --backend vllm: 2 rounds of every concurrency)")
    inp.add_argument("--stat", choices=("median", "best"), default="median",
                     help="statistic of the repeats for the table, ratios and targets: median (default) or best "
                          "(min time / max tok/s: on a shared CPU, noise only adds time); the JSON has both")
    inp.add_argument("--seed", type=int_flag(0, MAX_SEED), default=0, help=f"0 to {MAX_SEED} (default 0)")
    inp.add_argument("--threads", type=int_flag(1, 4096), default=None, help="torch CPU threads (default: torch's)")
    inp.add_argument("--no-memory", action="store_true", help="skip the (untimed) peak-memory pass")
    inp.add_argument("--no-probe", action="store_true", help="skip the vision saliency probe study")
    inp.add_argument("--no-eager", action="store_true", help="probe study without the eager all-layer tower")
    inp.add_argument("--probe-chunks", type=_chunks, default=(), metavar="C1,C2",
                     help="extra probe chunk sizes (frames) to show memory O(chunk); the model's own always runs")

    out = p.add_argument_group("output")
    out.add_argument("--json", default=None, metavar="FILE", help="write the full result as JSON")
    out.add_argument("--plot", default=None, metavar="FILE.png", help="bar chart of the speedups vs dense")
    out.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _given(args: argparse.Namespace, name: str) -> object:
    """The flag's value, or its backend's default when not given."""
    value = getattr(args, name)
    return BACKEND_DEFAULTS[args.backend][name] if value is None else value


def options_from_args(args: argparse.Namespace):
    """`BenchOptions` from parsed flags."""
    from lmms_holitom.bench import BenchOptions

    return BenchOptions(
        pretrained=args.pretrained,
        shape=None if args.pretrained else (args.shape or "tiny"),
        frames=_given(args, "frames"),
        methods=tuple(args.methods),
        retain_ratios=tuple(args.retain_ratios),
        merge_layer=args.merge_layer,
        merge_ratio=args.merge_ratio,
        tau=args.tau,
        budget=args.budget,
        fastv_layer=args.fastv_layer,
        fastv_ratio=args.fastv_ratio,
        new_tokens=_given(args, "new_tokens"),
        warmup=args.warmup,
        repeats=_given(args, "repeats"),
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        text_tokens=args.text_tokens,
        scenes=args.scenes,
        memory=not args.no_memory,
        probe=not args.no_probe,
        probe_chunks=tuple(args.probe_chunks),
        eager=not args.no_eager,
        threads=args.threads,
        attn_implementation=args.attn_implementation,
        stat=args.stat,
    )


def check_args(args: argparse.Namespace) -> None:
    """The counts and the device, before any model is built; raises `UsageError` (settings: ValueError)."""
    from lmms_holitom.commands import check_device
    from lmms_holitom.config import HoliTomConfig

    for ratio in args.retain_ratios:
        HoliTomConfig(retain_ratio=ratio, merge_ratio=args.merge_ratio)  # ranges, named in the ValueError
    if args.tau is not None:
        HoliTomConfig(tau=args.tau)
    if args.fastv_ratio != "match":
        HoliTomConfig(method="fastv", merge_ratio=args.fastv_ratio)
    check_device("--device", args.device)
    check_outputs(args)


def check_outputs(args: argparse.Namespace) -> None:
    """``--json`` / ``--plot`` writable, and matplotlib there for ``--plot``, before the benchmark runs (raises
    `UsageError`): a missing plotting library must not cost the user a finished benchmark."""
    import importlib.util

    from lmms_holitom.commands import UsageError

    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"--plot {args.plot} needs matplotlib, which this environment lacks: pip install matplotlib "
                         "(or pip install 'lmms-holitom[plot]'), or drop --plot (the JSON has every figure)")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None:
            check_output_file(flag, Path(path))


def check_output_file(flag: str, path: Path) -> None:
    """Raise `UsageError` unless ``path`` can be written as a file (its missing parent folders created) — checked
    before the benchmark, not after it: not a folder, no file in the way, and a folder that takes a new file."""
    import tempfile

    from lmms_holitom.commands import UsageError

    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'bench.json'}")
    folder = path.absolute().parent
    while not folder.exists() and not folder.is_symlink():
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path} cannot be written: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
        if path.exists():
            with open(path, "ab"):
                pass
    except OSError as err:
        raise UsageError(f"{flag} {path} cannot be written: {err.strerror or err} ({folder})") from None


def _log(args: argparse.Namespace):
    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[bench] {msg}", file=sys.stderr, flush=True)

    return log


def check_vllm_args(args: argparse.Namespace) -> None:
    """``--backend vllm``: vLLM importable, no transformers-only flag given, the output files writable, matplotlib
    for ``--plot``; raises `UsageError`."""
    import importlib.util

    from lmms_holitom.commands import UsageError

    if importlib.util.find_spec("vllm") is None:
        raise UsageError(f"--backend vllm needs vLLM, which this Python ({sys.executable}) does not have; run "
                         f"{VLLM_VENV_HINT}")
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    default = vars(defaults.parse_args([]))
    given = [name for name in TRANSFORMERS_ONLY if getattr(args, name) != default[name]]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"{flags} apply to --backend transformers only")
    check_outputs(args)


def vllm_options_from_args(args: argparse.Namespace):
    """`VllmBenchOptions` from parsed flags (ValueError naming the flag)."""
    from lmms_holitom.bench.vllm_options import DEFAULT_CONCURRENCY, DEFAULT_VLLM_METHODS, VllmBenchOptions
    from lmms_holitom.config import HoliTomConfig

    for ratio in args.retain_ratios:
        HoliTomConfig(retain_ratio=ratio)  # the range, named in the ValueError
    methods = DEFAULT_VLLM_METHODS if tuple(args.methods) == tuple(METHODS) else tuple(args.methods)
    return VllmBenchOptions(
        shape=args.shape, frames=_given(args, "frames"), methods=methods, retain_ratios=tuple(args.retain_ratios),
        concurrency=args.concurrency or DEFAULT_CONCURRENCY, repeats=_given(args, "repeats"), warmup=args.warmup,
        new_tokens=_given(args, "new_tokens"), dtype="bf16" if args.dtype == "auto" else args.dtype, seed=args.seed,
        scenes=args.scenes, stat=args.stat, step_tokens="default" if args.step_tokens is None else args.step_tokens,
    )


def main_vllm(args: argparse.Namespace) -> int:
    """``holitom bench --backend vllm``."""
    from lmms_holitom.io import write_json_atomic

    check_vllm_args(args)
    opts = vllm_options_from_args(args)
    from lmms_holitom.bench.vllm_engine import run_vllm_bench
    from lmms_holitom.bench.vllm_report import format_vllm_table, vllm_figure

    log = _log(args)
    result = run_vllm_bench(opts, log=log)
    print(format_vllm_table(result))
    if args.json:
        write_json_atomic(args.json, result)
        log(f"wrote {args.json}")
    if args.plot:
        from lmms_holitom.figures import save_png

        save_png(vllm_figure(result), args.plot)
        log(f"wrote {args.plot}")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.backend == "vllm":
        return main_vllm(args)
    from lmms_holitom.bench import format_table, run_bench, write_json, write_plot

    if args.concurrency is not None or args.step_tokens is not None:
        from lmms_holitom.commands import UsageError

        raise UsageError(f"{'--concurrency' if args.concurrency is not None else '--step-tokens'} applies to "
                         "--backend vllm only")
    check_args(args)
    try:
        opts = options_from_args(args)
    except ValueError as err:
        print(f"holitom bench: {err}", file=sys.stderr)
        return 2

    log = _log(args)
    try:
        result = run_bench(opts, log=log)
    except ValueError as err:
        print(f"holitom bench: {err}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        log(f"wrote {args.json}")
    if args.plot:
        write_plot(result, args.plot)
        log(f"wrote {args.plot}")
    return 0
