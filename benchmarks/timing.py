"""Timing and memory helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable


def median_ms(fn: Callable[[], object], warmup: int = 2, repeats: int = 7) -> float:
    """Median wall time of ``fn`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def interleaved_ms(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Wall times (ms) of several functions timed in interleaved rounds: each round calls every
    function once, the order rotated per round, so a change of the machine's load hits all alike."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            fns[name]()
            times[name].append((time.perf_counter() - t) * 1000)
    return times


def peak_rss_reset() -> int:
    """Make freed memory go back to the OS at once (so RSS follows live memory), reset the
    kernel's peak-RSS counter (Linux), and return the current RSS in KiB."""
    import ctypes

    pool = sys.modules.get("snnir.backends.torch.buffers")
    if pool is not None:  # snnir's kernel-output pool starts empty, so its buffers count in the peak
        pool.release()
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: large blocks are mmapped, unmapped on free
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return rss_status("VmRSS")


def rss_status(key: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0
