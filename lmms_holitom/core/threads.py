"""`intra_op_threads(count)`: torch's CPU intra-op thread count set for a block, restored after (also on errors).

Why (the vLLM plugin runs its outer merges under ``intra_op_threads(1)``, through
`core.outer.compress_video_on_one_thread`): an outer merge is a few hundred small tensor operations (a video's F·N
rows); with several OpenMP threads each of the larger ones is a parallel region whose end waits for every thread,
and on a CPU shared with other work a waiting thread that has been descheduled costs a whole scheduler slice —
measured on a 2-core machine at load average 5: HoliTom's merge of 8 × 196 tokens took 0.52 s with 2 threads and
0.07 s with 1. The merge's results do not depend on the thread count (``tests/test_core_threads.py`` checks every
method bit for bit), so this changes time only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["intra_op_threads"]


@contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with ``torch.get_num_threads() == count`` (``count >= 1``); the previous count is restored."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    before = torch.get_num_threads()
    if before == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
