"""Whole training steps of two CIFAR-sized SNNs: snnir versus SpikingJelly and snnTorch.

A step is: reset the state, forward ``[T=4, B=32, 3, 32, 32]``, cross-entropy on the time-averaged
readout, backward, SGD (momentum 0.9). The networks (``training_nets.py``: spiking VGG with six
conv-BN-LIF layers, SEW-ResNet-18) are built in each framework from the same weights, and their
outputs are compared before anything is timed. All contenders live in one process and are timed
in interleaved rounds (one step each per round, the order rotated every round), so a change in
the machine's load hits all of them alike; the table gives medians with the spread (min-max) and
each contender's speed-up over SpikingJelly computed round by round, and the memory each step
faults in (MiB, median: fresh pages, the cost of buffers not reused). Peak memory is measured per
contender in a process of its own (growth of peak RSS during one step after two warm-up steps).

    python benchmarks/bench_training.py                       # both nets, default contenders
    python benchmarks/bench_training.py --nets vgg --rounds 15 --contenders snnir spikingjelly
    python benchmarks/bench_training.py --profile snnir --nets sew_resnet18   # torch.profiler table
    python benchmarks/bench_training.py --src /path/to/older/checkout ...     # snnir from another checkout

Contenders: ``snnir`` (traced and compiled with the defaults, fp32: on CPU its convolutions run
channels-last, ``memory_format="auto"``), ``snnir-nchw`` (``memory_format=torch.contiguous_format``:
NCHW as the eager model), ``snnir-cl`` (``memory_format=torch.channels_last``: weights too),
``snnir-bf16-cl`` (that, run under ``torch.autocast("cpu", torch.bfloat16)``), ``snnir-unfused``
(``fuse=False``), ``snnir-tc`` (``torch.compile`` of the compiled graph), ``spikingjelly``,
``spikingjelly-cl`` (its model and input channels-last, fp32), ``spikingjelly-bf16-cl`` (that under the
same autocast), ``snntorch``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
import training_nets as nets  # noqa: E402
from timing import peak_rss_reset, rss_status  # noqa: E402

CONTENDERS = ("snnir", "snnir-nchw", "snnir-cl", "snnir-bf16-cl", "snnir-unfused", "snnir-tc", "snnir-nchw-tc",
              "spikingjelly", "spikingjelly-cl", "spikingjelly-bf16-cl", "snntorch")
DEFAULT = ("snnir", "snnir-bf16-cl", "spikingjelly", "snntorch")


class Contender:
    """One framework and options, ready to run training steps on ``x``."""

    def __init__(self, name: str, net: str, weights: dict, x: torch.Tensor, y: torch.Tensor) -> None:
        self.name = name
        framework = name.split("-")[0]
        bf16 = "bf16" in name
        cl = name.endswith("-cl")
        model = nets.load(nets.build(net, framework), weights).train()
        if framework == "snnir":
            import snnir
            from snnir import nn as snn

            graph = snnir.trace(model, x)
            kwargs = {"memory_format": torch.channels_last} if cl else {}
            if "-nchw" in name:
                kwargs["memory_format"] = torch.contiguous_format
            if name.endswith("-unfused"):
                kwargs["fuse"] = False
            model = snnir.compile(graph, **kwargs).train()
            self.reset = model.reset
            if name.endswith("-tc"):  # torch.compile (inductor) of the compiled graph: its first step compiles
                model = torch.compile(model)
            del snn
        elif framework == "spikingjelly":
            from spikingjelly.activation_based import functional

            if cl:
                model = model.to(memory_format=torch.channels_last)
            self.reset = lambda: functional.reset_net(model)
        else:
            self.reset = lambda: None
        if cl and framework != "snnir":
            x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, x.shape[:2])
        self.model, self.x, self.y = model, x, y
        self.autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def forward(self) -> torch.Tensor:
        self.reset()
        with torch.no_grad(), self.autocast():
            return self.model(self.x).float()

    def step(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        self.reset()
        with self.autocast():
            out = self.model(self.x)
            loss = torch.nn.functional.cross_entropy(out.mean(0).float(), self.y)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def _load() -> float:
    return os.getloadavg()[0]


def run_interleaved(net: str, names: list[str], rounds: int, warmup: int) -> dict:
    weights = nets.reference_weights(net)
    x, y = nets.make_input()
    contenders = [Contender(n, net, weights, x, y) for n in names]
    ref = contenders[0].forward()
    agreement = {}
    for c in contenders:
        out = c.forward()
        agreement[c.name] = float((out - ref).abs().max())
    for c in contenders:
        for _ in range(warmup):
            c.step()
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    faults: dict[str, list[float]] = {c.name: [] for c in contenders}  # MiB of pages faulted in per step
    loads = [_load()]
    from tqdm import tqdm

    for r in tqdm(range(rounds), desc=f"{net} rounds", unit="round"):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for c in order:
            f0, t0 = _minor_faults(), time.perf_counter()
            c.step()
            times[c.name].append((time.perf_counter() - t0) * 1000)
            faults[c.name].append((_minor_faults() - f0) * resource.getpagesize() / 2**20)
        loads.append(_load())
    return {"times_ms": times, "fault_mib": faults, "max_abs_diff_vs_first": agreement, "load": loads}


def _minor_faults() -> int:
    """Pages this process has faulted in so far (fresh memory touched for the first time: a step that
    reuses its buffers faults none; glibc unmapping large freed blocks makes every step fault them)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def memory_worker(net: str, name: str) -> dict:
    torch.set_num_threads(2)
    weights = nets.reference_weights(net)
    x, y = nets.make_input()
    c = Contender(name, net, weights, x, y)
    c.step()
    c.step()
    base = peak_rss_reset()
    c.step()
    return {"peak_mib": (rss_status("VmHWM") - base) / 1024}


def memory(net: str, name: str, src: str | None = None) -> float | None:
    cmd = [sys.executable, __file__, "--memory-worker", net, name] + (["--src", src] if src else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if proc.returncode != 0:
        print(f"memory of {name} on {net} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]


def summarize(net: str, result: dict, peaks: dict) -> list[str]:
    times = result["times_ms"]
    lines = [f"\n{net}: load average {min(result['load']):.1f}-{max(result['load']):.1f} during the rounds",
             f"{'contender':<22}{'median ms':>11}{'min-max ms':>17}{'x SpikingJelly':>16}{'(min-max)':>14}"
             f"{'peak MiB':>10}{'out diff':>10}{'faults MiB':>12}"]
    sj = times.get("spikingjelly")
    for name, ts in times.items():
        speed = ""
        if sj:
            ratios = [a / b for a, b in zip(sj, ts)]
            result.setdefault("x_spikingjelly", {})[name] = {"median": statistics.median(ratios),
                                                             "min": min(ratios), "max": max(ratios)}
            speed = f"{statistics.median(ratios):>16.2f}{f'{min(ratios):.2f}-{max(ratios):.2f}':>14}"
        peak = peaks.get(name)
        lines.append(f"{name:<22}{statistics.median(ts):>11.1f}{f'{min(ts):.0f}-{max(ts):.0f}':>17}{speed}"
                     f"{'-' if peak is None else f'{peak:.0f}':>10}{result['max_abs_diff_vs_first'][name]:>10.2g}"
                     f"{statistics.median(result['fault_mib'][name]):>12.0f}")
    return lines


def profile(net: str, name: str, steps: int) -> None:
    weights = nets.reference_weights(net)
    x, y = nets.make_input()
    c = Contender(name, net, weights, x, y)
    c.step()
    c.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            c.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", nargs="*", default=list(nets.NETS), choices=nets.NETS)
    ap.add_argument("--contenders", nargs="*", default=list(DEFAULT), choices=CONTENDERS)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true", help="skip the per-process peak memory")
    ap.add_argument("--profile", metavar="CONTENDER", help="print a torch.profiler table for one contender")
    ap.add_argument("--json", default=str(HERE / "bench_training.json"))
    ap.add_argument("--memory-worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--src", help="import snnir from this source checkout (before/after comparisons)")
    args = ap.parse_args()
    if args.src:  # the checkout first on the path, the installed (editable) package out of the way
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, args.src)
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        print(json.dumps(memory_worker(*args.memory_worker)))
        return
    if args.profile:
        for net in args.nets:
            profile(net, args.profile, 3)
        return
    out: dict = {"threads": args.threads, "torch": torch.__version__, "src": args.src, "nets": {}}
    report: list[str] = []
    for net in args.nets:
        result = run_interleaved(net, args.contenders, args.rounds, args.warmup)
        peaks = {} if args.no_memory else {n: memory(net, n, args.src) for n in args.contenders}
        result["peak_mib"] = peaks
        report += summarize(net, result, peaks)
        out["nets"][net] = result
    print("\n".join(report))
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
