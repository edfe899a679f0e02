"""Loihi resources: the neuro-cores and synapse memory a graph needs once mapped to Loihi.

The graph is mapped as the Loihi backend maps it (``snnir.passes.to_loihi`` then the integer
program of ``snnir.backends.lava.program``: an input layer, then dense/conv layers of CUBA neurons
with 8-bit weight mantissas). Each layer is then placed on cores under this model:

- a core holds neurons of one layer only (as Lava's and NengoLoihi's compilers allocate
  populations), at most ``neurons_per_core`` of them;
- a core stores the synapses of the neurons it holds, ``weight_bits`` per weight, in at most
  ``synapse_bytes_per_core``. A dense layer stores every weight (fan-in x neurons, plus the
  recurrent matrix of a ``dense_rec`` layer). A conv layer stores its kernel, not one weight per
  connection (convolutional weight sharing): each core keeps the kernels of the output channels
  it holds;
- a layer takes the most cores either bound asks for; chips = cores / ``cores_per_chip``, rounded up.

Neuron state, routing tables and microcode share the per-core SRAM on the real chip, so the
memory bound is optimistic; the numbers size a network, they do not replace Lava's compiler.

Loihi 2 limits (``LOIHI2``): 128 neuro-cores per chip and up to 1 million neurons per chip (so
8192 per core) are Intel's figures (Intel Labs, "Taking Neuromorphic Computing to the Next Level
with Loihi 2", technology brief, 2021; open-neuromorphic.org's Loihi 2 page: 1 M neurons, 120 M
synapses, 128 neuron cores). The 128 KiB of SRAM per core is the figure reported for Loihi 2's
flexibly partitioned core memory (fbhtechinfo.com, "Intel's new Loihi-2 chip uses 1 million
neurons", 2021): it is the assumption least sure of, override it with ``LoihiLimits(...)``.

Example:
    >>> import numpy as np, snnir
    >>> from snnir.analysis import loihi_resources
    >>> g = snnir.Graph(); x = g.add_input((100,))
    >>> fc = g.add_node("linear", [x], params={"weight": np.full((20000, 100), 0.01, np.float32)})
    >>> _ = g.add_output(g.add_node("neuron", [fc], attrs={"model": "IF"}))
    >>> r = loihi_resources(g)
    >>> [(layer.kind, layer.neurons, layer.cores) for layer in r.layers]   # 2 MB of weights: 16 cores
    [('input', 100, 1), ('dense', 20000, 16)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from snnir.errors import LoihiMappingError
from snnir.graph import Graph


@dataclass(frozen=True)
class LoihiLimits:
    """Per-core and per-chip capacities (defaults: Loihi 2, see the module docstring)."""

    neurons_per_core: int = 8192
    synapse_bytes_per_core: int = 128 * 1024
    cores_per_chip: int = 128
    weight_bits: int = 8
    name: str = "Loihi 2"


LOIHI2 = LoihiLimits()


@dataclass
class LoihiLayerUse:
    """One mapped layer: its neurons, connections, stored synapse bytes and cores."""

    name: str
    kind: str
    neurons: int
    synapses: int        # connections (a conv layer's weight-sharing connections counted one by one)
    synapse_bytes: int   # what the cores store
    cores: int


@dataclass
class LoihiResources:
    """What a mapped graph needs: ``layers``, and ``cores``, ``chips``, ``neurons``, ... in total."""

    layers: list[LoihiLayerUse]
    limits: LoihiLimits = field(default_factory=LoihiLimits)

    @property
    def cores(self) -> int:
        return sum(layer.cores for layer in self.layers)

    @property
    def chips(self) -> int:
        return math.ceil(self.cores / self.limits.cores_per_chip)

    @property
    def neurons(self) -> int:
        return sum(layer.neurons for layer in self.layers)

    @property
    def synapses(self) -> int:
        return sum(layer.synapses for layer in self.layers)

    @property
    def synapse_bytes(self) -> int:
        return sum(layer.synapse_bytes for layer in self.layers)

    def table(self) -> str:
        rows = [("layer", "kind", "neurons", "synapses", "synapse memory", "cores")]
        for layer in self.layers:
            rows.append((layer.name, layer.kind, str(layer.neurons), str(layer.synapses),
                         f"{layer.synapse_bytes / 1024:.1f} KiB", str(layer.cores)))
        rows.append(("total", "", str(self.neurons), str(self.synapses), f"{self.synapse_bytes / 1024:.1f} KiB",
                     str(self.cores)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lim = self.limits
        lines.append(f"{self.cores} cores on {self.chips} {lim.name} chip(s) ({lim.neurons_per_core} neurons, "
                     f"{lim.synapse_bytes_per_core // 1024} KiB synapses per core, "
                     f"{lim.cores_per_chip} cores per chip, "
                     f"{lim.weight_bits}-bit weights)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _conv_synapses(layer, in_shape: tuple[int, ...]) -> int:
    """Connections of a conv layer: each input position times the kernel taps that read it."""
    from snnir.analysis.fanout import axis_reads

    w = layer.weight
    reads = [axis_reads(size, out, k, s, p, d) for size, out, k, s, p, d in
             zip(in_shape[1:], layer.shape[1:], w.shape[2:], layer.stride, layer.padding, layer.dilation)]
    return int(in_shape[0] * np.multiply.outer(*reads).sum()) * (w.shape[0] // layer.groups)


def _place(name: str, kind: str, neurons: int, synapses: int, kernel: np.ndarray | None, limits: LoihiLimits,
           dense_bytes: int) -> LoihiLayerUse:
    cores = math.ceil(neurons / limits.neurons_per_core)
    if kernel is None:  # dense: the weights divide with the neurons
        cores = max(cores, math.ceil(dense_bytes / limits.synapse_bytes_per_core))
        per_neuron = dense_bytes / max(neurons, 1)
        if per_neuron > limits.synapse_bytes_per_core:
            raise LoihiMappingError(f"layer {name!r}: one neuron's {per_neuron:.0f} bytes of weights exceed a core's "
                                    f"{limits.synapse_bytes_per_core} bytes of synapse memory")
        return LoihiLayerUse(name, kind, neurons, synapses, dense_bytes, cores)
    channels = kernel.shape[0]
    per_channel = math.ceil(kernel[0].size * limits.weight_bits / 8)
    if per_channel > limits.synapse_bytes_per_core:
        raise LoihiMappingError(f"layer {name!r}: one output channel's kernel ({per_channel} bytes) exceeds a core's "
                                f"{limits.synapse_bytes_per_core} bytes of synapse memory")
    while math.ceil(channels / min(cores, channels)) * per_channel > limits.synapse_bytes_per_core:
        cores += 1
    per_core = math.ceil(channels / min(cores, channels))
    return LoihiLayerUse(name, kind, neurons, synapses, cores * per_core * per_channel, cores)


def loihi_resources(graph: Graph, limits: LoihiLimits = LOIHI2) -> LoihiResources:
    """Cores and synapse memory ``graph`` needs on Loihi (see the module docstring for the model).

    Raises ``LoihiMappingError`` naming the node when the graph cannot be mapped to Loihi.
    """
    from snnir.backends.lava.program import ensure_mapped, program_from_graph

    program = program_from_graph(ensure_mapped(graph))
    first = program.layers[0]
    layers = [_place(first.name or "input", "input", math.prod(first.shape), 0, None, limits, 0)]
    prev_shape = first.shape
    for layer in program.layers[1:]:
        neurons = math.prod(layer.shape)
        if layer.kind == "dense":
            synapses = math.prod(prev_shape) * neurons + (neurons * neurons if layer.rec_weight is not None else 0)
            use = _place(layer.name, "dense" if layer.rec_weight is None else "dense_rec", neurons, synapses, None,
                         limits, math.ceil(synapses * limits.weight_bits / 8))
        else:
            use = _place(layer.name, "conv", neurons, _conv_synapses(layer, prev_shape), layer.weight, limits, 0)
        layers.append(use)
        prev_shape = layer.shape
    return LoihiResources(layers, limits)
