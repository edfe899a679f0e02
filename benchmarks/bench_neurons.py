"""Side-by-side speed and memory of snnir and its peers (SpikingJelly, snnTorch, Norse, Sinabs).

Each (workload, framework) runs in its own process with 2 threads: identical weights and inputs
(one seed), output spikes compared across frameworks first, then warm-ups and the median of
repeats for forward (no grad) and forward+backward (a training step without the optimizer).
Peak memory is the growth of the process's peak RSS during one forward+backward.

    bash benchmarks/setup_peers.sh            # once: peers, with torch kept at 2.13.0
    python benchmarks/bench_neurons.py        # all workloads; results also in bench_neurons.json
    python benchmarks/bench_neurons.py --workloads lif_fc on_512 --processes 3

``--malloc-tuned`` runs every framework with glibc told to keep freed memory
(``MALLOC_TRIM_THRESHOLD_``/``MALLOC_MMAP_THRESHOLD_``): by default glibc unmaps large freed
blocks, so every training step faults its big tensors back in, which costs conv SNNs up to ~40%
of their time on this machine (jemalloc or tcmalloc have the same effect).

Workloads: lif_fc (Flatten -> Linear(784, 10) -> LIF, T=100, B=64), on_512 and on_4096
(Linear(n, n) + LIF, B=16, T=500, Gaussian input), conv (Conv-BN-LIF-Pool x2 -> Linear -> LIF,
2x34x34, T=16, B=16), and neurons (each built-in snnir neuron alone, 2^16 neurons, T = 8, 32, 128,
fused versus the per-step reference path, with SpikingJelly's equivalent where one exists).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from timing import median_ms, peak_rss_reset, rss_status  # noqa: E402


def worker(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(2)
    import peers

    result: dict = {"workload": args.workload, "framework": args.framework}
    if args.workload.startswith("neuron:"):
        return neuron_worker(args, result)
    spec = peers.workload_spec(args.workload)
    w = peers.make_weights(spec)
    x = peers.make_input(spec)
    t0 = time.perf_counter()
    net, run, reset = peers.build(args.framework, spec, w)
    net.train()
    reset()
    with torch.no_grad():
        y = run(x)
    result["first_call_s"] = time.perf_counter() - t0
    import numpy as np

    np.save(args.spikes, peers.spikes_to_numpy(y))
    result["rate"] = float(y.float().mean())

    def fwd():
        reset()
        with torch.no_grad():
            run(x)

    def fwd_bwd():
        reset()
        net.zero_grad(set_to_none=True)
        out = run(x)
        out.sum().backward()

    reps = args.repeats or max(3, min(20, int(2.0 / max(median_ms(fwd_bwd, 1, 1) / 1000, 1e-3))))
    result["fwd_ms"] = median_ms(fwd, 2, reps)
    result["fwd_bwd_ms"] = median_ms(fwd_bwd, 2, reps)
    base = peak_rss_reset()
    fwd_bwd()
    result["peak_mib"] = (rss_status("VmHWM") - base) / 1024
    result["repeats"] = reps
    return result


def neuron_worker(args: argparse.Namespace, result: dict) -> dict:
    """One neuron alone: snnir fused, snnir per-step reference, or SpikingJelly's equivalent."""
    import torch

    _, model, T = args.workload.split(":")
    T = int(T)
    torch.manual_seed(0)
    x = torch.rand(T, 2**16) * 2.0
    if model == "Izhikevich":
        x = x * 10
    if args.framework == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron

        make = {"IF": lambda: neuron.IFNode(step_mode="m"), "LIF": lambda: neuron.LIFNode(tau=2.0, step_mode="m"),
                "ParametricLIF": lambda: neuron.ParametricLIFNode(init_tau=2.0, step_mode="m"),
                "QIF": lambda: neuron.QIFNode(step_mode="m"), "EIF": lambda: neuron.EIFNode(step_mode="m")}
        if model not in make:
            return {**result, "skipped": f"SpikingJelly has no {model} equivalent"}
        n = make[model]()
        reset = lambda: functional.reset_net(n)  # noqa: E731
    else:
        from snnir import nn as snn

        kwargs = {"LIF": {"tau": 2.0}, "Izhikevich": {"dt": 0.5}}.get(model, {})
        n = getattr(snn, model)(step_mode="m", fused=args.framework == "snnir", **kwargs)
        reset = lambda: snn.reset(n)  # noqa: E731
    t0 = time.perf_counter()
    reset()
    with torch.no_grad():
        n(x)
    result["first_call_s"] = time.perf_counter() - t0
    xg = x.clone().requires_grad_()

    def fwd():
        reset()
        with torch.no_grad():
            n(x)

    def fwd_bwd():
        reset()
        n(xg).sum().backward()

    reps = args.repeats or 7
    result["fwd_ms"] = median_ms(fwd, 2, reps)
    result["fwd_bwd_ms"] = median_ms(fwd_bwd, 2, reps)
    base = peak_rss_reset()
    fwd_bwd()
    result["peak_mib"] = (rss_status("VmHWM") - base) / 1024
    return result


def floor_ms(workload: str) -> dict:
    """Compute floor of an FC workload: its GEMMs at measured peak plus the LIF state traffic at
    measured memory bandwidth (fwd reads x and writes spikes and the kept voltage; bwd reads the
    spike gradient and the voltage and writes the input gradient: 6 floats per neuron-step)."""
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
    flops = 3 * 2 * M * n_in * n_out  # forward, grad input, grad weight
    state_bytes = 6 * M * n_out * 4
    return {"gemm_gflops": peak / 1e9, "bandwidth_gbs": bandwidth / 1e9,
            "floor_ms": (flops / peak + state_bytes / bandwidth) * 1000}


_MALLOC_ENV: dict[str, str] = {}
MALLOC_TUNED = {"MALLOC_TRIM_THRESHOLD_": "4000000000", "MALLOC_MMAP_THRESHOLD_": "4000000000",
                "MALLOC_TOP_PAD_": "268435456"}


def run_case(workload: str, framework: str, processes: int, repeats: int, spikes_dir: str) -> dict:
    runs = []
    # snnir's first process compiles its kernels into an empty cache (cold first call); the
    # others find them cached, as every later run on a machine does (warm first call)
    cache = tempfile.mkdtemp(prefix="snnir-kernel-cache-")
    for _ in range(max(processes, 2 if framework == "snnir" else 1)):
        spikes = os.path.join(spikes_dir, f"{workload.replace(':', '_')}-{framework}.npy")
        cmd = [sys.executable, __file__, "--worker", "--workload", workload, "--framework", framework,
               "--spikes", spikes, "--repeats", str(repeats)]
        env = {**os.environ, "OMP_NUM_THREADS": "2", "SNNIR_CACHE_DIR": cache, **_MALLOC_ENV}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            return {"workload": workload, "framework": framework, "error": proc.stderr.strip().splitlines()[-1:]}
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    cold = runs[0].get("first_call_s")
    if framework == "snnir" and processes < 2:
        runs = runs[1:]  # the cold process paid the compiler: time the warm one
    if "skipped" in runs[0]:
        return runs[0]
    merged = dict(runs[0])
    for key in ("fwd_ms", "fwd_bwd_ms", "peak_mib", "first_call_s"):
        merged[key] = statistics.median(r[key] for r in runs)
    merged["first_call_cold_s"] = cold
    merged["spikes"] = spikes if not workload.startswith("neuron:") else None
    return merged


def _agreement(results: list[dict]) -> dict[str, float]:
    import numpy as np

    ref = next((r for r in results if r["framework"] == "snnir" and r.get("spikes")), None)
    if ref is None:
        return {}
    a = np.load(ref["spikes"])
    out = {}
    for r in results:
        if r.get("spikes"):
            b = np.load(r["spikes"])
            out[r["framework"]] = float((a == b).mean()) if a.shape == b.shape else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="*", default=["lif_fc", "on_512", "conv", "on_4096", "neurons"])
    parser.add_argument("--frameworks", nargs="*", default=None)
    parser.add_argument("--processes", type=int, default=1, help="processes per case (median taken)")
    parser.add_argument("--repeats", type=int, default=0, help="timed repeats (0: about 2 s per case)")
    parser.add_argument("--json", default=str(HERE / "bench_neurons.json"))
    parser.add_argument("--malloc-tuned", action="store_true", help="keep freed memory mapped (all frameworks)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--framework", help=argparse.SUPPRESS)
    parser.add_argument("--spikes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import peers

    if args.malloc_tuned:
        _MALLOC_ENV.update(MALLOC_TUNED)
    frameworks = args.frameworks or list(peers.FRAMEWORKS)
    skipped = {f: peers.available(f) for f in frameworks}
    for f, why in skipped.items():
        if why:
            print(f"skipping {f}: not installed ({why}); run benchmarks/setup_peers.sh")
    frameworks = [f for f in frameworks if not skipped[f]]
    all_results: list[dict] = []
    spikes_dir = tempfile.mkdtemp(prefix="snnir-bench-")
    from tqdm import tqdm

    workloads = []
    for wl in args.workloads:
        if wl == "neurons":
            workloads += [f"neuron:{m}:{T}" for m in ("IF", "LIF", "ParametricLIF", "QIF", "EIF", "Izhikevich",
                                                      "CubaLIF", "AdaptiveLIF") for T in (8, 32, 128)]
        else:
            workloads.append(wl)
    cases = []
    for wl in workloads:
        fws = ["snnir", "snnir-reference", "spikingjelly"] if wl.startswith("neuron:") else frameworks
        cases += [(wl, f) for f in fws if f == "snnir-reference" or f in frameworks]
    by_workload: dict[str, list[dict]] = {}
    for wl, fw in tqdm(cases, desc="benchmark cases", unit="case"):
        r = run_case(wl, fw, args.processes, args.repeats, spikes_dir)
        by_workload.setdefault(wl, []).append(r)
        all_results.append(r)
    floors = {wl: floor_ms(wl) for wl in workloads if wl.startswith("on_")}

    print(f"\n{'workload':<24}{'framework':<17}{'fwd ms':>10}{'fwd+bwd ms':>12}{'peak MiB':>10}"
          f"{'x snnir (f+b)':>15}{'spikes = snnir':>16}{'1st call s (cold)':>19}")
    for wl, results in by_workload.items():
        agree = _agreement(results)
        base = next((r for r in results if r["framework"] == "snnir" and "fwd_bwd_ms" in r), None)
        for r in results:
            if "fwd_bwd_ms" not in r:
                print(f"{wl:<24}{r['framework']:<17}  {r.get('skipped') or r.get('error')}")
                continue
            ratio = r["fwd_bwd_ms"] / base["fwd_bwd_ms"] if base else math.nan
            same = agree.get(r["framework"])
            same_txt = "" if same is None else f"{same * 100:.4f}%"
            print(f"{wl:<24}{r['framework']:<17}{r['fwd_ms']:>10.2f}{r['fwd_bwd_ms']:>12.2f}{r['peak_mib']:>10.1f}"
                  f"{ratio:>15.2f}{same_txt:>16}{r['first_call_s']:>10.2f} ({r['first_call_cold_s']:.2f})")
        if wl in floors:
            f = floors[wl]
            print(f"{'':<24}floor: {f['floor_ms']:.1f} ms (GEMM {f['gemm_gflops']:.0f} GFLOP/s, "
                  f"{f['bandwidth_gbs']:.1f} GB/s); snnir/floor = {base['fwd_bwd_ms'] / f['floor_ms']:.2f}")
    Path(args.json).write_text(json.dumps({"results": all_results, "floors": floors}, indent=1))
    print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
