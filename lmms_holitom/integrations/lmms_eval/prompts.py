"""Prompts and generation settings of the LLaVA models, exactly as lmms-eval's ``llava_onevision`` builds them."""

from __future__ import annotations

from typing import Any

__all__ = ["CONV_TEMPLATES", "SYSTEM_PROMPT", "build_prompt", "generation_kwargs"]

SYSTEM_PROMPT = "You are a helpful assistant."
CONV_TEMPLATES = ("qwen_1_5", "chat_template", "none")


def build_prompt(context: str, video: bool, n_images: int, conv_template: str, processor: Any) -> str:
    """The prompt: one ``<video>`` placeholder (or one ``<image>`` per image) before the question.

    A placeholder already in the task's text is kept (an ``<image>`` becomes ``<video>`` for a video,
    as LLaVA-NeXT uses ``<image>`` for both).
    """
    if video and "<video>" not in context and "<image>" in context:
        context = context.replace("<image>", "<video>", 1)
    has_placeholder = "<video>" in context or "<image>" in context
    slots = [] if has_placeholder else (["video"] if video else ["image"] * n_images)
    if conv_template == "qwen_1_5":
        prefix = "".join(f"<{kind}>\n" if kind == "video" else "<image> " for kind in slots)
        if slots and slots[0] == "image":
            prefix = prefix.rstrip() + "\n"
        return (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{prefix}{context}"
                "<|im_end|>\n<|im_start|>assistant\n")
    content = [{"type": kind} for kind in slots] + [{"type": "text", "text": context}]
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

def generation_kwargs(gen_kwargs: dict | None, default_max_new_tokens: int, pad_token_id: int | None,
                      eos_token_id: int) -> dict[str, Any]:
    """lmms-eval task generation kwargs -> ``generate`` kwargs (``until`` is ignored, like lmms-eval's class)."""
    g = dict(gen_kwargs or {})
    temperature = float(g.get("temperature") or 0.0)
    do_sample = bool(g.get("do_sample", False)) and temperature > 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": int(g.get("max_new_tokens") or default_max_new_tokens),
        "do_sample": do_sample,
        "num_beams": int(g.get("num_beams") or 1),
        "use_cache": True,
        "pad_token_id": pad_token_id if pad_token_id is not None else eos_token_id,
        "eos_token_id": eos_token_id,
    }
    if do_sample:
        kwargs["temperature"] = temperature
        if g.get("top_p") is not None:
            kwargs["top_p"] = float(g["top_p"])
    else:  # silence "temperature is set but do_sample=False" from the checkpoint's generation config
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs
