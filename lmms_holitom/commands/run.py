"""``holitom run VIDEO --question "..."``: answer one question about one video and print the compression stats.

The model class follows the checkpoint's ``model_type`` (`lmms_holitom.hf.models.model_class_for`): LLaVA-OneVision
/ LLaVA-Video (HF or LLaVA-NeXT format), Qwen2.5-VL, Qwen3-VL. Frames are sampled uniformly
(``np.linspace(0, n - 1, max_frames)`` rounded down to int, as lmms-eval does) with PyAV; the prompt is the
checkpoint's chat template with the family's processor (Qwen-1.5 for LLaVA-OneVision: system prompt, the video,
then the question). The Qwen processors get the sampled frames as they are (no resampling) with the video's
metadata (fps, sampled indices), from which Qwen2.5-VL times its M-RoPE and Qwen3-VL writes its timestamps.
Works offline with a local model folder; the default ``--pretrained tiny`` is the built-in tiny random
LLaVA-OneVision, ``tiny-qwen2.5-vl`` / ``tiny-qwen3-vl`` the tiny Qwen models (answers are gibberish, the
pipeline is real).

The output ends with ``note:`` lines where the numbers need a word: frames repeated because the video is shorter
than ``--max-frames``, Qwen's ``frames`` counting temporal patches (2 sampled frames each), and answers of the
random-weight tiny models (meaningless, often broken UTF-8). ``--json`` puts them under ``notes``.

Exit codes: 0 success, 2 bad input (missing/corrupt video, invalid setting, wrong checkpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lmms_holitom.config import BUDGETS, DEFAULTS, FIDELITIES, METHODS
from lmms_holitom.values import MAX_FRAMES, MAX_TOKENS

HELP = "answer a question about one video and print the compression stats"

#: Upper bounds of the size flags: the lmms-eval model args' (``max_frames_num`` / ``max_num_frames``,
#: ``max_new_tokens``), one source in `lmms_holitom.values`.
MAX_NEW_TOKENS = MAX_TOKENS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="video file (anything PyAV decodes)")
    parser.add_argument("--question", "-q", required=True, help="the question to ask about the video")
    parser.add_argument(
        "--pretrained", default="tiny",
        help="checkpoint: local folder or hub id (LLaVA-OneVision, LLaVA-Video, Qwen2.5-VL, Qwen3-VL(-MoE), "
        "Qwen3.5(-MoE)), or a built-in tiny model: tiny (default), tiny-qwen2.5-vl, tiny-qwen3-vl, tiny-qwen3-vl-moe, "
        "tiny-qwen3.5, tiny-qwen3.5-moe",
    )
    parser.add_argument("--method", choices=METHODS, default=DEFAULTS["method"], help=f"default: {DEFAULTS['method']}")
    parser.add_argument("--retain-ratio", type=float, help="fraction of visual tokens entering the LLM (0.10)")
    parser.add_argument("--tau", type=float, help="static-token cosine threshold (0.80; > 1 disables)")
    parser.add_argument(
        "--merge-layer", type=str,
        help="decoder layer K of the inner merge, or 'none' for HoliTom w/o M (default: HoliTom's 18, or the same "
        "relative depth on smaller decoders; FastV's 2)",
    )
    parser.add_argument("--merge-ratio", type=float,
                        help="fraction of visual tokens merged at K (HoliTom 0.5, FastV 0.8)")
    parser.add_argument("--fidelity", choices=FIDELITIES, help="reference (default) or clean")
    parser.add_argument("--budget", choices=BUDGETS, help="adaptive (default: HoliTom's count follows the video) or "
                        "exact (HoliTom's outer merge keeps exactly F*ceil(retain_ratio*N) tokens)")
    parser.add_argument("--max-frames", type=int, default=32,
                        help=f"frames sampled uniformly, 1-{MAX_FRAMES} (32; frames repeat in a shorter video)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help=f"answer length limit, 1-{MAX_NEW_TOKENS} (64)")
    parser.add_argument("--device", default="auto", help="cuda, cuda:1, cpu, ... (auto: cuda if available)")
    parser.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 (auto: bf16 on cuda, fp32 on cpu)")
    parser.add_argument(
        "--attn-implementation", default="sdpa", help="sdpa (default), eager or flash_attention_2 (if installed)"
    )
    parser.add_argument("--probe-chunk", type=int, default=8,
                        help=f"frames per chunk of the vision attention probe, 1-{MAX_FRAMES} (8)")
    parser.add_argument("--json", action="store_true", help="print the stats as one JSON object instead")


def _holitom_config(args: argparse.Namespace, default_layer: int) -> Any:
    from lmms_holitom.config import HoliTomConfig

    values: dict[str, Any] = {"method": args.method}
    for name in ("retain_ratio", "tau", "merge_ratio", "fidelity", "budget"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.merge_layer is not None:
        values["merge_layer"] = args.merge_layer
    elif "merge_layer" not in HoliTomConfig(method=args.method).spec.defaults:  # the model's depth-scaled K
        values["merge_layer"] = default_layer
    return HoliTomConfig.from_dict(values)


def _device_and_dtype(device: str, dtype: str) -> tuple[Any, Any]:
    import torch

    from lmms_holitom.values import resolve_dtype

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    return dev, resolve_dtype(dtype, dev, name="--dtype")


def format_stats(stats: dict[str, Any]) -> str:
    """Two human-readable lines for a `holitom_stats` dict."""
    dense, outer, inner = stats["dense_tokens"], stats["outer_tokens"], stats["inner_tokens"]
    share = f" ({100.0 * outer / dense:.1f}%)" if dense else ""
    line = f"method {stats['method']} | frames {stats['frames']} | visual tokens {dense} -> {outer}{share}"
    if stats.get("merge_layer") is not None:
        line += f" -> {inner} in layers >= {stats['merge_layer']}"
    line += (
        f" | segments {stats['segments']} | static {stats['static_tokens']} | prompt "
        f"{stats['prompt_tokens_dense']} -> {stats['prompt_tokens']} tokens"
    )
    timings = " | ".join(f"{k} {v:.1f}" for k, v in stats["timings_ms"].items())
    return f"{line}\ntimings (ms): {timings}"


def temporal_group(processor: Any, model: Any) -> int:
    """Sampled frames per encoded frame: Qwen-VL's temporal patch size (2), 1 for LLaVA."""
    from lmms_holitom.hf.models import HoliTomLlavaOnevisionForConditionalGeneration

    if isinstance(model, HoliTomLlavaOnevisionForConditionalGeneration):
        return 1
    return int(processor.video_processor.temporal_patch_size)


def _video_prompt(processor: Any, model: Any, video: str, frames: Any, question: str) -> dict[str, Any]:
    """Processor outputs of the one-video prompt; ``frames``: (F, H, W, 3) uint8, sampled from ``video``."""
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    extra: dict[str, Any] = {}
    group = temporal_group(processor, model)
    if group > 1:  # Qwen-VL: frames kept as given
        from lmms_holitom.commands import UsageError

        if frames.shape[0] < group:
            raise UsageError(f"--max-frames must be >= {group} for {model.config.model_type} (one temporal patch "
                             f"group is {group} frames), got {frames.shape[0]}")
        extra["do_sample_frames"] = False
        metadata = _video_metadata(video, frames.shape[0])
        if metadata is not None:
            extra["video_metadata"] = [metadata]
    return dict(processor(text=prompt, videos=[frames], return_tensors="pt", **extra))


def _container_frames(video: str) -> tuple[float, int]:
    """(frame rate, frame count) as the container states them; 0 where it does not."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return (float(stream.average_rate) if stream.average_rate else 0.0), int(stream.frames or 0)


def _video_metadata(video: str, count: int) -> Any:
    """transformers' `VideoMetadata` of ``count`` frames sampled as `load_video_frames` samples them (fps and
    indices from the container), or None when the container gives no frame rate or frame count."""
    from transformers.video_utils import VideoMetadata

    from lmms_holitom.video import sample_indices

    fps, total = _container_frames(video)
    if fps <= 0 or total < 1:
        return None
    indices = sample_indices(total, count).tolist()
    return VideoMetadata(total_num_frames=total, fps=fps, frames_indices=indices)


def run_notes(sampled: int, total: int, group: int, stats: dict[str, Any], answer: str, model_type: str,
              random_weights: str | None) -> list[str]:
    """What the printed numbers do not say by themselves.

    Args:
        sampled: frames sampled (``--max-frames``); total: the video's frames per its container (0: unknown);
        group: frames per temporal patch (Qwen: 2; LLaVA: 1); stats: the model's `holitom_stats`;
        random_weights: the name of a built-in random-weight model, or None.
    """
    from lmms_holitom.video import sample_indices

    notes = []
    if 0 < total < sampled:
        distinct = len(set(sample_indices(total, sampled).tolist()))
        notes.append(f"the video has {total} frame{'s' * (total != 1)}: --max-frames {sampled} samples "
                     "uniformly (linspace, as lmms-eval's llava_onevision does), so frames repeat "
                     f"({distinct} distinct of {sampled})")
    if group > 1:
        notes.append(f"frames {stats['frames']} counts {model_type}'s temporal patches: it encodes every {group} "
                     f"consecutive sampled frames as one ({sampled} sampled -> {stats['frames']})")
    if random_weights is not None:
        notes.append(f"{random_weights} has random weights: its answer is meaningless tokens, often bytes that are "
                     "not UTF-8 text (printed as \ufffd)")
    elif "\ufffd" in answer:
        notes.append("the answer contains \ufffd: the generated tokens are bytes that do not form UTF-8 text")
    return notes


def check_args(args: argparse.Namespace) -> None:
    """Every argument that can be checked before the video and model load; raises `UsageError`/ValueError."""
    from lmms_holitom.commands import UsageError, at_least, check_device

    for flag, value, high in (("--max-frames", args.max_frames, MAX_FRAMES),
                              ("--max-new-tokens", args.max_new_tokens, MAX_NEW_TOKENS),
                              ("--probe-chunk", args.probe_chunk, MAX_FRAMES)):
        at_least(flag, value, 1)
        if value > high:
            raise UsageError(f"{flag} must be an integer in [1, {high}], got {value}")
    check_device("--device", args.device)
    _holitom_config(args, default_layer=DEFAULTS["merge_layer"])  # the ranges; K is checked again with the model


def main(args: argparse.Namespace) -> int:
    from lmms_holitom.video import VideoDecodeError, load_video_frames

    check_args(args)
    try:
        frames = load_video_frames(args.video, args.max_frames, backend="pyav")
    except VideoDecodeError as exc:
        print(f"holitom run: error: {exc}", file=sys.stderr)
        return 2
    if frames.shape[0] == 0:
        print(f"holitom run: error: {args.video} gave 0 frames", file=sys.stderr)
        return 2

    import torch

    from lmms_holitom.hf.models import load_processor, model_class_for, resolve_model_name

    try:
        device, dtype = _device_and_dtype(args.device, args.dtype)
        checkpoint = resolve_model_name(args.pretrained)
        model_class = model_class_for(args.pretrained)
        model = model_class.from_pretrained(
            checkpoint, dtype=dtype, attn_implementation=args.attn_implementation, probe_chunk=args.probe_chunk
        )
        model = model.to(device).eval()
        model.set_holitom(_holitom_config(args, model.default_merge_layer()))
        processor = load_processor(checkpoint)
    except (ValueError, OSError) as exc:
        print(f"holitom run: error: {exc}", file=sys.stderr)
        return 2

    inputs = _video_prompt(processor, model, args.video, frames, args.question)
    inputs = {k: v.to(device, dtype) if k.startswith("pixel_values") else v.to(device) for k, v in inputs.items()}
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
    answer = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    stats = model.holitom_stats.to_dict()
    random_weights = args.pretrained if checkpoint != args.pretrained else None  # a built-in tiny model's name
    notes = run_notes(frames.shape[0], _container_frames(args.video)[1], temporal_group(processor, model), stats,
                      answer, model.config.model_type, random_weights)
    if args.json:
        print(json.dumps({"answer": answer, "stats": stats, "notes": notes}))
    else:
        print(f"answer: {answer.strip()}")
        print(format_stats(stats))
        print("".join(f"note: {note}\n" for note in notes), end="")
    return 0
