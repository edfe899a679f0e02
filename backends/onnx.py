"""Stateful ONNX export for streaming inference, and a runner that keeps the state on onnxruntime.

``export(graph, "model.onnx")`` writes a model of **one time step**: its inputs are the graph
inputs (``[N, ...]``) and the state before the step, its outputs the graph outputs and the state
after it. State tensors are named after the node: ``<node>.<state>_in`` -> ``<node>.<state>_out``
(a LIF ``lif1`` has ``lif1.v_in`` -> ``lif1.v_out``; a CubaLIF also ``.i``; a delay ``.buffer``,
``[N, steps, ...]``); the value a recurrent edge carries to the next step is
``<node>.prev_in`` -> ``<node>.prev_out``. The neuron step is generated from the model's sympy
equations (``snnir.neurons``: charge, ``spike = (z >= 0)``, reset) with the operations in the
order the equation is written, as the torch backend computes it; synapses are ONNX ``Gemm``/
``MatMul``, ``Conv``, ``AveragePool``, ... ``unroll=T`` writes a whole-sequence model instead
(input ``[T, N, ...]``, the same state inputs and outputs around the ``T`` steps). The neuron
steps match the torch backend bit for bit; onnxruntime's ``Conv``/``Gemm`` may differ from torch's
in the last bit of a sum.

The initial state (``v = v_reset``, ...) and the state names are stored in the model's metadata
(``snnir.states``, JSON), which ``StreamingSession`` reads. Float32 throughout, opset 17.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import sympy as sp

from snnir.errors import SnnirError
from snnir.graph import Graph, Node
from snnir.neurons import get_model

from .onnx_expr import OnnxBuilder

OPSET = 17


class UnsupportedOpError(SnnirError):
    """A node the ONNX exporter has no lowering for (the message names the node)."""


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
    recurrent = graph.recurrent_edges()
    current = {s["name"]: f"{s['name']}_in" for s in states}
    if unroll is None:
        feeds = {i: i for i in graph.inputs}
        outs = _step(b, graph, order, recurrent, feeds, current)
        final = {o: outs[o] for o in graph.outputs}
    else:
        per_step: dict[str, list[str]] = {o: [] for o in graph.outputs}
        for t in range(unroll):
            idx = b.const(np.array(t, np.int64))
            feeds = {i: b.op("Gather", [i, idx], axis=0) for i in graph.inputs}
            outs = _step(b, graph, order, recurrent, feeds, current)
            for o in graph.outputs:
                per_step[o].append(b.op("Unsqueeze", [outs[o], b.const(np.array([0], np.int64))]))
        final = {o: b.op("Concat", names, axis=0) for o, names in per_step.items()}
    for o, name in final.items():
        b.op("Identity", [name], output=o)
    for s in states:
        b.op("Identity", [current[s["name"]]], output=f"{s['name']}_out")

    lead = ["N"] if unroll is None else [unroll, "N"]
    def value_info(name: str, shape: tuple[int, ...], lead_dims: list) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [*lead_dims, *shape])

    inputs = [value_info(i, graph.node(i).shape, lead) for i in graph.inputs]
    inputs += [value_info(f"{s['name']}_in", tuple(s["shape"]), ["N"]) for s in states]
    outputs = [value_info(o, graph.node(o).shape, lead) for o in graph.outputs]
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
            init = dict(_neuron_init(node))
            for k, shape in node.state_spec().items():
                table.append({"name": f"{node.id}.{k}", "shape": list(shape), "init": init[k]})
        elif node.stateful:
            for k, shape in node.state_spec().items():
                table.append({"name": f"{node.id}.{k}", "shape": list(shape), "init": 0.0})
    for u in sorted({u for u, _ in graph.recurrent_edges()}):
        table.append({"name": f"{u}.prev", "shape": list(graph.node(u).shape), "init": 0.0})
    return table


def _equations(node: Node) -> Any:
    a = node.attrs
    model = get_model(a["model"])
    options = {k: a[k] for k in model.options}
    if node.op == "integrator":
        return model.equations(reset="none", **options)
    return model.equations(reset="soft" if a["v_reset"] is None else "hard", **options)


def _param_values(node: Node, eq: Any) -> dict[str, float]:
    """Parameter values as float64, the hoisted constants (``sigmoid(w)``) evaluated from them."""
    a = node.attrs
    values = {"v_threshold": float(a.get("v_threshold", 0.0)),
              "v_reset": 0.0 if a["v_reset"] is None else float(a["v_reset"])}
    for name in eq.params:
        if name in values:
            continue
        if name in node.params:
            arr = np.asarray(node.params[name], np.float64)
            if arr.size != 1:
                raise UnsupportedOpError(f"node {node.id!r}: per-neuron parameter {name!r} is not supported "
                                         "by the ONNX exporter")
            values[name] = float(arr.reshape(()))
        else:
            values[name] = float(a[name])
    symbols = {sp.Symbol(k, real=True): v for k, v in values.items()}
    for k, e in eq.constants:
        values[k] = float(e.xreplace(symbols).rewrite(sp.exp).evalf())
    return values


def _neuron_init(node: Node) -> list[tuple[str, float]]:
    eq = _equations(node)
    values = _param_values(node, eq)
    symbols = {sp.Symbol(k, real=True): v for k, v in values.items()}
    return [(k, float(sp.sympify(e).xreplace(symbols))) for k, e in eq.init]


# --- one time step -------------------------------------------------------------------------------
def _step(b: OnnxBuilder, graph: Graph, order: list[str], recurrent: set[tuple[str, str]],
          feeds: dict[str, str], state: dict[str, str]) -> dict[str, str]:
    """Emit one step; ``state`` (name -> tensor) is updated in place. Returns each node's value."""
    env: dict[str, str] = dict(feeds)
    for node_id in order:
        node = graph.node(node_id)
        if node.op == "input":
            continue
        args = [state[f"{p}.prev"] if (p, node_id) in recurrent else env[p] for p in graph.predecessors(node_id)]
        env[node_id] = _lower(b, node, args, state)
    for u in {u for u, _ in recurrent}:
        state[f"{u}.prev"] = env[u]
    return env


def _ints(value: Any, n: int) -> list[int]:
    a = np.asarray(value).reshape(-1)
    return [int(a[0])] * n if a.size == 1 else [int(v) for v in a]


def _lower(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    op, a, p = node.op, node.attrs, node.params
    if a.get("quant"):
        raise UnsupportedOpError(f"node {node.id!r} ({op}): fake-quantized weights are not exported; "
                                 "export the float graph")
    if op in ("output", "dropout"):
        return args[0]
    if op == "linear":
        w = np.asarray(p["weight"], np.float32)
        if len(node.in_shape) == 1:
            inputs = [args[0], b.const(w, hint=f"{node.id}.weight")]
            if "bias" in p:
                inputs.append(b.const(np.asarray(p["bias"], np.float32), hint=f"{node.id}.bias"))
            return b.op("Gemm", inputs, transB=1)
        y = b.op("MatMul", [args[0], b.const(w.T.copy(), hint=f"{node.id}.weight")])
        return b.op("Add", [y, b.const(np.asarray(p["bias"], np.float32))]) if "bias" in p else y
    if op in ("conv1d", "conv2d"):
        n = 1 if op == "conv1d" else 2
        pads = _ints(a["padding"], n)
        inputs = [args[0], b.const(np.asarray(p["weight"], np.float32), hint=f"{node.id}.weight")]
        if "bias" in p:
            inputs.append(b.const(np.asarray(p["bias"], np.float32), hint=f"{node.id}.bias"))
        return b.op("Conv", inputs, strides=_ints(a["stride"] or 1, n), pads=pads + pads,
                    dilations=_ints(a["dilation"], n), group=a["groups"])
    if op in ("avgpool1d", "avgpool2d", "maxpool1d", "maxpool2d"):
        n = int(op[-2])
        kernel = _ints(a["kernel_size"], n)
        pads = _ints(a["padding"], n)
        kw = {"kernel_shape": kernel, "strides": _ints(a["stride"] if a["stride"] is not None else kernel, n),
              "pads": pads + pads, "ceil_mode": int(a["ceil_mode"])}
        if op.startswith("avg"):
            return b.op("AveragePool", [args[0]], count_include_pad=int(a["count_include_pad"]), **kw)
        return b.op("MaxPool", [args[0]], dilations=_ints(a["dilation"], n), **kw)
    if op in ("adaptive_avgpool1d", "adaptive_avgpool2d"):  # equal windows when the sizes divide
        sizes, out = node.in_shape[1:], node.shape[1:]
        if any(i % o for i, o in zip(sizes, out)):
            raise UnsupportedOpError(f"node {node.id!r} ({op}): input size {sizes} is not a multiple of the "
                                     f"output size {out}")
        kernel = [i // o for i, o in zip(sizes, out)]
        return b.op("AveragePool", [args[0]], kernel_shape=kernel, strides=kernel)
    if op == "flatten":
        return b.op("Reshape", [args[0], b.const(np.array([0, *node.shape], np.int64))])
    if op == "relu":
        return b.op("Relu", args)
    if op == "scale":
        return b.op("Mul", [args[0], b.const(a["factor"])])
    if op == "affine":
        shape = (-1, *([1] * (len(node.shape) - 1)))
        w, bias = (np.asarray(p[k], np.float32) for k in ("weight", "bias"))
        y = b.op("Mul", [args[0], b.const(w.reshape(shape) if w.ndim else w)])
        return b.op("Add", [y, b.const(bias.reshape(shape) if bias.ndim else bias)])
    if op == "add":
        acc = args[0]
        for other in args[1:]:
            acc = b.op("Add", [acc, other])
        return acc
    if op == "cat":
        return b.op("Concat", args, axis=a["axis"] % len(node.shape) + 1)
    if op == "clip":
        lo = b.const(a["min"]) if a["min"] is not None else ""
        hi = b.const(a["max"]) if a["max"] is not None else ""
        return b.op("Clip", [args[0], lo, hi])
    if op == "constant":
        return b.const(np.asarray(p["value"], np.float32)[None], hint=node.id)
    if op == "batchnorm":
        c = node.shape[0]
        scale = np.asarray(p.get("weight", np.ones(c)), np.float32)
        shift = np.asarray(p.get("bias", np.zeros(c)), np.float32)
        return b.op("BatchNormalization", [args[0], b.const(scale), b.const(shift),
                                           b.const(np.asarray(p["running_mean"], np.float32)),
                                           b.const(np.asarray(p["running_var"], np.float32))], epsilon=a["eps"])
    if op == "synapse_filter":  # i - i / tau + x, as the torch module
        i = state[f"{node.id}.i"]
        new = b.op("Add", [b.op("Sub", [i, b.op("Div", [i, b.const(a["tau"])])]), args[0]])
        state[f"{node.id}.i"] = new
        return new
    if op == "delay":
        buf = state[f"{node.id}.buffer"]
        one = b.const(np.array([1], np.int64))
        out = b.op("Gather", [buf, b.const(np.array(0, np.int64))], axis=1)  # buffer: [N, steps, ...]
        rest = b.op("Slice", [buf, one, b.const(np.array([a["steps"]], np.int64)), one])
        state[f"{node.id}.buffer"] = b.op("Concat", [rest, b.op("Unsqueeze", [args[0], one])], axis=1)
        return out
    if op in ("neuron", "integrator"):
        return _neuron_step(b, node, args[0], state)
    raise UnsupportedOpError(f"node {node.id!r}: the ONNX exporter has no lowering for op {op!r}")


def _neuron_step(b: OnnxBuilder, node: Node, x: str, state: dict[str, str]) -> str:
    """The model's charge, fire and reset equations as ONNX nodes (spikes out, or ``v`` for integrators)."""
    eq = _equations(node)
    values = _param_values(node, eq)
    env = {k: b.const(v) for k, v in values.items()}
    env.update({"x": x, **{k: state[f"{node.id}.{k}"] for k in eq.states}})
    for k, e in eq.charge:
        env[k] = b.expr(e, env)
    if node.op == "integrator":
        out = env["v"]
    else:
        z = b.expr(eq.fire, env)
        out = b.op("Cast", [b.op("GreaterOrEqual", [z, b.const(0.0)])], to=1)  # 1 = FLOAT
        env["spike"] = out
        for k, e in eq.reset:
            env[k] = b.expr(e, env)
    for k in eq.states:
        state[f"{node.id}.{k}"] = env[k]
    return out


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
                self.state[s["name"]] = np.full((batch, *s["shape"]), s["init"], dtype=np.float32)
            feeds[f"{s['name']}_in"] = self.state[s["name"]]
        results = self.session.run(None, feeds)
        n_out = len(self.output_names)
        for s, value in zip(self._states, results[n_out:]):
            self.state[s["name"]] = value
        outs = results[:n_out]
        return outs[0] if n_out == 1 else tuple(outs)
