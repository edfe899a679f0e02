"""Study a network: what it fires (monitors) and what it would cost (operation and energy counts).

- ``record(net)``: spikes, voltages and firing rates of a torch network (``snnir.nn`` modules or a
  compiled graph), as a context manager; rates only by default, traces on request.
- ``count_ops(graph, x)``: per node dense MACs, synaptic operations triggered by spikes, ACs vs
  MACs, neuron updates, memory traffic and an energy estimate (``EnergyModel``), computed on the
  graph, so one count holds for every target.
- ``loihi_resources(graph)``: the cores and synapse memory the Loihi mapping of a graph needs.

This package imports numpy and sympy only; ``record`` and ``count_ops`` load the torch backend
when called.

Example:
    >>> import torch
    >>> from snnir import nn as snn
    >>> from snnir.analysis import record
    >>> net = torch.nn.Sequential(snn.Linear(4, 8), snn.LIF(), snn.Linear(8, 2), snn.LIF())
    >>> _ = snn.set_step_mode(net, "m")
    >>> with record(net) as rec:                       # rates only: a few floats per neuron
    ...     _ = net(torch.ones(10, 3, 4))
    >>> sorted(rec.rates())                            # keyed by module path
    ['1', '3']
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from snnir.analysis.counts import Activity, NodeCount, OpCounts, count_from_activity, count_ops
from snnir.analysis.energy import EnergyModel
from snnir.analysis.loihi import LOIHI2, LoihiLimits, LoihiResources, loihi_resources

if TYPE_CHECKING:
    from snnir.backends.torch.monitor import Recording


def record(module: Any, what: Iterable[str] | str = ("spikes",), keys: Iterable[str] | None = None,
           traces: bool = False, max_steps: int | None = None) -> Recording:
    """Record what a torch network's neurons do while in a ``with`` block.

    Args:
        module: an ``snnir.nn`` network (any nesting; keys are module paths such as ``"block.lif1"``)
            or a compiled graph (``snnir.compile(g)``; keys are node ids).
        what: any of ``"spikes"`` (neuron outputs), ``"v"`` (membrane voltage after reset, the values
            ``store_v_seq`` gives) and ``"outputs"`` (the output of every layer, not only neurons).
        keys: record only these keys (glob patterns allowed, e.g. ``"block*.lif"``).
        traces: keep every step (``rec.spikes(key)``, ``rec.v(key)``) besides the running sums.
        max_steps: with ``traces``, keep at most the latest ``max_steps`` steps per key.

    Returns:
        A ``Recording`` (a context manager): ``rates()``, ``neuron_rates(key)``, ``mean(key, "v")``,
        ``spikes(key)``, ``v(key)``, ``summary()``, ``plot_raster(key)``, ``plot_rates()``, ``nbytes()``.

    Hooks exist only inside the block: outside it the network runs exactly as before. Recording
    ``"v"`` makes the fused neuron kernels write their voltages (``store_v_seq``) for the duration.

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> from snnir.analysis import record
        >>> lif = snn.LIF(tau=2.0, step_mode="m")
        >>> with record(lif, what=("spikes", "v"), traces=True) as rec:
        ...     out = lif(torch.full((3, 1, 1), 1.5))
        >>> rec.spikes("LIF").flatten().tolist(), rec.v("LIF").flatten().tolist()
        ([0.0, 1.0, 0.0], [0.75, 0.0, 0.75])
    """
    from snnir.backends.torch.monitor import record as impl

    return impl(module, what, keys, traces, max_steps)


__all__ = ["LOIHI2", "Activity", "EnergyModel", "LoihiLimits", "LoihiResources", "NodeCount", "OpCounts",
           "count_from_activity", "count_ops", "loihi_resources", "record"]
