"""One LIF layer on the GPU: snnir's generated CUDA kernels against the per-step torch path, against
SpikingJelly's own CUDA path (its CuPy backend) when importable, and against the HBM floor.

    python benchmarks/bench_gpu.py [OUT.json] [--neurons 1048576] [--steps 8 32 128] [--dry-run]

For each T in ``--steps``, float32 and float16, forward (``no_grad``) and forward+backward: the
median time (CUDA events) of each contestant, interleaved round by round in one process, and the
floor: the bytes the layer must move divided by the measured device-to-device copy bandwidth.
Floor bytes (``b`` bytes per element, ``N`` neurons, one state): forward reads the input and
writes the spikes, ``(2T + 2) N b`` with the state read and written; the backward reads the input
(or something as large) and the spike gradient and writes the input gradient, ``(3T + 2) N b``.
Ratios printed: reference / snnir, SpikingJelly / snnir (> 1: snnir faster), snnir / floor (a
module call, Python included) and kernel / floor (the kernels alone, launched back to back).
Targets (issue 12): at least SpikingJelly on every T, within 1.5x of the floor for T >= 32.

``--dry-run`` needs no GPU: it computes the floors for a given ``--bandwidth-gbs`` and writes the
JSON with the times left empty (the tests check this arithmetic).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16}
MODES = ("fwd", "fwd_bwd")


def floor_bytes(T: int, neurons: int, element_size: int, mode: str, states: int = 1) -> int:
    """Bytes a neuron layer must move: see the module docstring."""
    forward = (2 * T + 2 * states) * neurons * element_size
    if mode == "fwd":
        return forward
    if mode == "fwd_bwd":
        return forward + (3 * T + 2 * states) * neurons * element_size
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def floor_ms(T: int, neurons: int, element_size: int, mode: str, bandwidth_gbs: float) -> float:
    """The floor in milliseconds at ``bandwidth_gbs`` (GB/s, 1e9 bytes)."""
    return floor_bytes(T, neurons, element_size, mode) / (bandwidth_gbs * 1e9) * 1e3


def copy_bandwidth_gbs(device: str = "cuda", mib: int = 1024, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth (bytes read + written per second), median of ``repeats``."""
    src = torch.empty(mib << 20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    times = [_cuda_ms(lambda: dst.copy_(src)) for _ in range(repeats + 3)][3:]
    return 2 * src.numel() / (statistics.median(times) / 1e3) / 1e9


def _cuda_ms(fn) -> float:
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop)


# --- contestants -----------------------------------------------------------------------------------


def _snnir(fused: bool):
    from snnir import nn as snn

    lif = snn.LIF(tau=2.0, step_mode="m", fused=fused)
    return lif, lambda: snn.reset(lif)


def _spikingjelly():
    from spikingjelly.activation_based import neuron, surrogate

    lif = neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False,
                         surrogate_function=surrogate.ATan(), step_mode="m", backend="cupy")
    return lif, lif.reset


def contestants() -> dict[str, Any]:
    """name -> factory, or the reason it is missing."""
    out: dict[str, Any] = {"snnir": lambda: _snnir(True), "reference": lambda: _snnir(False)}
    try:
        import cupy  # noqa: F401
        from spikingjelly.activation_based import neuron  # noqa: F401
        out["spikingjelly"] = _spikingjelly
    except Exception as e:  # not installed, or CuPy missing
        out["spikingjelly"] = f"unavailable: {type(e).__name__}: {e}"
    return out


def _step(module, reset, x, grad, mode):
    def run():
        reset()
        if mode == "fwd":
            with torch.no_grad():
                module(x)
        else:
            xi = x.detach().requires_grad_()
            module(xi).backward(grad)
    return run


def measure(T: int, neurons: int, dtype: torch.dtype, repeats: int, budget_s: float) -> dict[str, Any]:
    """Interleaved rounds of every contestant on one input; medians and spread in ms."""
    torch.manual_seed(T)
    x = (torch.rand(T, neurons, device="cuda") * 2.5).to(dtype)
    grad = torch.randn(T, neurons, device="cuda").to(dtype)
    result: dict[str, Any] = {}
    runs = {}
    for name, factory in contestants().items():
        if isinstance(factory, str):
            result[name] = {"error": factory}
            continue
        try:
            module, reset = factory()
            module = module.to("cuda")
            for mode in MODES:
                runs[(name, mode)] = _step(module, reset, x, grad, mode)
                runs[(name, mode)]()  # compile / warm up
            torch.cuda.synchronize()
        except Exception as e:
            result[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            runs = {k: v for k, v in runs.items() if k[0] != name}
    times: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    deadline = time.monotonic() + budget_s
    for _ in range(repeats):
        for key, run in runs.items():
            times[key].append(_cuda_ms(run))
        if time.monotonic() > deadline:
            break
    for (name, mode), ts in times.items():
        result.setdefault(name, {})[mode] = {"median_ms": statistics.median(ts), "min_ms": min(ts),
                                             "max_ms": max(ts), "rounds": len(ts)}
    try:
        result["snnir_kernel"] = kernel_only(x, grad, repeats)
    except Exception as e:
        result["snnir_kernel"] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    result["spike_mismatches"] = _agree(x)
    return result


def kernel_only(x: torch.Tensor, grad: torch.Tensor, repeats: int, launches: int = 10) -> dict[str, Any]:
    """snnir's kernels alone: ``launches`` back-to-back launches with prepared arguments between two
    events, per launch (forward; forward + backward). Without the Python of a module call this is
    what the kernels cost once the GPU is kept busy (a whole network, CUDA graphs)."""
    from snnir import nn as snn
    from snnir.backends.cupy import runtime
    from snnir.backends.torch.fused import config

    lif = snn.LIF(tau=2.0, step_mode="m").to(x.device)
    cfg = config(lif._fused_key(x))
    prm, arrays = lif._pack(cfg, lif._param_env(x), x.dtype, ())
    state0 = torch.zeros(1, x.shape[1], dtype=x.dtype, device=x.device)
    k = runtime.kernel(cfg, x.dtype, x.device)
    if not isinstance(k, runtime.CudaKernel):
        raise RuntimeError("the CUDA kernel did not build (see the warning)")
    fwd_args, _ = runtime.forward_args(x, state0, prm, arrays.to(x.device), False)
    bwd_args, _ = runtime.backward_args(cfg, grad, None, x, state0, prm, arrays.to(x.device))
    N = x.shape[1]

    def forward():
        for _ in range(launches):
            k._launch(k._forward, N, fwd_args)

    def forward_backward():
        for _ in range(launches):
            k._launch(k._forward, N, fwd_args)
            k._launch(k._backward, N, bwd_args)

    out = {}
    for mode, run in (("fwd", forward), ("fwd_bwd", forward_backward)):
        run()
        ts = [_cuda_ms(run) / launches for _ in range(max(3, repeats // 2))]
        out[mode] = {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts), "rounds": len(ts)}
    return out


def _agree(x: torch.Tensor) -> dict[str, Any]:
    """How many spikes of the reference and of SpikingJelly differ from snnir's on this input."""
    out: dict[str, Any] = {}
    spikes = {}
    for name, factory in contestants().items():
        if isinstance(factory, str):
            continue
        try:
            module, reset = factory()
            reset()
            with torch.no_grad():
                spikes[name] = module.to("cuda")(x)
        except Exception as e:
            out[name] = f"{type(e).__name__}: {str(e)[:200]}"
    for name, s in spikes.items():
        if name != "snnir" and "snnir" in spikes:
            out[name] = int((s != spikes["snnir"]).sum())  # mismatching spikes
    return out


def _ms(row: dict[str, Any], name: str) -> float | None:
    return (row.get(name) or {}).get(row["mode"], {}).get("median_ms")


def _fmt(v: float | None, width: int, spec: str = ".3f") -> str:
    return f"{v:{width}{spec}}" if v is not None else f"{'-':>{width}}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'T':>4} {'dtype':>8} {'mode':>8} {'snnir':>9} {'kernel':>9} {'ref':>9} {'SJ':>9} {'floor':>8}  "
             f"{'ref/snnir':>9} {'SJ/snnir':>8} {'snnir/floor':>11} {'kernel/floor':>12}"]
    for r in rows:
        s, kern = _ms(r, "snnir"), _ms(r, "snnir_kernel")
        ref, sj = _ms(r, "reference"), _ms(r, "spikingjelly")
        lines.append(f"{r['T']:>4} {r['dtype']:>8} {r['mode']:>8} {_fmt(s, 9)} {_fmt(kern, 9)} {_fmt(ref, 9)} "
                     f"{_fmt(sj, 9)} {_fmt(r['floor_ms'], 8)}  {_fmt(_ratio(ref, s), 9, '.2f')} "
                     f"{_fmt(_ratio(sj, s), 8, '.2f')} {_fmt(_ratio(s, r['floor_ms']), 11, '.2f')} "
                     f"{_fmt(_ratio(kern, r['floor_ms']), 12, '.2f')}")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    from snnir.backends.cupy.runtime import describe

    info = describe()
    try:
        import spikingjelly
        info["spikingjelly"] = getattr(spikingjelly, "__version__", "installed")
    except ImportError:
        info["spikingjelly"] = None
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", nargs="?", help="output file (default: $OUT/bench_gpu.json, else bench_gpu.json)")
    p.add_argument("--neurons", type=int, default=1 << 20)
    p.add_argument("--steps", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    p.add_argument("--repeats", type=int, default=25)
    p.add_argument("--budget-s", type=float, default=20.0, help="time limit of one (T, dtype) measurement")
    p.add_argument("--dry-run", action="store_true", help="no GPU: floors and JSON only")
    p.add_argument("--bandwidth-gbs", type=float, default=None, help="copy bandwidth (default: measured)")
    args = p.parse_args(argv)
    out = Path(args.json or os.path.join(os.environ.get("OUT", "."), "bench_gpu.json"))

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device (use --dry-run to check the arithmetic without one)")
    bandwidth = args.bandwidth_gbs or (4000.0 if args.dry_run else copy_bandwidth_gbs())
    env = {"dry_run": True} if args.dry_run else environment()
    print(json.dumps(env, indent=1))
    print(f"copy bandwidth: {bandwidth:.0f} GB/s; {args.neurons} neurons")
    print(table([]))
    rows = []
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        size = torch.empty((), dtype=dtype).element_size()
        for T in args.steps:
            result = {} if args.dry_run else measure(T, args.neurons, dtype, args.repeats, args.budget_s)
            for mode in MODES:
                rows.append({"T": T, "dtype": dtype_name, "mode": mode, "neurons": args.neurons,
                             "floor_bytes": floor_bytes(T, args.neurons, size, mode),
                             "floor_ms": floor_ms(T, args.neurons, size, mode, bandwidth), **result})
            print(table(rows[-2:]).split("\n", 1)[1], flush=True)
    print(table(rows))
    report = {"environment": env, "bandwidth_gbs": bandwidth, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
