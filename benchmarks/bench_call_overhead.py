"""Fixed per-call cost of a fused neuron layer: a tiny layer (T=4, 8 neurons), one thread, the
median of many calls, forward (no grad) and forward+backward, each call starting from reset state;
and a streaming step: the 64-128-10 LIF network (Linear, LIF, Linear, LIF) at batch 1, one time
step per call under ``no_grad``, as ``snnir.nn`` modules in single-step mode, the same with the
per-step reference path, its compiled graph (``step_mode="s"``) and its ONNX export in onnxruntime.

    python benchmarks/bench_call_overhead.py                    # this checkout
    python benchmarks/bench_call_overhead.py --src /path/to/other/checkout --json out.json

``--src`` runs another source checkout (e.g. a ``git worktree`` of an older commit) with this
environment, for before/after figures; run both alternately, the machine's load varies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_ms  # noqa: E402


def _use_checkout(src: str) -> None:
    """Import snnir from ``src`` rather than the installed (editable) package."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, src)


def bench(fn, n: int) -> float:
    """Median microseconds per call."""
    return median_ms(fn, warmup=300, repeats=n) * 1000


def streaming(calls: int) -> dict[str, float]:
    """Microseconds per step of the 64-128-10 network, batch 1, one step per call, no grad."""
    import tempfile

    import torch

    import snnir
    from snnir import nn as snn

    def make(fused: bool = True) -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(snn.Linear(64, 128), snn.LIF(tau=2.0, fused=fused), snn.Linear(128, 10),
                                   snn.LIF(tau=2.0, fused=fused))

    frame = torch.rand(1, 64) * 3
    graph = snnir.trace(snn.set_step_mode(make(), "m"), torch.rand(3, 1, 64))
    nets = {"modules (fused)": make(), "modules (reference)": make(False),
            "compiled graph": snnir.compile(graph, step_mode="s").eval()}
    steps = {}
    for name, net in nets.items():
        def step(net=net):
            with torch.no_grad():
                net(frame)
        steps[name] = step
    try:
        from snnir.backends.onnx import StreamingSession

        path = os.path.join(tempfile.mkdtemp(), "stream.onnx")
        snnir.export(graph, path, format="onnx")
        session, array = StreamingSession(path), frame.numpy()
        steps["ONNX (onnxruntime)"] = lambda: session(array)
    except ImportError:
        pass
    out = {}
    for name, step in steps.items():
        out[name] = round(bench(step, calls), 1)
        print(f"streaming step, {name:20s} {out[name]:7.1f} us")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", help="source checkout to import snnir from")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    if args.src:
        _use_checkout(args.src)
    import torch

    import snnir
    from snnir import nn as snn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:  # the C++ training call: built (or loaded from the cache) before timing, where the checkout has it
        from snnir.backends.torch import native_call
        print(f"native training call: {'loaded' if native_call.wait() is not None else 'unavailable'}")
    except ImportError:
        pass
    layers = {"LIF": lambda: snn.LIF(tau=2.0, step_mode="m"),
              "ParametricLIF": lambda: snn.ParametricLIF(step_mode="m")}
    try:  # per-channel parameters: only where the checkout has them
        layers["LIF per-channel tau"] = lambda: snn.LIF(tau=torch.tensor([2.0, 4.0]).view(2, 1), step_mode="m")
        layers["LIF per-channel tau"]()
    except (TypeError, ValueError):
        del layers["LIF per-channel tau"]
    results = {}
    for name, make in layers.items():
        layer = make()
        x = torch.rand(4, 1, 2, 4)
        xg = x.clone().requires_grad_()

        def forward(layer=layer, x=x):
            with torch.no_grad():
                layer(x)
            layer.reset()

        def forward_backward(layer=layer, xg=xg):
            layer(xg).sum().backward()
            layer.reset()

        results[name] = {"fwd_us": round(bench(forward, args.calls), 1),
                         "fwd_bwd_us": round(bench(forward_backward, args.calls), 1)}
        print(f"{name:22s} fwd {results[name]['fwd_us']:7.1f} us   fwd+bwd {results[name]['fwd_bwd_us']:7.1f} us")
    results["streaming"] = streaming(args.calls)
    out = {"snnir": snnir.__file__, "torch": torch.__version__, "load": os.getloadavg()[0], "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
