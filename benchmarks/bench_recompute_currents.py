"""``compile(..., recompute_currents=True)`` against the default on a spiking MLP's training step.

The 784-512-512-10 LIF MLP of ``bench_spike_mlp.py`` (T = 25, B = 64, fp32, rate-coded input,
the event kernels where the hidden spikes are sparse), one step = reset, forward, cross-entropy,
backward, SGD. Printed per variant:

- saved MiB: bytes autograd keeps between forward and backward, counted by an outer
  ``saved_tensors_hooks`` pair (deterministic);
- heap MiB: live heap bytes (glibc ``mallinfo2``: mmapped blocks, which every large tensor is
  here, plus the main arena's blocks in use) above the step's start, at the end of the forward and
  at its peak over the boundaries of every autograd node and neuron call (exact, repeatable);
- peak RSS MiB: growth of peak RSS during one step after two warm-up steps (transients inside a
  kernel included), each variant in a process of its own (``timing.peak_rss_reset``), with glibc
  told to map every block over 128 KiB on its own and to keep one arena (``MALLOC_ARENA_MAX=1``):
  otherwise blocks freed into the threads' arenas stay resident and the figure says more about
  glibc than about what the step keeps (measured: +4 MiB for the opt-in, noise for the default);
- step time: interleaved rounds in one process (order rotated per round), median and min-max,
  and the ratio default / opt-in round by round. On a shared machine the spread is wide: read
  the ratio's median, not one round.

    python benchmarks/bench_recompute_currents.py --rounds 15 --threads 2
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from bench_spike_mlp import BATCH, SIZES, Step, T  # noqa: E402
from timing import interleaved_ms, peak_rss_reset, rss_status  # noqa: E402

VARIANTS = {"default": False, "recompute": True}
# the memory worker's glibc: large blocks mapped on their own and unmapped on free, one arena
GLIBC = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def make(name: str, scale: float) -> Step:
    step = Step("snnir", scale)
    step.model.recompute_currents = VARIANTS[name]
    return step


def saved_mib(step: Step) -> float:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    step.opt.zero_grad(set_to_none=True)
    step.reset()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = step.model(step.x)
    torch.nn.functional.cross_entropy(out.mean(0), step.y).backward()
    return total / 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def heap_mib(step: Step) -> tuple[float, float] | None:
    """(live heap at the forward's end, its peak over node boundaries) above the step's start, MiB."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None

    def heap() -> int:
        info = libc.mallinfo2()
        return info.hblkhd + info.uordblks

    samples = []
    for layer in step.model.layers.values():  # forward hooks on a linear layer would turn the option off
        if not isinstance(layer, torch.nn.Linear):
            layer.register_forward_hook(lambda *_: samples.append(heap()))
    step.opt.zero_grad(set_to_none=True)
    step.reset()
    base = heap()
    out = step.model(step.x)
    loss = torch.nn.functional.cross_entropy(out.mean(0), step.y)
    forward_end = heap()
    seen, todo = set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        node.register_prehook(lambda *_: samples.append(heap()))
        node.register_hook(lambda *_: samples.append(heap()))
        todo += [f for f, _ in node.next_functions]
    loss.backward()
    return (forward_end - base) / 2**20, (max(samples) - base) / 2**20


def peak_mib(name: str, scale: float, threads: int) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, "--memory-worker", name, "--scale", str(scale),
                           "--threads", str(threads)], capture_output=True, text=True, env={**os.environ, **GLIBC})
    if proc.returncode != 0:
        print(f"memory of {name} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--scale", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-worker", choices=list(VARIANTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        step = make(args.memory_worker, args.scale)
        step(), step()
        base = peak_rss_reset()
        step()
        rss = (rss_status("VmHWM") - base) / 1024
        peak_rss_reset()  # the kernel-output pool emptied again: its buffers count, as in the RSS
        heap = heap_mib(step)
        print(json.dumps({"peak_mib": rss, "heap_fwd_mib": heap and heap[0], "heap_peak_mib": heap and heap[1]}))
        return
    steps = {n: make(n, args.scale) for n in VARIANTS}
    saved = {n: saved_mib(s) for n, s in steps.items()}
    times = interleaved_ms(steps, args.rounds)
    peaks = {n: peak_mib(n, args.scale, args.threads) for n in VARIANTS}
    ratios = [a / b for a, b in zip(times["default"], times["recompute"])]
    print(f"T={T} B={BATCH} {'-'.join(map(str, SIZES))} LIF, fwd+bwd+SGD, fp32, {args.threads} threads, "
          f"{args.rounds} interleaved rounds, load {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<11}{'saved MiB':>11}{'heap MiB fwd end / peak':>25}{'peak RSS MiB':>14}{'median ms':>11}"
          f"{'min-max ms':>13}")
    for n, ts in times.items():
        m = peaks[n] or {}
        heap = f"{m['heap_fwd_mib']:.2f} / {m['heap_peak_mib']:.2f}" if m.get("heap_peak_mib") is not None else ""
        rss = f"{m['peak_mib']:.1f}" if m else ""
        print(f"{n:<11}{saved[n]:>11.2f}{heap:>25}{rss:>14}{statistics.median(ts):>11.1f}"
              f"{f'{min(ts):.0f}-{max(ts):.0f}':>13}")
    print(f"default / recompute step time: median {statistics.median(ratios):.3f} "
          f"(rounds {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
