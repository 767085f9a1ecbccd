"""Process layout, device placement and dtype of an lmms-eval model, and the first-token clock (TTFT)."""

from __future__ import annotations

import os
import time
from typing import Any

import torch

__all__ = ["FirstTokenClock", "barrier", "placement", "process_layout"]


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
