"""The lmms-eval models ``qwen2_5_vl_holitom``, ``qwen3_vl_holitom`` and ``qwen3_5_holitom`` through the real lmms-eval
CLI on the smoke task (tiny offline models, real mp4 clips), dense and HoliTom, with per-sample stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plugin_fixtures import cli_env, read_jsonl, run_lmms_eval

from lmms_holitom.integrations.lmms_eval.records import stats_files

pytestmark = pytest.mark.slow

PIXELS = "min_pixels=3136,max_pixels=12544,max_num_frames=8,device=cpu"
DOCS = 4  # --limit 4: three clips and the one-frame clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smoke_clips")


def model_dir(out_dir: Path, name: str) -> Path:
    return out_dir / name


@pytest.mark.parametrize("model,name,k", [("qwen2_5_vl_holitom", "tiny-qwen2.5-vl", 2),
                                          ("qwen3_vl_holitom", "tiny-qwen3-vl", 2),
                                          ("qwen3_vl_holitom", "tiny-qwen3-vl-moe", 2),  # MoE: by model_type
                                          ("qwen3_5_holitom", "tiny-qwen3.5", 4),  # hybrid: K-1 full attention
                                          ("qwen3_5_holitom", "tiny-qwen3.5-moe", 4)])
def test_dense_and_holitom_runs(tmp_path, clips, model, name, k):
    runs = {}
    for method, extra in [("dense", ""), ("holitom", f",retain_ratio=0.3,tau=0.8,merge_layer={k},merge_ratio=0.5")]:
        out = tmp_path / method
        run = run_lmms_eval(out, f"pretrained={name},{PIXELS},method={method}{extra}", env=cli_env(clips),
                            model=model, extra=("--limit", str(DOCS)))
        assert run.returncode == 0, run.output[-4000:]
        results = sorted(model_dir(out, name).glob("*_results.json"))
        assert results, f"no results file:\n{run.output[-4000:]}"
        assert json.loads(results[-1].read_text())["n-samples"]["holitom_smoke"]["effective"] == DOCS
        records = read_jsonl(stats_files(results[-1])[0])  # the statistics of this evaluation
        assert len(records) == DOCS
        # qwen_vl_utils (lmms-eval's own reader for these models) cannot read the one-frame clip: that sample is
        # one recorded failure naming the file, the others are answered
        failed = {Path(r["video"]).name: r["error"] for r in records if r["error"] is not None}
        assert set(failed) == {"single_frame.mp4"}, failed
        runs[method] = [r for r in records if r["error"] is None]
    dense, holi = runs["dense"], runs["holitom"]
    from transformers import AutoConfig

    from lmms_holitom.integrations.lmms_eval.recorder import visual_tflops
    from lmms_holitom.testing import resolve_pretrained

    config = AutoConfig.from_pretrained(resolve_pretrained(name))
    assert config.model_type == name.removeprefix("tiny-").replace(".", "_").replace("-", "_")
    text = config.get_text_config()
    for d, h in zip(sorted(dense, key=lambda r: r["doc_id"]), sorted(holi, key=lambda r: r["doc_id"])):
        assert d["method"] == "dense" and h["method"] == "holitom"
        assert d["frames"] == h["frames"] > 0 and d["dense_tokens"] == h["dense_tokens"] == d["outer_tokens"]
        assert h["outer_tokens"] < h["dense_tokens"] and h["inner_tokens"] < h["outer_tokens"]
        assert h["merge_layer"] == k
        # TFLOPs: the cost model of this decoder (layer kinds, experts) at the record's own counts
        assert h["tflops"] == pytest.approx(visual_tflops(text, h["outer_tokens"], h["inner_tokens"], k), rel=1e-6)
        assert d["tflops"] == pytest.approx(visual_tflops(text, d["dense_tokens"], d["dense_tokens"], None), rel=1e-6)


def test_bad_model_args_are_one_line_errors():
    from lmms_holitom.integrations.lmms_eval.qwen import Qwen2_5_VLHoliTom, Qwen3VLHoliTom

    with pytest.raises(ValueError, match=r"max_num_frames must be an integer in \[1, 4096\], got 'abc'"):
        Qwen2_5_VLHoliTom(pretrained="tiny-qwen2.5-vl", max_num_frames="abc", device="cpu")
    with pytest.raises(ValueError, match="fps must be a number > 0"):
        Qwen2_5_VLHoliTom(pretrained="tiny-qwen2.5-vl", fps="-1", device="cpu")
    with pytest.raises(ValueError, match="unknown model_args conv_template"):
        Qwen3VLHoliTom(pretrained="tiny-qwen3-vl", conv_template="qwen_1_5", device="cpu")
    with pytest.raises(ValueError, match="merge_layer must be >= 2 for this Qwen3-VL model"):
        Qwen3VLHoliTom(pretrained="tiny-qwen3-vl", method="holitom", merge_layer=1, device="cpu")
