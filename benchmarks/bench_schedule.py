"""The schedule plan versus step-by-step execution, on the torch backend.

(a) step by step: the compiled graph in single-step mode, called once per time step (every node
    every step: what a graph executor without a plan does);
(b) planned: the `schedule` pass's regions in multi-step mode (acyclic regions over blocks of
    time steps with time folded into batch and fused neuron loops; recurrent loops step by step).
Both run the same graph: the model traced and optimized by the standard pipeline (BatchNorm
folded with its inference statistics, synapse-neuron groups, the plan), trained (fwd+bwd) as is.

    python benchmarks/bench_schedule.py

Workloads: the conv SNN of bench_neurons (2x34x34, T=16, B=16) and a recurrent SNN
(Linear(100, 128) -> Recurrent(LIF, Linear(128, 128)) -> Linear(128, 10) -> LIF, T=100, B=32).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

import snnir
from snnir import nn as snn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from timing import median_ms  # noqa: E402


def conv_snn() -> tuple[nn.Module, torch.Tensor]:
    net = nn.Sequential(snn.Conv2d(2, 32, 3), snn.BatchNorm2d(32), snn.LIF(), snn.MaxPool2d(2),
                        snn.Conv2d(32, 64, 3), snn.BatchNorm2d(64), snn.LIF(), snn.MaxPool2d(2),
                        snn.Flatten(), snn.Linear(64 * 7 * 7, 10), snn.LIF())
    return net, (torch.rand(16, 16, 2, 34, 34) < 0.2).float()


def recurrent_snn() -> tuple[nn.Module, torch.Tensor]:
    net = nn.Sequential(snn.Linear(100, 128), snn.Recurrent(snn.LIF(), snn.Linear(128, 128, bias=False)),
                        snn.Linear(128, 10), snn.LIF())
    with torch.no_grad():
        net[0].weight.mul_(3)
    return net, torch.rand(100, 32, 100)


def measure(graph: snnir.Graph, x: torch.Tensor, mode: str) -> dict[str, float]:
    m = snnir.compile(graph, step_mode=mode).train()

    def run():
        m.reset()
        return m(x) if mode == "m" else torch.stack([m(xt) for xt in x.unbind(0)])

    def fwd():
        with torch.no_grad():
            run()

    def fwd_bwd():
        m.zero_grad(set_to_none=True)
        run().sum().backward()

    return {"fwd_ms": median_ms(fwd), "fwd_bwd_ms": median_ms(fwd_bwd)}


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    results = {}
    for name, make in (("conv", conv_snn), ("recurrent", recurrent_snn)):
        net, x = make()
        graph = snnir.optimize(snnir.trace(snn.set_step_mode(net, "m").eval(), x))  # the standard pipeline
        plan = [f"{r['mode']}({len(r['nodes'])})" for r in graph.meta["schedule"]["regions"]]
        stepped = measure(graph, x, "s")
        planned = measure(graph, x, "m")
        results[name] = {"plan": plan, "step_by_step": stepped, "planned": planned}
        print(f"{name}: plan {' -> '.join(plan)}", file=sys.stderr)
    print(f"{'workload':<11}{'mode':<14}{'fwd ms':>10}{'fwd+bwd ms':>12}")
    for name, r in results.items():
        for mode in ("step_by_step", "planned"):
            print(f"{name:<11}{mode:<14}{r[mode]['fwd_ms']:>10.2f}{r[mode]['fwd_bwd_ms']:>12.2f}")
        sp_f = r["step_by_step"]["fwd_ms"] / r["planned"]["fwd_ms"]
        sp_fb = r["step_by_step"]["fwd_bwd_ms"] / r["planned"]["fwd_bwd_ms"]
        print(f"{name:<11}{'speed-up':<14}{sp_f:>9.2f}x{sp_fb:>11.2f}x")
        r["speedup_fwd"], r["speedup_fwd_bwd"] = sp_f, sp_fb
    (HERE / "bench_schedule.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
