"""Fixed per-call cost of a fused neuron layer: a tiny layer (T=4, 8 neurons), one thread, the
median of many calls, forward (no grad) and forward+backward, each call starting from reset state.

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
    out = {"snnir": snnir.__file__, "torch": torch.__version__, "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
