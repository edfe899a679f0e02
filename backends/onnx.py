"""Stateful ONNX export for streaming inference, and a runner that keeps the state on onnxruntime.

``export(graph, "model.onnx")`` writes a model of **one time step**: its inputs are the graph inputs
(``[N, ...]``) and the state before the step, its outputs the graph outputs and the state after it.
State tensors are named after the node: ``<node>.<state>_in`` -> ``<node>.<state>_out`` (a LIF
``lif1`` has ``lif1.v_in`` -> ``lif1.v_out``; a CubaLIF also ``.i``; a delay ``.buffer``, ``[N,
steps, ...]``; a reduction over time ``.sum`` and, for a mean, ``.count``); a node read by an edge
of time offset 1 (a loop's feedback, or any edge reading the previous step) passes its value to the
next step as ``<node>.prev_in`` -> ``<node>.prev_out`` (zeros initially). The neuron step is
generated from the model's sympy equations (``snnir.neurons``: charge, ``spike = (z >= 0)``, reset)
with the operations in the order the equation is written, as the torch backend computes it; synapses
are ONNX ``Gemm``/ ``MatMul``, ``Conv``, ``AveragePool``, ... (one lowering per op in ``onnx_ops``).
``unroll=T`` writes a whole-sequence model instead (input ``[T, N, ...]``, the same state inputs and
outputs around the ``T`` steps; an output after a reduction over time is its last step, ``[N,
...]``, as the compiled torch module returns it). The neuron steps match the torch backend bit for
bit; onnxruntime's ``Conv``/``Gemm`` may differ from torch's in the last bit of a sum.

The initial state (``v = v_reset``, ...) and the state names are stored in the model's metadata
(``snnir.states``, JSON), which ``StreamingSession`` reads. Float32 throughout, opset 17.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from snnir.errors import SnnirError
from snnir.graph import Graph

from .onnx_expr import OnnxBuilder
from .onnx_ops import UnsupportedOpError, lower, neuron_init

__all__ = ["StreamingSession", "UnsupportedOpError", "export", "to_onnx"]

OPSET = 17


def export(graph: Graph, path: str | os.PathLike, unroll: int | None = None) -> None:
    """Write ``graph`` as a streaming ONNX model at ``path`` (see the module docstring).

    Example:
        >>> import numpy as np, snnir, tempfile, os
        >>> g = snnir.Graph(); x = g.add_input((3,))
        >>> h = g.add_node("linear", [x], params={"weight": np.ones((2, 3), np.float32)})
        >>> _ = g.add_output(g.add_node("neuron", [h], attrs={"model": "LIF"}, id="lif1"))
        >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
        >>> snnir.export(g, path, format="onnx")
        >>> s = StreamingSession(path)
        >>> [s(np.ones((1, 3), np.float32)).tolist() for _ in range(2)]   # v: 1.5, then 2.25
        [[[1.0, 1.0]], [[1.0, 1.0]]]
        >>> s.state_names
        ['lif1.v']
    """
    import onnx

    onnx.save(to_onnx(graph, unroll=unroll), str(path))


def to_onnx(graph: Graph, unroll: int | None = None) -> Any:
    """``graph`` as an ``onnx.ModelProto`` (checked with ``onnx.checker``)."""
    import onnx
    from onnx import TensorProto, helper

    if unroll is not None and (not isinstance(unroll, int) or unroll < 1):
        raise ValueError(f"ONNX export: unroll must be a positive int (time steps), got {unroll!r}")
    graph = graph.copy().validate()
    b = OnnxBuilder()
    states = _state_table(graph)
    order = graph.topological_order()
    # outputs after a reduction over time: their final step, [N, ...], as the torch module returns them
    last_only = graph.final_step_nodes()
    current = {s["name"]: f"{s['name']}_in" for s in states}
    if unroll is None:
        feeds = {i: i for i in graph.inputs}
        outs = _step(b, graph, order, feeds, current)
        final = {o: outs[o] for o in graph.outputs}
    else:
        per_step: dict[str, list[str]] = {o: [] for o in graph.outputs}
        for t in range(unroll):
            idx = b.const(np.array(t, np.int64))
            feeds = {i: b.op("Gather", [i, idx], axis=0) for i in graph.inputs}
            outs = _step(b, graph, order, feeds, current)
            for o in graph.outputs:
                per_step[o].append(b.op("Unsqueeze", [outs[o], b.const(np.array([0], np.int64))]))
        final = {o: (b.op("Squeeze", [names[-1], b.const(np.array([0], np.int64))]) if o in last_only
                     else b.op("Concat", names, axis=0)) for o, names in per_step.items()}
    for o, name in final.items():
        b.op("Identity", [name], output=o)
    for s in states:
        b.op("Identity", [current[s["name"]]], output=f"{s['name']}_out")

    lead = ["N"] if unroll is None else [unroll, "N"]
    def value_info(name: str, shape: tuple[int, ...], lead_dims: list) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [*lead_dims, *shape])

    inputs = [value_info(i, graph.node(i).shape, lead) for i in graph.inputs]
    inputs += [value_info(f"{s['name']}_in", tuple(s["shape"]), ["N"]) for s in states]
    outputs = [value_info(o, graph.node(o).shape, ["N"] if o in last_only else lead)
               for o in graph.outputs]
    outputs += [value_info(f"{s['name']}_out", tuple(s["shape"]), ["N"]) for s in states]
    proto = helper.make_graph(b.nodes, graph.name, inputs, outputs, b.initializers)
    model = helper.make_model(proto, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="snnir")
    model.ir_version = 8  # readable by onnxruntime >= 1.14
    helper.set_model_props(model, {"snnir.states": json.dumps(states), "snnir.unroll": str(unroll or 0)})
    onnx.checker.check_model(model)
    return model


# --- state -----------------------------------------------------------------------------------------
def _state_table(graph: Graph) -> list[dict[str, Any]]:
    """Every state tensor: name (``node.state``), per-sample shape, initial value."""
    table = []
    for node in graph:
        if node.op == "neuron" or node.op == "integrator":
            init = dict(neuron_init(node))
            for k, shape in node.state_spec().items():
                table.append({"name": f"{node.id}.{k}", "shape": list(shape), "init": init[k]})
        elif node.stateful:
            for k, shape in node.state_spec().items():
                table.append({"name": f"{node.id}.{k}", "shape": list(shape), "init": 0.0})
    for u in _delayed_sources(graph):
        table.append({"name": f"{u}.prev", "shape": list(graph.node(u).shape), "init": 0.0})
    return table


# --- one time step -------------------------------------------------------------------------------
def _delayed_sources(graph: Graph) -> list[str]:
    """Nodes read by an edge of time offset 1 (each keeps a ``.prev`` state)."""
    return sorted({e.src for e in graph.delayed_edges()})


def _step(b: OnnxBuilder, graph: Graph, order: list[str], feeds: dict[str, str],
          state: dict[str, str]) -> dict[str, str]:
    """Emit one step; ``state`` (name -> tensor) is updated in place. Returns each node's value."""
    env: dict[str, str] = dict(feeds)
    for node_id in order:
        node = graph.node(node_id)
        if node.op == "input":
            continue
        args = [state[f"{e.src}.prev"] if e.offset else env[e.src] for e in graph.in_edges(node_id)]
        env[node_id] = lower(b, node, args, state)
    for u in _delayed_sources(graph):
        state[f"{u}.prev"] = env[u]
    return env


# --- running -------------------------------------------------------------------------------------
class StreamingSession:
    """Run an exported snnir ONNX model on onnxruntime, keeping the neuron state between calls.

    Each call is one time step (``[N, ...]`` inputs), or ``T`` steps for a model exported with
    ``unroll=T`` (``[T, N, ...]``); the state carries over to the next call until ``reset()``.
    See ``export`` for an example.
    """

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = str(path)
        self.session = ort.InferenceSession(self.path, providers=providers or ["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "snnir.states" not in meta:
            raise SnnirError(f"{self.path}: not a snnir streaming model (no 'snnir.states' metadata)")
        self._states = json.loads(meta["snnir.states"])
        self.unroll = int(meta.get("snnir.unroll", "0"))
        state_inputs = {f"{s['name']}_in" for s in self._states}
        self.input_names = [i.name for i in self.session.get_inputs() if i.name not in state_inputs]
        self.output_names = [o.name for o in self.session.get_outputs()][: -len(self._states) or None]
        self.state: dict[str, np.ndarray] = {}

    @property
    def state_names(self) -> list[str]:
        return [s["name"] for s in self._states]

    def reset(self) -> None:
        """Forget the state (the next call starts from the initial state)."""
        self.state = {}

    def __call__(self, *inputs: Any) -> Any:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"{self.path}: takes {len(self.input_names)} input(s) {self.input_names}, "
                            f"got {len(inputs)}")
        feeds = {n: np.asarray(x, dtype=np.float32) for n, x in zip(self.input_names, inputs)}
        batch = next(iter(feeds.values())).shape[1 if self.unroll else 0]
        for s in self._states:
            if s["name"] not in self.state:
                init = np.asarray(s["init"], np.float32)  # a number, or one value per neuron
                self.state[s["name"]] = np.ascontiguousarray(np.broadcast_to(init, (batch, *s["shape"])))
            feeds[f"{s['name']}_in"] = self.state[s["name"]]
        results = self.session.run(None, feeds)
        n_out = len(self.output_names)
        for s, value in zip(self._states, results[n_out:]):
            self.state[s["name"]] = value
        outs = results[:n_out]
        return outs[0] if n_out == 1 else tuple(outs)

    def run(self, *args: Any) -> Any:
        """One call, spelled as onnxruntime users expect; the state carries over as with ``session(x)``.

        ``run(x)`` (or ``run(x1, x2)``) returns what ``session(x)`` returns. onnxruntime's own form
        ``run(output_names, {input_name: x})`` returns the list of the named outputs (all of them
        for ``None``), as ``InferenceSession.run`` does.

        Example:
            >>> import numpy as np, snnir, tempfile, os
            >>> g = snnir.Graph(); x = g.add_input((2,))
            >>> _ = g.add_output(g.add_node("neuron", [x], attrs={"model": "IF"}, id="if1"))
            >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx"); snnir.export(g, path, format="onnx")
            >>> s = StreamingSession(path)
            >>> s.run(np.full((1, 2), 0.6, np.float32)).tolist(), s.run(None, {"input": np.full((1, 2), 0.6)})
            ([[0.0, 0.0]], [array([[1., 1.]], dtype=float32)])
        """
        if len(args) == 2 and isinstance(args[1], dict) and (args[0] is None or isinstance(args[0], (list, tuple))):
            names, feed = args
            unknown = set(feed) - set(self.input_names)
            missing = set(self.input_names) - set(feed)
            if unknown or missing:
                raise ValueError(f"{self.path}: the feed must name exactly the inputs {self.input_names} "
                                 f"(state inputs are kept by the session); unknown {sorted(unknown)}, "
                                 f"missing {sorted(missing)}")
            outs = self(*(feed[n] for n in self.input_names))
            outs = list(outs) if isinstance(outs, tuple) else [outs]
            if names is None:
                return outs
            index = {n: i for i, n in enumerate(self.output_names)}
            bad = [n for n in names if n not in index]
            if bad:
                raise ValueError(f"{self.path}: unknown output names {bad}; outputs are {self.output_names}")
            return [outs[index[n]] for n in names]
        return self(*args)
