"""Operation, memory-traffic and energy counts of a graph on one input batch.

``count_ops(graph, x)`` runs the graph once with the torch backend, records what every node emits
(per step and element: how many values are nonzero, summed over the batch; whether they are all
0/1 spikes), and counts per node:

- ``dense_macs``: the ANN-equivalent multiply-accumulates of weighted ops (linear, conv,
  batchnorm, affine, scale) as if every input were read, every step (a convolution's padded taps
  included, as torch computes them and ANN counters count them);
- ``synops``: operations triggered by input events: every nonzero input value (a spike) times its
  fan-out (``snnir.analysis.fanout``: exact for convolutions with padding, stride, dilation and
  groups, and for pooling windows), in synapses, pooling and adds. A recurrent edge (time offset
  1) delivers steps ``0 .. T-2`` of its source;
- ``acs`` and ``macs``: what the arithmetic is. A weighted op whose input is binary spikes only
  adds weights (its synops are ACs); with a real-valued input (the first layer, after average
  pooling) it multiplies (dense MACs: a real-valued tensor is computed densely). Unweighted ops
  (add, pooling, relu/clip comparisons) do ACs: per event for spikes, dense otherwise;
- ``updates``: neuron (and synapse-filter) state updates, one per element and step, each costing
  the additions, multiplications and other functions of the model's equations as the generated
  kernels run them (charge, the threshold comparison, reset);
- memory traffic, in the model of SpikingJelly's ``NeuromorphicMemoryAccessCounter`` (logical
  accesses, no cache): every synaptic operation reads its weight (``weight_read_bytes``), every
  output element of a biased synapse reads its bias each step, every stateful element reads and
  writes each state variable once per step. Activations, spikes in flight and routing are not
  counted;
- energy: ``macs * mac_pj + acs * ac_pj`` + the neuron updates' arithmetic + bytes *
  ``memory_pj_per_byte`` (``EnergyModel``; defaults from Horowitz, ISSCC 2014).

The count is a property of the graph and its activity, so it is the same whichever target runs
the graph (torch, CUDA, Loihi). Counts are totals over the batch and all steps.

Example:
    >>> import numpy as np, snnir
    >>> from snnir.analysis import count_ops
    >>> g = snnir.Graph(); x = g.add_input((4,))
    >>> fc = g.add_node("linear", [x], params={"weight": np.full((3, 4), 0.6, np.float32)}, id="fc")
    >>> _ = g.add_output(g.add_node("neuron", [fc], attrs={"model": "IF"}, id="lif"))
    >>> spikes = np.zeros((2, 1, 4), np.float32); spikes[0, 0, :2] = 1    # 2 spikes at t = 0
    >>> ops = count_ops(g, spikes)
    >>> ops.nodes["fc"].synops, ops.nodes["fc"].acs, ops.nodes["fc"].macs, ops.nodes["fc"].dense_macs
    (6, 6, 0, 24)
    >>> ops.nodes["lif"].spikes                      # v = 1.2 at t = 0: all three fire
    3
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

import numpy as np
import sympy as sp

from snnir.analysis.energy import EnergyModel
from snnir.analysis.fanout import FANOUT, WEIGHTED, dense_ops, fanout
from snnir.errors import GraphError
from snnir.graph import Graph, Node

ROUTING = ("input", "output", "flatten", "cat", "dropout", "constant")
"""Ops that move values without arithmetic (dropout is the identity at inference)."""
STATE_BYTES = 4  # float32 state, as the torch backend keeps it


@dataclass
class Activity:
    """What one node emitted over a batch.

    ``events[t, ...]``: how many of the batch's values at step ``t`` and that element were nonzero
    (int64, per-sample shape after the time axis); ``binary``: every value was 0 or 1.
    """

    events: np.ndarray
    binary: bool
    batch: int

    @property
    def steps(self) -> int:
        return int(self.events.shape[0])


@dataclass
class NodeCount:
    """Counts of one node (totals over the batch and the steps); see the module docstring."""

    node: str
    op: str
    input: str = ""              # "spikes", "real" or "mixed": what the node's inputs carried
    dense_macs: int = 0
    synops: int = 0
    acs: int = 0
    macs: int = 0
    updates: int = 0             # state updates (element-steps) of a stateful node
    update_adds: int = 0
    update_muls: int = 0
    update_other: int = 0
    spikes: int = 0              # events a spiking neuron emitted
    neurons: int = 0             # elements of a stateful node (per sample)
    weight_read_bytes: int = 0
    bias_read_bytes: int = 0
    state_read_bytes: int = 0
    state_write_bytes: int = 0

    @property
    def memory_bytes(self) -> int:
        return self.weight_read_bytes + self.bias_read_bytes + self.state_read_bytes + self.state_write_bytes

    def __iadd__(self, other: NodeCount) -> NodeCount:
        for f in fields(self):
            if isinstance(getattr(self, f.name), int):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


def _in_edges(g: Graph, node_id: str, delayed: set[tuple[str, str, int]]) -> list[tuple[str, int]]:
    """``(source, time offset)`` per input edge of ``node_id``, by port (a node read twice appears twice)."""
    return [(e.src, 1 if (e.src, e.dst, e.port) in delayed else 0) for e in g.in_edges(node_id)]


def _itemsize(node: Node, param: str) -> int:
    quant = node.attrs.get("quant")
    if param == "weight" and quant:
        return max(1, -(-int(quant["bits"]) // 8))
    return int(node.params[param].dtype.itemsize) if param in node.params else STATE_BYTES


@cache
def _ops_per_update(model: str, reset: str, options: tuple[tuple[str, bool], ...]) -> tuple[int, int, int]:
    """(additions, multiplications, other functions) of one update of ``model``, counted on its
    equations as the kernels run them; the threshold comparison counts as one addition."""
    from snnir.neurons import get_model

    eq = get_model(model).equations(reset=reset, **dict(options))
    exprs = [e for _, e in eq.charge] + ([eq.fire] if reset != "none" else []) + [e for _, e in eq.reset]
    adds, muls, other = (1 if reset != "none" else 0), 0, 0
    for expr in exprs:
        counted = sp.count_ops(expr, visual=True)
        terms = counted.as_coefficients_dict() if counted != 0 else {}
        for symbol, n in terms.items():
            kind = str(symbol)
            if kind in ("ADD", "SUB", "NEG"):
                adds += int(n)
            elif kind in ("MUL", "DIV", "POW"):
                muls += int(n)
            else:
                other += int(n)
    return adds, muls, other


def _update_cost(node: Node) -> tuple[tuple[int, int, int], int, int] | None:
    """For a stateful node: ((adds, muls, other) per update, state variables, elements updated per
    step and sample); ``None`` for an op without a rule."""
    out = math.prod(node.shape or ())
    if node.op in ("neuron", "integrator"):
        from snnir.neurons import get_model

        a = node.attrs
        model = get_model(a["model"])
        reset = "none" if node.op == "integrator" else ("soft" if a.get("v_reset", 0.0) is None else "hard")
        options = tuple(sorted((k, bool(a[k])) for k in model.options))
        return _ops_per_update(a["model"], reset, options), len(model.state), out
    if node.op == "synapse_filter":  # i - i / tau + x
        return (2, 1, 0), 1, out
    if node.op == "delay":  # a ring buffer: one write and one read per step, no arithmetic
        return (0, 0, 0), 1, out
    if node.op == "spiking_maxpool2d":  # count += spike, per input element
        return (1, 0, 0), 1, math.prod(node.in_shape or ())
    if node.op == "time_reduce":  # s += x (and s / count for a mean)
        return (1, 1 if node.attrs["mode"] == "mean" else 0, 0), 1, out
    return None


WEIGHT_PARAMS = {"linear": "bias", "conv1d": "bias", "conv2d": "bias", "batchnorm": "running_mean", "affine": "bias"}
"""Ops that read a weight per operation, and the parameter each output reads once (its bias)."""


def _count_node(g: Graph, node: Node, activity: dict[str, Activity], delayed: set) -> NodeCount | None:
    nc = NodeCount(node.id, f"{node.op}:{node.attrs['model']}" if node.op in ("neuron", "integrator") else node.op)
    own = activity[node.id]
    T, N = own.steps, own.batch
    update = _update_cost(node) if node.stateful else None
    if node.op not in FANOUT and node.op not in ROUTING and update is None:
        return None
    kinds = set()
    if node.op in FANOUT:  # a synapse (weighted: ACs or MACs) or an accumulating op (ACs)
        weighted = node.op in WEIGHTED
        weight_bytes = _itemsize(node, "weight") if node.op in WEIGHT_PARAMS else 0
        for src, offset in _in_edges(g, node.id, delayed):
            a = activity[src]
            # the source's steps this node read (the last one only after a reduction over time)
            used = min(max(a.steps - offset, 0), T)
            in_shape = tuple(g.node(src).shape or ())
            event_ops = int((a.events[a.steps - offset - used:a.steps - offset].sum(0) * fanout(node, in_shape)).sum())
            dense = used * a.batch * dense_ops(node, in_shape)
            kinds.add("spikes" if a.binary else "real")
            if weighted:
                nc.dense_macs += dense
            if node.op not in ("relu", "clip"):  # activations are not synaptic
                nc.synops += event_ops
            if a.binary:
                nc.acs += event_ops
            elif weighted:
                nc.macs += dense
            else:
                nc.acs += dense
            nc.weight_read_bytes += (event_ops if a.binary else dense) * weight_bytes
        bias = WEIGHT_PARAMS.get(node.op)
        if bias in node.params:
            nc.bias_read_bytes = math.prod(node.shape or ()) * T * N * _itemsize(node, bias)
    if update is not None:
        (adds, muls, other), n_state, elements = update
        nc.neurons = elements
        nc.updates = elements * T * N
        nc.update_adds, nc.update_muls, nc.update_other = adds * nc.updates, muls * nc.updates, other * nc.updates
        nc.state_read_bytes = nc.state_write_bytes = n_state * nc.updates * STATE_BYTES
        if node.op == "neuron":
            nc.spikes = int(own.events.sum())
    nc.input = "mixed" if len(kinds) > 1 else next(iter(kinds), "")
    return nc


def count_from_activity(graph: Graph, activity: dict[str, Activity], energy: EnergyModel | None = None) -> OpCounts:
    """Counts of ``graph`` given each node's recorded ``Activity`` (``count_ops`` records it by
    running the torch backend; any other simulator's record works the same)."""
    g = graph if all(n.shape is not None for n in graph) else graph.copy().validate()
    missing = [n.id for n in g if n.id not in activity and n.op != "output"]
    if missing:
        raise GraphError(f"no recorded activity for nodes {missing}")
    delayed = {(e.src, e.dst, e.port) for e in g.delayed_edges()}
    nodes, uncounted = {}, []
    for node_id in g.topological_order():
        node = g.node(node_id)
        if node.op in ("input", "output"):
            continue
        nc = _count_node(g, node, activity, delayed)
        if nc is None:
            uncounted.append(f"{node_id} ({node.op})")
            continue
        nodes[node_id] = nc
    first = activity[g.inputs[0]]
    return OpCounts(nodes, steps=first.steps, batch=first.batch, energy=energy or EnergyModel(), uncounted=uncounted)


def count_ops(graph: Any, inputs: Any, energy: EnergyModel | None = None) -> OpCounts:
    """Count operations, memory traffic and energy of ``graph`` on one input batch.

    Args:
        graph: a ``snnir.Graph`` (a torch module is traced first with ``snnir.trace(graph, inputs)``).
        inputs: the input batch, ``[T, N, *shape]`` (numpy or torch; a tuple for several inputs).
        energy: the energy per operation (default ``EnergyModel()``: 45 nm, 32-bit float).

    Returns:
        ``OpCounts``: ``.nodes[node_id]`` per node, ``.total``, ``.energy_pj()``; printing it
        gives the table. See the module docstring for what each count means.
    """
    if not isinstance(graph, Graph):
        import snnir

        graph = snnir.trace(graph, inputs)
    g = graph.copy().validate()
    from snnir.backends.torch.monitor import activity as record_activity

    return count_from_activity(g, record_activity(g, inputs), energy)


def _si(n: float) -> str:
    if n == 0:
        return "0"
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.4g}" if isinstance(n, float) else str(n)


def format_energy(pj: float) -> str:
    """``pj`` picojoules in a readable unit (pJ, nJ, uJ, mJ, J)."""
    for div, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
        if abs(pj) >= div:
            return f"{pj / div:.3g} {unit}"
    return f"{pj:.3g} pJ"


@dataclass
class OpCounts:
    """Per-node counts of one batch (``nodes``), with totals and energy; ``str()`` is the table."""

    nodes: dict[str, NodeCount]
    steps: int
    batch: int
    energy: EnergyModel = field(default_factory=EnergyModel)
    uncounted: list[str] = field(default_factory=list)

    @property
    def total(self) -> NodeCount:
        total = NodeCount("total", "")
        for nc in self.nodes.values():
            total += nc
        return total

    def node_energy_pj(self, nc: NodeCount) -> dict[str, float]:
        """Energy of one node's counts: ``mac``, ``ac``, ``update``, ``memory`` and ``total`` (pJ)."""
        e = self.energy
        parts = {"mac": nc.macs * e.mac_pj, "ac": nc.acs * e.ac_pj,
                 "update": nc.update_adds * e.add_pj + nc.update_muls * e.mul_pj + nc.update_other * e.other_pj,
                 "memory": nc.memory_bytes * e.memory_pj_per_byte}
        parts["compute"] = parts["mac"] + parts["ac"] + parts["update"]
        parts["total"] = parts["compute"] + parts["memory"]
        return parts

    def energy_pj(self) -> dict[str, float]:
        """Energy of the whole batch in picojoules: ``mac``, ``ac``, ``update`` (neuron state
        updates), ``compute`` (their sum), ``memory``, ``total``; ``per_sample`` and
        ``per_sample_compute`` divide by the batch; ``ann`` is the dense MACs of one step per sample at
        ``mac_pj`` (the compute of an ANN's single pass, to compare with ``per_sample_compute``)."""
        out = self.node_energy_pj(self.total)
        out["per_sample"] = out["total"] / max(self.batch, 1)
        out["per_sample_compute"] = out["compute"] / max(self.batch, 1)
        out["ann"] = self.total.dense_macs / max(self.steps, 1) / max(self.batch, 1) * self.energy.mac_pj
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: per-node counts, totals, energy (pJ) and the energy model."""
        return {"steps": self.steps, "batch": self.batch, "uncounted": list(self.uncounted),
                "nodes": {k: {**vars(v), "energy_pj": self.node_energy_pj(v)} for k, v in self.nodes.items()},
                "total": vars(self.total), "energy_pj": self.energy_pj(), "energy_model": vars(self.energy)}

    def table(self) -> str:
        """The per-node table, totals and the energy estimate with its constants."""
        header = ("node", "op", "input", "dense MACs", "SynOps", "ACs", "MACs", "updates", "rate", "memory B",
                  "energy")
        rows = [header]
        for nc in [*self.nodes.values(), self.total]:
            rate = f"{nc.spikes / nc.updates:.3f}" if nc.op.startswith("neuron") and nc.updates else ""
            rows.append((nc.node, nc.op, nc.input, _si(nc.dense_macs), _si(nc.synops), _si(nc.acs), _si(nc.macs),
                         _si(nc.updates), rate, _si(nc.memory_bytes), format_energy(self.node_energy_pj(nc)["total"])))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(-1, "-" * len(lines[0]))
        e, m = self.energy_pj(), self.energy
        lines.append(f"energy for {self.batch} sample(s) x {self.steps} step(s): compute {format_energy(e['compute'])} "
                     f"(MAC {format_energy(e['mac'])}, AC {format_energy(e['ac'])}, neuron updates "
                     f"{format_energy(e['update'])}) + memory {format_energy(e['memory'])} = "
                     f"{format_energy(e['total'])}; per sample {format_energy(e['per_sample_compute'])} compute, "
                     f"{format_energy(e['per_sample'])} total")
        lines.append(f"ANN equivalent, compute only (dense MACs of one step x {m.mac_pj} pJ): "
                     f"{format_energy(e['ann'])} per sample")
        lines.append(f"constants: MAC {m.mac_pj} pJ, AC {m.ac_pj} pJ, add {m.add_pj} pJ, mul {m.mul_pj} pJ, "
                     f"memory {m.memory_pj_per_byte} pJ/B; {m.source}")
        if self.uncounted:
            lines.append(f"not counted (no rule for the op): {', '.join(self.uncounted)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


__all__ = ["FANOUT", "Activity", "NodeCount", "OpCounts", "count_from_activity", "count_ops", "format_energy"]
