"""Float versus fixed point: the torch backend and the Loihi simulator on the same input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from snnir.graph import Graph


@dataclass
class LayerAgreement:
    """Spike agreement of one layer: the share of (step, sample, neuron) entries that match."""

    layer: str
    agreement: float
    float_rate: float
    fixed_rate: float

    def __str__(self) -> str:
        return (f"{self.layer:<24} agreement {100 * self.agreement:7.3f}%   float rate {self.float_rate:.4f}   "
                f"fixed rate {self.fixed_rate:.4f}")


def compare(g: Graph, x: Any, verbose: bool = True) -> list[LayerAgreement]:
    """Run ``g`` mapped with ``to_loihi`` in float (torch) and in fixed point (``LoihiSimulator``)
    on ``x`` ([T, N, *input_shape], 0/1 spikes) and report the spike agreement of every layer.

    The float run uses the *mapped* graph, so the differences are what fixed-point arithmetic
    alone changes (rounding toward zero of the decays, the strict threshold); the accuracy cost of
    quantization itself is measured by running the original graph beside it.

    Example:
        >>> import numpy as np, snnir
        >>> from snnir.backends.lava import compare
        >>> g = snnir.Graph(); x = g.add_input((4,))
        >>> w = np.random.default_rng(0).normal(0, 0.5, (3, 4)).astype(np.float32)
        >>> lin = g.add_node("linear", [x], params={"weight": w})
        >>> _ = g.add_output(g.add_node("neuron", [lin], attrs={"model": "LIF", "tau": 2.0}))
        >>> spikes = (np.random.default_rng(1).random((20, 2, 4)) < 0.5).astype(np.float32)
        >>> [round(r.agreement, 3) for r in compare(g, spikes, verbose=False)]
        [1.0, 1.0]
    """
    import torch

    from snnir.backends.lava.program import ensure_mapped
    from snnir.backends.lava.simulator import LoihiSimulator
    from snnir.faces import compile

    mapped = ensure_mapped(g)
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, np.float32)
    sim = LoihiSimulator.from_graph(mapped)
    sim.run(x)
    module = compile(mapped, backend="torch").eval()
    names = list(sim.spikes)
    spiking_input = sim.program.layers[0].neuron is None
    module.capture = set(names[1:] if spiking_input else names)
    with torch.no_grad():
        module(torch.from_numpy(x))
    floats = {k: v.numpy() for k, v in module.captured.items()}
    if spiking_input:  # the input layer passes the spikes on
        floats[names[0]] = (x > 0.5).astype(np.float32)
    rows = []
    for name in names:
        fixed = sim.spikes[name].astype(np.float32)
        ref = floats[name].reshape(fixed.shape)
        rows.append(LayerAgreement(name, float((fixed == ref).mean()), float(ref.mean()), float(fixed.mean())))
    if verbose:
        print("\n".join(str(r) for r in rows))
    return rows
