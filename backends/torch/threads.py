"""How many OpenMP threads one compiled-kernel call uses.

The kernels (neuron, BatchNorm statistics, pooling, skinny linear) share torch's OpenMP runtime
(``libgomp.so.1``, already loaded by torch) but not ATen's rule for small work: ``at::parallel_for``
runs on the calling thread below ``GRAIN`` elements. A parallel region ends in a barrier that waits
for every team thread, and when other processes keep the cores busy a sleeping worker can wait a
whole scheduler slice (milliseconds) to run: measured on 2 cores at load 6, a 32-element neuron
call took 6.6 ms with 2 threads against 11 us with one. So small calls stay on the calling thread,
and a call never asks for more threads than it has independent chunks (tiles, rows, planes).
Large calls still pay that wait under oversubscription, as torch's own ops do (a 100k-element
``torch.sigmoid`` measured 5.8 ms against 34 us there); ``torch.set_num_threads(1)`` avoids it.
"""

from __future__ import annotations

import torch

GRAIN = 32768  # ATen's at::internal::GRAIN_SIZE: below it, parallelism costs more than it gains


def kernel_threads(work: int, chunks: int | None = None) -> int:
    """Threads for one kernel call doing ``work`` element updates split into ``chunks`` independent
    pieces: ``torch.get_num_threads()``, but 1 below ``GRAIN`` and at most ``chunks``.

    Example:
        >>> kernel_threads(100)
        1
        >>> kernel_threads(10**6, chunks=1)
        1
    """
    if work < GRAIN:
        return 1
    threads = torch.get_num_threads()
    return max(1, min(threads, chunks)) if chunks is not None else threads
