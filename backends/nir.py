"""Export an snnir graph to NIR (``nir`` package, HDF5), the inverse of ``snnir.frontends.nir``.

Discretisation (forward Euler with step ``dt``, as the importer): a per-step time constant ``tau``
becomes ``tau * dt`` seconds. ``LIF`` with ``decay_input=True`` is NIR ``LIF`` with ``r = 1``;
with ``decay_input=False`` (``v - (v - v_reset) / tau + x``) ``r = tau``. ``v_leak = v_reset``.
``IF`` has ``r = 1 / dt``. ``CubaLIF``: ``r = tau_mem``, ``w_in = tau_syn`` (snnTorch's
convention). ``ParametricLIF`` is written as ``LIF`` with its current time constant
``1 / sigmoid(w)``. The ``integrator`` op becomes ``LI`` / ``CubaLI`` / ``I``, ``synapse_filter``
an ``LI``, ``delay`` a ``Delay`` of ``steps * dt`` seconds, the ``Threshold`` model ``Threshold``.
``add`` and ``dropout`` disappear (NIR sums the edges into a node). Anything NIR cannot express
raises ``UnsupportedNodeError`` naming the node and the reason: soft reset, refractory or
adaptive models (QIF, EIF, Izhikevich, AdaptiveLIF), batchnorm (fold it first with
``snnir.optimize``), max pooling, ReLU, concatenation, per-sample constants.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from snnir.errors import SnnirError
from snnir.graph import Graph, Node
from snnir.ops.neuron import per_neuron_params


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


def _full(node: Node, value: float) -> np.ndarray:
    return np.full(node.shape, value, dtype=np.float64)  # float64: parameters survive a round trip


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
        hint = " (fold it into the conv/linear first: snnir.optimize)" if node.op == "batchnorm" else ""
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
def _synapse_filter(node: Node, dt: float) -> Any:  # i - i / tau + x: a leaky integrator with r = tau
    import nir

    tau = node.attrs["tau"]
    return nir.LI(tau=_full(node, tau * dt), r=_full(node, tau), v_leak=_full(node, 0.0))


def _tau_of(node: Node) -> float:
    if node.attrs["model"] == "ParametricLIF":  # the learnable tau, exported at its current value
        w = np.asarray(node.params["w"], np.float64)
        if w.size != 1:
            raise _unsupported(node, "per-neuron time constants are not supported")
        return float(1.0 + np.exp(-w.reshape(())))
    return float(node.attrs["tau"])


def _one_value_per_layer(node: Node) -> None:
    arrays = per_neuron_params(node)
    if arrays:
        raise _unsupported(node, f"parameters given as arrays (per neuron or learnable) {arrays} are not "
                                 "exported to NIR yet")


@writes("neuron")
def _neuron(node: Node, dt: float) -> Any:
    import nir

    _one_value_per_layer(node)
    a = node.attrs
    model = a["model"]
    if a["v_reset"] is None:
        raise _unsupported(node, "soft reset (subtracting the threshold) has no NIR form; NIR resets to v_reset")
    th, vr = _full(node, a["v_threshold"]), _full(node, a["v_reset"])
    if model == "Threshold":
        return nir.Threshold(threshold=th)
    if model == "IF":
        return nir.IF(r=_full(node, 1.0 / dt), v_threshold=th, v_reset=vr)
    if model in ("LIF", "ParametricLIF"):
        tau = _tau_of(node)
        r = 1.0 if a["decay_input"] else tau
        return nir.LIF(tau=_full(node, tau * dt), r=_full(node, r), v_leak=vr, v_threshold=th, v_reset=vr)
    if model == "CubaLIF":
        ts, tm = a["tau_syn"], a["tau_mem"]
        return nir.CubaLIF(tau_syn=_full(node, ts * dt), tau_mem=_full(node, tm * dt), r=_full(node, tm),
                           v_leak=vr, v_threshold=th, v_reset=vr, w_in=_full(node, ts))
    raise _unsupported(node, "NIR's neurons are IF, LIF and CubaLIF (and Threshold); this model's "
                             "equation has no NIR primitive")


@writes("integrator")
def _integrator(node: Node, dt: float) -> Any:
    import nir

    _one_value_per_layer(node)
    a = node.attrs
    model, vl = a["model"], _full(node, a["v_reset"])
    if model == "IF":
        if a["v_reset"] != 0.0:
            raise _unsupported(node, "NIR's I starts at 0")
        return nir.I(r=_full(node, 1.0 / dt))
    if model == "LIF":
        tau = a["tau"]
        return nir.LI(tau=_full(node, tau * dt), r=_full(node, 1.0 if a["decay_input"] else tau), v_leak=vl)
    if model == "CubaLIF":
        ts, tm = a["tau_syn"], a["tau_mem"]
        return nir.CubaLI(tau_syn=_full(node, ts * dt), tau_mem=_full(node, tm * dt), r=_full(node, tm),
                          v_leak=vl, w_in=_full(node, ts))
    raise _unsupported(node, "NIR's integrators are I, LI and CubaLI")
