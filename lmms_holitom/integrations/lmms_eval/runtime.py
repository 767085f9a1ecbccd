"""Process layout, device placement and dtype of an lmms-eval model, and the first-token clock (TTFT)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["FirstTokenClock", "barrier", "lost_processes", "placement", "process_layout"]

#: What to run instead of a single-process ``accelerate launch`` (one line, logged).
TORCHRUN_HINT = "torchrun --nproc_per_node N -m lmms_eval ..."


def process_layout(accelerator: Any) -> tuple[int, int, int]:
    """(global rank, world size, local rank): from torch.distributed when a process group exists.

    lmms-eval's CLI creates an ``Accelerator`` before the model; under ``torchrun`` on CPUs that one inits a
    gloo group yet reports a single process, so the process group is the authority.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = accelerator.process_index, accelerator.num_processes
    local = int(os.environ.get("LOCAL_RANK", accelerator.local_process_index))
    return rank, world, local


def lost_processes(environ: Mapping[str, str], world_size: int) -> str | None:
    """One line when ``accelerate launch --num_processes N`` (N > 1) started a single process, else None.

    accelerate 1.x starts one process with its "simple" launcher whenever it does not take the multi-GPU path
    (``--cpu``, no GPU, or one GPU), whatever ``--num_processes`` says; that launcher sets
    ``ACCELERATE_USE_CPU`` always and ``MASTER_ADDR``/``MASTER_PORT`` only for N > 1, and no ``WORLD_SIZE``
    (recorded from ``accelerate launch --num_processes 2 --cpu`` with accelerate 1.16). torchrun sets
    ``WORLD_SIZE`` in every process.
    """
    launched_one = "ACCELERATE_USE_CPU" in environ and "WORLD_SIZE" not in environ
    if world_size > 1 or not launched_one or not environ.get("MASTER_ADDR"):
        return None
    return ("accelerate launch was asked for several processes but started one (its launcher does that on CPUs "
            f"and with fewer than 2 GPUs): this run uses 1 process; for N processes use `{TORCHRUN_HINT}`")


def barrier(accelerator: Any) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    else:
        accelerator.wait_for_everyone()


class FirstTokenClock:
    """A logits processor that notes when the first token's logits exist (end of prefill = TTFT)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.t_first: float | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.t_first is None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.t_first = time.perf_counter()
        return scores


def placement(
    world_size: int, local_rank: int, device: str | None, device_map: str | None
) -> tuple[torch.device, Any]:
    """(input device, device_map for from_pretrained or None to load then ``.to(device)``).

    Several processes: one full copy per process on ``cuda:{local rank}`` (or the CPU); one process:
    ``device_map=auto`` splits the model over its GPUs, otherwise everything goes to ``device``.
    """
    if world_size > 1:
        if device_map == "auto":
            raise ValueError(
                "device_map=auto splits one model over all GPUs of a single process; with several "
                "processes each one loads its own copy (drop device_map, or launch one process)"
            )
        if (device is not None and str(device).startswith("cpu")) or not torch.cuda.is_available():
            return torch.device("cpu"), None
        target = torch.device(f"cuda:{local_rank}")
        return target, str(target)
    if device_map == "auto":
        return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")), "auto"
    if device_map is not None:
        return torch.device(device_map), device_map
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")), None
