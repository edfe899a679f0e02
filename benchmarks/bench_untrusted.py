"""What reliability costs: safe-mode parsing (a forked child per file) and ``check_finite``.

Safe mode parses HDF5 and .mat files in a child process (``snnir.isolation``); its cost is a
fork of the calling process plus sending the arrays back. Measured here, interleaved in one
process (medians over repeats, with the spread), for files of typical size:

- a NIR file of a 784-500-10 LIF network (1.6 MB of float32 weights);
- an SHD-like HDF5 file (1000 samples of ~1000 spikes) opened with ``SpikeHDF5`` (safe mode reads
  every sample once in the child before the parent serves them);
- an ASL-DVS-like .mat file (60,000 events);
- ``compile(check_finite=True)`` vs ``False`` on a 784-256-10 LIF network, T=16, batch 32.

Run: ``python benchmarks/bench_untrusted.py`` (about a minute; prints ratios, writes
benchmarks/bench_untrusted.json).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np


def interleaved(fns: dict[str, Callable[[], object]], repeats: int = 15, warmup: int = 2) -> dict[str, list[float]]:
    """Wall times (ms) of each function, run in turn so machine load affects all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) * 1000)
    return times


def summary(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=4)
    return {"median_ms": statistics.median(times), "q1_ms": q[0], "q3_ms": q[2]}


def files(directory: str) -> dict[str, str]:
    import h5py
    import nir
    import scipy.io

    rng = np.random.default_rng(0)
    out = {}
    n = 500
    lif = {"tau": np.full(n, 2e-3), "r": np.full(n, 20.0), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
           "v_reset": np.zeros(n)}
    graph = nir.NIRGraph.from_list(
        nir.Affine(rng.standard_normal((n, 784)).astype(np.float32), np.zeros(n, np.float32)), nir.LIF(**lif),
        nir.Affine(rng.standard_normal((10, n)).astype(np.float32), np.zeros(10, np.float32)),
        nir.LIF(**{k: v[:10] for k, v in lif.items()}), type_check=False)
    out["nir"] = os.path.join(directory, "mlp.nir")
    nir.write(out["nir"], graph)
    out["shd"] = os.path.join(directory, "shd.h5")
    with h5py.File(out["shd"], "w") as f:
        times = f.create_dataset("spikes/times", (1000,), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (1000,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(1000):
            k = int(rng.integers(500, 1500))
            times[i], units[i] = np.sort(rng.random(k)).astype(np.float32), rng.integers(0, 700, k)
        f["labels"] = rng.integers(0, 20, 1000).astype(np.uint16)
    out["mat"] = os.path.join(directory, "a_0001.mat")
    k = 60_000
    scipy.io.savemat(out["mat"], {"x": rng.integers(0, 240, (k, 1)), "y": rng.integers(0, 180, (k, 1)),
                                  "ts": np.sort(rng.integers(0, 10**6, (k, 1)), axis=0),
                                  "pol": rng.integers(0, 2, (k, 1))})
    return out


def main() -> int:
    import torch

    import snnir
    from snnir import nn as snn
    from snnir.data.formats import SpikeHDF5, read_asl_dvs_mat
    from snnir.frontends.nir import from_nir

    torch.set_num_threads(1)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        paths = files(d)

        def shd(safe: bool) -> None:
            data = SpikeHDF5(paths["shd"], safe=safe)
            for i in range(len(data)):
                data.events(i)
            data.close()

        cases = {
            "from_nir (784-500-10, 1.6 MB)": (lambda: from_nir(paths["nir"], safe=False),
                                              lambda: from_nir(paths["nir"], safe=True)),
            "SpikeHDF5 + all 1000 samples": (lambda: shd(False), lambda: shd(True)),
            "read_asl_dvs_mat (60k events)": (lambda: read_asl_dvs_mat(paths["mat"], safe=False),
                                              lambda: read_asl_dvs_mat(paths["mat"], safe=True)),
        }
        for name, (unsafe, safe) in cases.items():
            t = interleaved({"in-process": unsafe, "safe": safe}, repeats=11)
            a, b = summary(t["in-process"]), summary(t["safe"])
            results[name] = {"in_process": a, "safe": b, "ratio": b["median_ms"] / a["median_ms"],
                             "overhead_ms": b["median_ms"] - a["median_ms"]}
            print(f"{name:34s} in-process {a['median_ms']:8.1f} ms  safe {b['median_ms']:8.1f} ms  "
                  f"(+{b['median_ms'] - a['median_ms']:.1f} ms, {b['median_ms'] / a['median_ms']:.2f}x; "
                  f"IQR {a['q1_ms']:.1f}-{a['q3_ms']:.1f} / {b['q1_ms']:.1f}-{b['q3_ms']:.1f})", flush=True)

    torch.manual_seed(0)
    net = torch.nn.Sequential(snn.Linear(784, 256), snn.LIF(), snn.Linear(256, 10), snn.LIF())
    x = torch.rand(16, 32, 784)
    g = snnir.trace(net, x)
    plain, checked = snnir.compile(g).eval(), snnir.compile(g, check_finite=True).eval()

    def run(m):
        def go():
            with torch.no_grad():
                m(x)
            m.reset()
        return go

    t = interleaved({"off": run(plain), "on": run(checked)}, repeats=31, warmup=5)
    a, b = summary(t["off"]), summary(t["on"])
    ratio = b["median_ms"] / a["median_ms"]
    results["check_finite (784-256-10 LIF, T=16, N=32)"] = {"off": a, "on": b, "ratio": ratio}
    print(f"check_finite off {a['median_ms']:.2f} ms  on {b['median_ms']:.2f} ms  ({ratio:.2f}x)")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_untrusted.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
