"""A user-defined neuron in a few lines: equations in, working (trainable, traceable) module out.

The model below is a LIF with a spike-triggered adaptive threshold (Bellec et al. 2018, "ALIF"):

    v <- v + (x - (v - v_reset)) / tau,  a <- rho a   (charge)
    spike = H(v - (v_threshold + beta a))             (an adaptive threshold)
    v <- v_reset where spiking                        (hard reset)
    a <- a + spike                                    (the adaptation trace jumps)

Nothing else is written: the torch module, its surrogate-gradient backward, tracing, saving and
compiling all come from the equations. Parameters may be per neuron, and learned: here every
neuron has its own adaptation strength ``beta`` and learns its own time constant ``tau`` (an
``nn.Parameter``), through the same fused kernel. The script trains it on a toy task (which of two
input channels is more active over time) and checks that the compiled graph gives the same outputs.

    python examples/custom_neuron.py
"""

from __future__ import annotations

import os
import tempfile

import torch

import snnir
from snnir import nn as snn


class ThresholdAdaptiveLIF(snnir.NeuronModel):
    """LIF whose threshold rises by ``beta`` per recent spike: ``theta = v_threshold + beta a``."""

    state = {"v": "v_reset", "a": 0.0}
    params = {"tau": 4.0, "beta": 0.5, "rho": 0.9}

    def charge(self, s, **options):
        return {"v": s.v + (s.x - (s.v - s.v_reset)) / s.tau,
                "a": s.a * s.rho}

    def threshold(self, s):
        return s.v_threshold + s.beta * s.a

    def on_spike(self, s):
        return {"a": s.a + s.spike}


def make_batch(n: int, T: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.randint(0, 2, (n,))
    rates = torch.full((n, 2), 0.2)
    rates[torch.arange(n), labels] = 0.5
    return snn.poisson(rates, T), labels


def main() -> None:
    torch.manual_seed(0)
    alif = snn.Neuron(ThresholdAdaptiveLIF(), tau=torch.nn.Parameter(torch.full((16,), 5.0)),  # learned, per neuron
                      beta=torch.linspace(0.2, 1.0, 16))                                     # fixed, per neuron
    net = snn.set_step_mode(torch.nn.Sequential(snn.Linear(2, 16), alif, snn.Linear(16, 2)), "m")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        x, y = make_batch(64)
        snn.reset(net)
        loss = torch.nn.functional.cross_entropy(net(x).mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = make_batch(500)
    snn.reset(net)
    with torch.no_grad():
        out = net(x)
    acc = (out.mean(0).argmax(1) == y).float().mean().item()

    path = os.path.join(tempfile.mkdtemp(), "alif.snnir")
    snnir.save(snnir.trace(net, x), path)
    compiled = snnir.compile(snnir.load(path))
    with torch.no_grad():
        same = torch.equal(compiled(x), out)
    print(snnir.load(path).summary())
    tau = alif.tau.detach()
    print(f"learned time constants: {tau.min():.2f} .. {tau.max():.2f} (all started at 5)")
    print(f"accuracy {acc:.3f}; compiled graph reproduces the outputs exactly: {same}")


if __name__ == "__main__":
    main()
