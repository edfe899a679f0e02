"""Export an snnir graph to NIR (``nir`` package, HDF5), the inverse of ``snnir.frontends.nir``.

Neurons are recognised by their equations, not their names: ``snnir.neurons.canonical`` reads the
current decay ``du``, voltage decay ``dv``, input gain ``g``, leak target and reset from the model's
sympy equations, so a user's own model whose equations are LIF's exports as LIF. Discretisation
(forward Euler with step ``dt``, as the importer): a decay ``d`` per step is a time constant
``dt / d`` seconds.

- no synaptic current, ``dv = 1``, ``g = 1``, leak 0 (memoryless, the ``Threshold`` model): ``Threshold``;
- no current, ``dv = 0``: ``IF`` with ``r = g`` (the per-step gain the peers read; a gain of 1 is
  written ``r = 1 / dt``, which SpikingJelly requires and the importer reads as 1 as well);
- no current: ``LIF`` with ``tau = dt / dv``, ``r = g / dv`` (``LIF(decay_input=True)``: ``r = 1``;
  ``decay_input=False``: ``r = tau`` in steps, snnTorch's convention), ``v_leak`` = the leak target;
- a current: ``CubaLIF`` with ``tau_syn = dt / du``, ``tau_mem = dt / dv``, ``r = 1 / dv``,
  ``w_in = g / du`` (snnTorch's ``r = tau_mem``, ``w_in = tau_syn`` for ``CubaLIF``).

``ParametricLIF`` is written with its current time constant ``1 / sigmoid(w)`` (one per neuron if
``w`` is). The ``integrator`` op becomes ``LI`` / ``CubaLI`` / ``I`` by the same rules,
``synapse_filter`` an ``LI`` (its coefficients read from its equation), ``delay`` a ``Delay`` of
``steps * dt`` seconds. ``add`` and ``dropout`` disappear (NIR sums the edges into a node).
Anything NIR cannot express raises ``UnsupportedNodeError`` naming the node and the reason: soft
reset, non-linear or adaptive models (QIF, EIF, Izhikevich, AdaptiveLIF), infinite time constants,
batchnorm (fold it first with ``snnir.optimize``), max pooling, ReLU, concatenation, per-sample
constants.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from snnir.errors import SnnirError
from snnir.graph import Graph, Node
from snnir.neurons.canonical import Canonical, NotCanonicalError, canonical, linear_update


class UnsupportedNodeError(SnnirError):
    """A node NIR has no primitive for (the message names the node and why)."""


PASS_THROUGH = ("add", "dropout")


def export(graph: Graph, path: str | os.PathLike, dt: float = 1e-4) -> None:
    """Write ``graph`` as a NIR file at ``path`` (see ``to_nir`` for the mapping).

    Example:
        >>> import numpy as np, snnir, tempfile, os
        >>> g = snnir.Graph(); x = g.add_input((3,))
        >>> h = g.add_node("linear", [x], params={"weight": np.ones((2, 3), np.float32)})
        >>> _ = g.add_output(g.add_node("neuron", [h], attrs={"model": "LIF", "tau": 20.0}))
        >>> path = os.path.join(tempfile.mkdtemp(), "model.nir")
        >>> snnir.export(g, path, format="nir")
        >>> import nir; sorted(type(n).__name__ for n in nir.read(path).nodes.values())
        ['Input', 'LIF', 'Linear', 'Output']
    """
    import nir

    nir.write(str(path), to_nir(graph, dt=dt))


def to_nir(graph: Graph, dt: float = 1e-4) -> Any:
    """``graph`` as a ``nir.NIRGraph`` (node names are the snnir node ids)."""
    import nir

    if dt <= 0:
        raise ValueError(f"NIR export: dt must be positive, got {dt}")
    graph = graph.copy().validate()
    nodes: dict[str, Any] = {}
    for node in graph:
        if node.op in PASS_THROUGH:
            continue
        nodes[node.id] = _convert(node, float(dt))

    def sources(node_id: str) -> list[str]:
        if graph.node(node_id).op in PASS_THROUGH:
            return [s for p in graph.predecessors(node_id) for s in sources(p)]
        return [node_id]

    _check_edges(graph)
    edges = [(s, node.id) for node in graph if node.op not in PASS_THROUGH
             for p in graph.predecessors(node.id) for s in sources(p)]
    for node_id in nodes:
        reads = [a for a, b in edges if b == node_id]
        twice = sorted({a for a in reads if reads.count(a) > 1})
        if twice:
            raise _unsupported(graph.node(node_id), f"it sums {twice} more than once (e.g. h + h); NIR keeps one "
                                                    "edge between two nodes: scale the value instead")
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _check_edges(graph: Graph) -> None:
    """NIR reads the previous step only on an edge that closes a cycle; a delayed edge outside
    any cycle has no NIR form."""
    import networkx as nx

    cyclic = {n for c in nx.strongly_connected_components(graph.nx) if len(c) > 1 for n in c}
    cyclic |= {u for u, v in nx.selfloop_edges(graph.nx)}
    for e in graph.delayed_edges():
        if not (e.src in cyclic and e.dst in cyclic):
            raise _unsupported(graph.node(e.dst), f"it reads {e.src!r} one step late outside a loop; NIR delays "
                                                  "only a cycle's feedback. Insert a delay node (steps=1) instead")


def _unsupported(node: Node, why: str) -> UnsupportedNodeError:
    model = f" {node.attrs['model']}" if "model" in node.attrs else ""
    return UnsupportedNodeError(f"node {node.id!r} ({node.op}{model}) cannot be exported to NIR: {why}")


def _full(node: Node, value: Any) -> np.ndarray:
    """A scalar or per-neuron value as an array of the layer's shape (float64: exact round trips)."""
    value = np.asarray(value, np.float64)
    try:
        return np.broadcast_to(value, node.shape).copy()
    except ValueError:
        raise _unsupported(node, f"a parameter of shape {value.shape} does not fit the layer {node.shape}") from None


Writer = Callable[[Node, float], Any]
WRITERS: dict[str, Writer] = {}


def writes(*ops: str) -> Callable[[Writer], Writer]:
    """Register the NIR node writer of ``ops`` (``fn(node, dt) -> nir.NIRNode``)."""
    def wrap(fn: Writer) -> Writer:
        for op in ops:
            WRITERS[op] = fn
        return fn
    return wrap


def _convert(node: Node, dt: float) -> Any:
    if node.attrs.get("quant"):
        raise _unsupported(node, "fake-quantized weights have no NIR form (export before quantize)")
    if node.op not in WRITERS:
        hint = {"batchnorm": " (fold it into the conv/linear first: snnir.optimize)",
                "time_reduce": " (a reduction over time steps: NIR has no readout over a sequence; export the "
                               "graph up to the reduction and reduce its outputs over time yourself)"}.get(node.op, "")
        raise _unsupported(node, f"NIR has no primitive for {node.op!r}{hint}")
    return WRITERS[node.op](node, dt)


def _in_shape(node: Node) -> tuple[int, ...]:
    return tuple(node.in_shape or node.shape or ())


@writes("input")
def _input(node: Node, dt: float) -> Any:
    import nir

    return nir.Input(input_type=np.array(node.shape))


@writes("output")
def _output(node: Node, dt: float) -> Any:
    import nir

    return nir.Output(output_type=np.array(node.shape))


@writes("linear")
def _linear(node: Node, dt: float) -> Any:
    import nir

    w, p = np.asarray(node.params["weight"], np.float32), node.params
    return nir.Affine(weight=w, bias=np.asarray(p["bias"], np.float32)) if "bias" in p else nir.Linear(weight=w)


@writes("conv1d", "conv2d")
def _conv(node: Node, dt: float) -> Any:
    import nir

    a, p, in_shape = node.attrs, node.params, _in_shape(node)
    w = np.asarray(p["weight"], np.float32)
    bias = np.asarray(p["bias"], np.float32) if "bias" in p else np.zeros(w.shape[0], np.float32)
    cls, spatial = (nir.Conv1d, in_shape[1]) if node.op == "conv1d" else (nir.Conv2d, tuple(in_shape[1:]))
    return cls(input_shape=spatial, weight=w, stride=a["stride"] or 1, padding=a["padding"],
               dilation=a["dilation"], groups=a["groups"], bias=bias)


@writes("avgpool2d")
def _avgpool2d(node: Node, dt: float) -> Any:
    import nir

    a = node.attrs
    if a["ceil_mode"] or (not a["count_include_pad"] and a["padding"] not in (0, (0, 0))):
        raise _unsupported(node, "NIR's AvgPool2d has no ceil_mode and counts padding")

    def pair(value: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(value), (2,)).copy()

    stride = a["stride"] if a["stride"] is not None else a["kernel_size"]
    return nir.AvgPool2d(kernel_size=pair(a["kernel_size"]), stride=pair(stride), padding=pair(a["padding"]))


@writes("flatten")
def _flatten(node: Node, dt: float) -> Any:
    import nir

    a = node.attrs
    return nir.Flatten(input_type={"input": np.array(_in_shape(node))}, start_dim=a["start"], end_dim=a["end"])


@writes("scale")
def _scale(node: Node, dt: float) -> Any:
    import nir

    return nir.Scale(scale=_full(node, node.attrs["factor"]))


@writes("affine")
def _affine(node: Node, dt: float) -> Any:
    import nir

    w, b = np.asarray(node.params["weight"], np.float32), np.asarray(node.params["bias"], np.float32)
    if not np.any(b):
        shape = (-1, *([1] * (len(node.shape) - 1))) if w.ndim else ()
        return nir.Scale(scale=np.broadcast_to(w.reshape(shape), node.shape).astype(np.float32))
    if len(node.shape) == 1:
        return nir.Affine(weight=np.diag(np.broadcast_to(w, node.shape)).astype(np.float32),
                          bias=np.broadcast_to(b, node.shape).astype(np.float32))
    raise _unsupported(node, "a per-channel bias on a multi-axis tensor has no NIR primitive")


@writes("delay")
def _delay(node: Node, dt: float) -> Any:
    import nir

    return nir.Delay(delay=_full(node, node.attrs["steps"] * dt))


@writes("synapse_filter")
def _synapse_filter(node: Node, dt: float) -> Any:
    import nir
    import sympy as sp

    from snnir.ops.stateful import synapse_filter_update

    i, x, tau = sp.symbols("i x tau", real=True)
    update = synapse_filter_update(i, x, tau)
    decay, gain, drift = (float(e.subs(tau, node.attrs["tau"])) for e in linear_update(update, "i"))
    return nir.LI(tau=_full(node, dt / decay), r=_full(node, gain / decay), v_leak=_full(node, drift / decay))


def _canonical(node: Node) -> Canonical:
    try:
        return canonical(node)
    except NotCanonicalError as e:
        raise _unsupported(node, f"{e}. NIR's neurons are IF, LIF and CubaLIF (and Threshold): linear "
                                 "equations only") from None


def _time_constant(node: Node, what: str, decay: Any, dt: float) -> np.ndarray:
    d = _full(node, decay)
    if np.any(d <= 0):
        raise _unsupported(node, f"its {what} never decays (an infinite time constant), which NIR cannot hold")
    return dt / d


def _if_gain(node: Node, gain: Any, dt: float) -> np.ndarray:
    g = _full(node, gain)
    return np.where(g == 1.0, 1.0 / dt, g)  # see the module doc: r = 1 / dt is read as a gain of 1


def _is(value: Any, target: float) -> bool:
    return bool(np.all(np.asarray(value) == target))


@writes("neuron")
def _neuron(node: Node, dt: float) -> Any:
    import nir

    c = _canonical(node)
    if c.current is None and _is(c.voltage_decay, 1.0) and _is(c.input_gain, 1.0) and _is(c.leak, 0.0):
        return nir.Threshold(threshold=_full(node, c.threshold))  # memoryless: v = x, the reset is moot
    if c.reset == "soft":
        raise _unsupported(node, "soft reset (subtracting the threshold) has no NIR form; NIR resets to v_reset")
    if c.reset == "none":
        raise _unsupported(node, "a neuron without reset has no NIR form")
    th, vr, leak = _full(node, c.threshold), _full(node, c.reset_value), _full(node, c.leak)
    if c.current is None:
        if _is(c.voltage_decay, 0.0):
            return nir.IF(r=_if_gain(node, c.input_gain, dt), v_threshold=th, v_reset=vr)
        tau = _time_constant(node, "voltage", c.voltage_decay, dt)
        return nir.LIF(tau=tau, r=_full(node, c.input_gain) * tau / dt, v_leak=leak, v_threshold=th, v_reset=vr)
    tau_syn = _time_constant(node, "synaptic current", c.current_decay, dt)
    tau_mem = _time_constant(node, "voltage", c.voltage_decay, dt)
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=leak, v_threshold=th, v_reset=vr,
                       w_in=_full(node, c.input_gain) * tau_syn / dt)


@writes("integrator")
def _integrator(node: Node, dt: float) -> Any:
    import nir

    c = _canonical(node)
    leak = _full(node, c.leak)
    if c.current is None:
        if _is(c.voltage_decay, 0.0):
            if node.attrs["v_reset"] != 0.0:
                raise _unsupported(node, "NIR's I starts at 0")
            return nir.I(r=_if_gain(node, c.input_gain, dt))
        tau = _time_constant(node, "voltage", c.voltage_decay, dt)
        return nir.LI(tau=tau, r=_full(node, c.input_gain) * tau / dt, v_leak=leak)
    tau_syn = _time_constant(node, "synaptic current", c.current_decay, dt)
    tau_mem = _time_constant(node, "voltage", c.voltage_decay, dt)
    return nir.CubaLI(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=leak,
                      w_in=_full(node, c.input_gain) * tau_syn / dt)
