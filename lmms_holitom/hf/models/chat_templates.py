"""Chat templates the package renders prompts with (used by the LLaVA-NeXT-format processor and the tiny models)."""

from __future__ import annotations

__all__ = ["QWEN_1_5"]

#: Qwen-1.5 chat template: the same prompt lmms-eval's ``qwen_1_5`` conversation template builds (the template the
#: authors prompt LLaVA-OneVision / LLaVA-Video with).
QWEN_1_5 = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<image>\n"
    "{% elif content['type'] == 'video' %}<video>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
