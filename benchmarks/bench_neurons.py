"""Side-by-side speed and memory of snnir and its peers (SpikingJelly, snnTorch, Norse, Sinabs).

Per workload, every framework is built in one process from identical weights and inputs (one
seed); output spikes are compared with snnir's first; then forward (no grad) and forward+backward
(a training step without the optimizer) are timed in interleaved rounds -- each round runs every
framework once, the order rotated per round -- so the machine's changing load hits all of them
alike. The table gives snnir's medians and, per peer, its time over snnir's computed round by round
(median and min-max). Peak memory (growth of peak RSS during one forward+backward) and the first
call (cold: snnir compiling its kernels into an empty cache; warm: found cached) are measured per
framework in processes of their own.

    bash benchmarks/setup_peers.sh            # once: peers, with torch kept at 2.13.0
    python benchmarks/bench_neurons.py        # all workloads; results also in bench_neurons.json
    python benchmarks/bench_neurons.py --workloads lif_fc on_512 --rounds 21

``--malloc-tuned`` runs every framework with glibc told to keep freed memory
(``MALLOC_TRIM_THRESHOLD_``/``MALLOC_MMAP_THRESHOLD_``): by default glibc unmaps large freed
blocks, so every training step faults its big tensors back in, which costs conv SNNs up to ~40%
of their time on this machine (jemalloc or tcmalloc have the same effect).

Workloads: lif_fc (Flatten -> Linear(784, 10) -> LIF, T=100, B=64), on_512 and on_4096
(Linear(n, n) + LIF, B=16, T=500, Gaussian input), conv (Conv-BN-LIF-Pool x2 -> Linear -> LIF,
2x34x34, T=16, B=16), and neurons (each built-in snnir neuron alone, 2^16 neurons, T = 8, 32, 128,
fused versus the per-step reference path, with SpikingJelly's equivalent where one exists). The
FC workloads also print their floor: the GEMMs that run (forward and weight gradient; the input
needs no gradient) at the machine's measured GEMM rate plus the neuron's state traffic at its
measured memory bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from timing import interleaved_ms, median_ms, peak_rss_reset, rss_status  # noqa: E402

NEURONS = ("IF", "LIF", "ParametricLIF", "QIF", "EIF", "Izhikevich", "CubaLIF", "AdaptiveLIF")
_SJ_NEURONS = {"IF": "IFNode", "LIF": "LIFNode", "ParametricLIF": "ParametricLIFNode", "QIF": "QIFNode",
               "EIF": "EIFNode"}


def build_case(workload: str, framework: str) -> dict | None:
    """``{"fwd", "fwd_bwd", "spikes"}`` callables for one framework on one workload (None: the
    framework has no equivalent)."""
    import peers
    import torch

    if workload.startswith("neuron:"):
        _, model, T = workload.split(":")
        torch.manual_seed(0)
        x = torch.rand(int(T), 2**16) * 2.0
        if model == "Izhikevich":
            x = x * 10
        if framework == "spikingjelly":
            from spikingjelly.activation_based import functional, neuron

            if model not in _SJ_NEURONS:
                return None
            kwargs = {"LIF": {"tau": 2.0}, "ParametricLIF": {"init_tau": 2.0}}.get(model, {})
            net = getattr(neuron, _SJ_NEURONS[model])(step_mode="m", **kwargs)
            reset = lambda: functional.reset_net(net)  # noqa: E731
        else:
            from snnir import nn as snn

            kwargs = {"LIF": {"tau": 2.0}, "Izhikevich": {"dt": 0.5}}.get(model, {})
            net = getattr(snn, model)(step_mode="m", fused=framework == "snnir", **kwargs)
            reset = lambda: snn.reset(net)  # noqa: E731
        run = net
        xg = x.clone().requires_grad_()
    else:
        spec = peers.workload_spec(workload)
        net, run, reset = peers.build(framework, spec, peers.make_weights(spec))
        net.train()
        x = xg = peers.make_input(spec)

    def fwd():
        reset()
        with torch.no_grad():
            return run(x)

    def fwd_bwd():
        reset()
        net.zero_grad(set_to_none=True)
        run(xg).sum().backward()

    return {"fwd": fwd, "fwd_bwd": fwd_bwd, "spikes": lambda: peers.spikes_to_numpy(fwd())}


def worker(args: argparse.Namespace) -> dict:
    """One framework in a process of its own: the first call and the peak memory of fwd+bwd."""
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    case = build_case(args.workload, args.framework)
    if case is None:
        return {"skipped": True}
    case["fwd"]()
    first = time.perf_counter() - t0
    case["fwd_bwd"]()
    base = peak_rss_reset()
    case["fwd_bwd"]()
    return {"first_call_s": first, "peak_mib": (rss_status("VmHWM") - base) / 1024}


def in_process(workload: str, framework: str, malloc_env: dict) -> dict:
    """``worker`` in a fresh process; for snnir a second one, whose kernels are already cached."""
    cache = tempfile.mkdtemp(prefix="snnir-kernel-cache-")
    runs = []
    for _ in range(2 if framework.startswith("snnir") else 1):
        cmd = [sys.executable, __file__, "--worker", "--workload", workload, "--framework", framework]
        env = {**os.environ, "OMP_NUM_THREADS": "2", "SNNIR_CACHE_DIR": cache, **malloc_env}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1:]}
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out = dict(runs[-1])
    out["first_call_cold_s"] = runs[0].get("first_call_s")
    return out


def interleaved(workload: str, frameworks: list[str], rounds: int) -> dict:
    """Spikes agreement and interleaved timings of every framework on ``workload``."""
    import torch

    torch.set_num_threads(2)
    cases = {f: c for f in frameworks if (c := build_case(workload, f)) is not None}
    ref = cases["snnir"]["spikes"]()
    agreement = {}
    for f, c in cases.items():
        s = c["spikes"]()
        agreement[f] = float((s == ref).mean()) if s.shape == ref.shape else float("nan")
    fwd = interleaved_ms({f: c["fwd"] for f, c in cases.items()}, rounds)
    fwd_bwd = interleaved_ms({f: c["fwd_bwd"] for f, c in cases.items()}, rounds)
    out = {}
    for f in cases:
        ratio = [a / b for a, b in zip(fwd_bwd[f], fwd_bwd["snnir"])]
        out[f] = {"fwd_ms": statistics.median(fwd[f]), "fwd_bwd_ms": statistics.median(fwd_bwd[f]),
                  "fwd_bwd_min_max_ms": [min(fwd_bwd[f]), max(fwd_bwd[f])],
                  "x_snnir": statistics.median(ratio), "x_snnir_min_max": [min(ratio), max(ratio)],
                  "spikes_equal": agreement[f]}
    return out


def floor_ms(workload: str) -> dict:
    """Compute floor of an FC workload: the two GEMMs that run (forward, and weight gradient: the
    input needs no gradient), each at the measured GEMM peak or at the measured memory bandwidth
    for the input it reads, whichever is slower (a skinny GEMM is a pass over its input), plus the
    LIF state traffic at that bandwidth (fwd reads the current and writes spikes; bwd reads the
    current and the spike gradient and writes the current's gradient, recomputing v: 5 floats per
    neuron-step)."""
    import torch

    torch.set_num_threads(2)
    import peers

    spec = peers.workload_spec(workload)
    n_in, n_out = spec["sizes"]
    M = spec["T"] * spec["B"]
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    peak = 2 * 4096**3 / (median_ms(lambda: a @ b, 2, 5) / 1000)
    big = torch.randn(64 * 2**20 // 4)
    out = torch.empty_like(big)
    bandwidth = 2 * big.numel() * 4 / (median_ms(lambda: out.copy_(big), 2, 9) / 1000)  # read + write
    gemm = max(2 * M * n_in * n_out / peak, M * n_in * 4 / bandwidth)  # each of the two GEMMs
    state_bytes = 5 * M * n_out * 4
    return {"gemm_gflops": peak / 1e9, "bandwidth_gbs": bandwidth / 1e9,
            "floor_ms": (2 * gemm + state_bytes / bandwidth) * 1000}


MALLOC_TUNED = {"MALLOC_TRIM_THRESHOLD_": "4000000000", "MALLOC_MMAP_THRESHOLD_": "4000000000",
                "MALLOC_TOP_PAD_": "268435456"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="*", default=["lif_fc", "on_512", "conv", "on_4096", "neurons"])
    parser.add_argument("--frameworks", nargs="*", default=None)
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds per workload")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-process memory and first call")
    parser.add_argument("--json", default=str(HERE / "bench_neurons.json"))
    parser.add_argument("--malloc-tuned", action="store_true", help="keep freed memory mapped (all frameworks)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--framework", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import peers

    malloc_env = dict(MALLOC_TUNED) if args.malloc_tuned else {}
    if args.malloc_tuned and any(os.environ.get(k) != v for k, v in MALLOC_TUNED.items()):
        os.environ.update(MALLOC_TUNED)  # glibc reads them at start: run again with them set
        os.execv(sys.executable, [sys.executable, __file__, *sys.argv[1:]])
    frameworks = args.frameworks or list(peers.FRAMEWORKS)
    skipped = {f: peers.available(f) for f in frameworks}
    for f, why in skipped.items():
        if why:
            print(f"skipping {f}: not installed ({why}); run benchmarks/setup_peers.sh")
    frameworks = [f for f in frameworks if not skipped[f]]
    from tqdm import tqdm

    workloads = []
    for wl in args.workloads:
        workloads += [f"neuron:{m}:{T}" for m in NEURONS for T in (8, 32, 128)] if wl == "neurons" else [wl]
    results: dict[str, dict] = {}
    loads = [os.getloadavg()[0]]
    for wl in tqdm(workloads, desc="workloads", unit="workload"):
        fws = ["snnir", "snnir-reference", "spikingjelly"] if wl.startswith("neuron:") else frameworks
        fws = [f for f in fws if f == "snnir-reference" or f in frameworks]
        results[wl] = interleaved(wl, fws, args.rounds)
        loads.append(os.getloadavg()[0])
        if not args.no_memory:
            for f in results[wl]:
                results[wl][f].update(in_process(wl, f, malloc_env))
    floors = {wl: floor_ms(wl) for wl in workloads if wl.startswith(("on_", "lif_fc"))}

    print(f"\nload average {min(loads):.1f}-{max(loads):.1f}; {args.rounds} interleaved rounds per workload")
    print(f"{'workload':<24}{'framework':<17}{'fwd ms':>9}{'fwd+bwd ms':>12}{'x snnir (f+b)':>15}{'min-max':>12}"
          f"{'peak MiB':>10}{'spikes = snnir':>16}{'1st call s (cold)':>19}")
    for wl, by_fw in results.items():
        for f, r in by_fw.items():
            spread = f"{r['x_snnir_min_max'][0]:.2f}-{r['x_snnir_min_max'][1]:.2f}"
            peak = f"{r['peak_mib']:10.1f}" if "peak_mib" in r else f"{'':10}"
            first = (f"{r['first_call_s']:>10.2f} ({r['first_call_cold_s']:.2f})" if "first_call_s" in r else "")
            print(f"{wl:<24}{f:<17}{r['fwd_ms']:>9.2f}{r['fwd_bwd_ms']:>12.2f}{r['x_snnir']:>15.2f}{spread:>12}"
                  f"{peak}{r['spikes_equal'] * 100:>15.4f}%{first}")
        if wl in floors:
            fl = floors[wl]
            print(f"{'':<24}floor: {fl['floor_ms']:.2f} ms (GEMM {fl['gemm_gflops']:.0f} GFLOP/s, "
                  f"{fl['bandwidth_gbs']:.1f} GB/s); snnir/floor = {by_fw['snnir']['fwd_bwd_ms'] / fl['floor_ms']:.2f}")
    Path(args.json).write_text(json.dumps({"load": loads, "rounds": args.rounds, "results": results,
                                           "floors": floors}, indent=1))
    print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
