"""``dense`` through the plugin equals stock vLLM: the same tiny model, video and prompt through our registered class
with ``{"holitom": {"method": "dense"}}`` (in-process, as the cross-backend cases run it) and through vLLM with our
plugin not loaded at all (``VLLM_PLUGINS`` names no plugin of ours, no ``holitom`` entry; its own process) give the
same prompt length, the same greedy tokens and the same first-step log-probabilities over the whole vocabulary.
Runs in the vLLM venv: ``make test-vllm``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from backend_cases import MROPE_MODELS, PROMPTS  # noqa: E402
from test_vllm_plugin import KV_CACHE_BYTES, engine_env, generate, model_dir  # noqa: E402

#: the same kernels in two processes, whose thread counts may differ (fp32 sums in another order: 1.2e-5 seen on a
#: log-probability of -9); ten times tighter than the cross-backend tolerance (test_vllm_plugin.ATOL)
ATOL = 1e-4
#: tiny model -> the plugin module whose class serves it in this process
OURS = {"tiny-vllm-llava-ov": "lmms_holitom.integrations.vllm.llava_onevision",
        "tiny-vllm-qwen2.5-vl": "lmms_holitom.integrations.vllm.qwen2_5_vl"}


@pytest.mark.parametrize("name", ["tiny-vllm-llava-ov", "tiny-vllm-qwen2.5-vl"])
def test_dense_through_the_plugin_equals_stock_vllm(name: str, tmp_path: Path) -> None:
    ours, records = generate(name, {"method": "dense"}, name, tmp_path / "records")
    assert records == []  # dense never enters the plugin's video path
    assert OURS[name] in sys.modules  # ... yet our registered class served it
    job = {"model": model_dir(name), "settings": None, "prompt": PROMPTS[name], "out": str(tmp_path / "stock.json"),
           "mrope": name in MROPE_MODELS, "logprobs": True,
           "engine": {"distributed_executor_backend": "uni", "kv_cache_memory_bytes": KV_CACHE_BYTES}}
    env = engine_env(VLLM_PLUGINS="none-of-ours", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    env.pop("LMMS_HOLITOM_VLLM_RECORD", None)
    done = subprocess.run([sys.executable, str(HERE / "run_engine.py"), json.dumps(job)], env=env, timeout=420,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    stock = json.loads((tmp_path / "stock.json").read_text())
    assert stock["modules"] == []  # vLLM's own classes: nothing of ours was even imported
    assert len(ours.prompt_tokens) == stock["prompt_tokens"]
    assert ours.tokens == stock["tokens"]
    torch.testing.assert_close(torch.tensor(ours.logprobs), torch.tensor(stock["logprobs"]), atol=ATOL, rtol=0)
