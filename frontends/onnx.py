"""ANNs from ONNX files: read with ``onnx`` (protobuf; no code runs), mapped to snnir ops.

Each input has one batch axis (its dynamic one, or ``batch_axis``); snnir shapes are per sample
and graphs batch-first. A ``Transpose`` may move the batch behind per-sample axes, and a
``Reshape`` may fold it with per-sample axes as long as it stays whole inside one axis (torch's
multi-head attention export makes ``[L, N*heads, d]`` and ``[L*N, E]``): the value stays per
sample (``Value.pos`` and ``Value.fold``), and only an op over the folded axis itself is refused.
Shape arithmetic (``Shape``, ``Gather``, ``Slice``, ``Unsqueeze``, ``Concat``, ``Mul``, ... of
shapes, as exporters emit for ``x.view(x.size(0), -1)``) is evaluated with the batch size as the
sympy symbol ``N``. Initializers reached through ``Identity`` (torch's exporter
deduplicates shared weights that way) and ``Constant`` nodes are constants.

Supported operators, one handler each (``_OPS``): Conv (1-d/2-d, groups, symmetric pads), Gemm,
MatMul (activation x constant, activation x activation), Add, Sub, Mul, Div, Neg, Pow (2, 0.5),
Sqrt, BatchNormalization, LayerNormalization, Relu, Clip, Sigmoid, Tanh, Erf, Exp, Gelu, HardSwish,
HardSigmoid, Softmax, MaxPool, AveragePool, GlobalAveragePool, ReduceMean, ReduceSum, Flatten,
Reshape, Transpose, Squeeze, Unsqueeze, Concat, Split, Slice, Gather, Expand, Resize (nearest as
torch's, linear with align_corners or half-pixel), Cast (to float), Dropout and Identity.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import sympy

from snnir.errors import FormatError, GraphError, SnnirError, file_errors
from snnir.frontends.values import TraceContext, Value, arith, constant, matmul, split, transpose
from snnir.graph import Graph

N = sympy.Symbol("N", integer=True, positive=True)  # the batch size in shape values


class UnsupportedOpError(SnnirError):
    """An ONNX operator (or attribute value) with no snnir mapping."""


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def from_onnx(model: str | os.PathLike | Any, name: str | None = None, batch_axis: int | None = None) -> Graph:
    """Import an ONNX model (path or ``onnx.ModelProto``) as a graph of ANN ops.

    ``batch_axis``: the batch axis of the model's inputs; by default each input's one dynamic axis
    (axis 0 if all are static). snnir graphs are batch-first: an input or output whose batch axis is
    ``k != 0`` in the file (``nn.MultiheadAttention(batch_first=False)``'s ``[L, N, E]``) is
    ``x.movedim(k, 0)`` in the graph, and ``g.meta["batch_axes"]`` records ``{id: k}`` for them.

    Example:
        >>> import io, torch
        >>> ann = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2), torch.nn.ReLU())
        >>> buf = io.BytesIO(); torch.onnx.export(ann, torch.rand(1, 2, 2), buf, dynamo=False)
        >>> import onnx; g = from_onnx(onnx.load_from_string(buf.getvalue()))
        >>> [n.op for n in g]
        ['input', 'flatten', 'linear', 'relu', 'output']
    """
    import onnx

    where = "<ModelProto>"
    if not isinstance(model, onnx.ModelProto):
        where = str(model)
        model = _load_model(where)
    with file_errors(where, "the model"):  # a raw exception or GraphError outside a node names the file
        return _import(model, where, name, batch_axis)


def _input_batch_axis(where: str, name: str, dims: list[int], batch_axis: int | None) -> int:
    """Which axis of an input (``dims``, <= 0 where dynamic) is the batch."""
    dynamic = [i for i, d in enumerate(dims) if d <= 0]
    if batch_axis is None:
        if len(dynamic) > 1:
            raise FormatError(f"{where}: input {name!r} has several dynamic axes {dynamic} (shape {dims}); snnir "
                              "needs a static shape except the batch axis (pass batch_axis= to say which)")
        batch_axis = dynamic[0] if dynamic else 0
    if len(dims) < 2 or not -len(dims) <= batch_axis < len(dims) \
            or any(d <= 0 for i, d in enumerate(dims) if i != batch_axis % len(dims)):
        raise FormatError(f"{where}: input {name!r} needs a static shape except the batch axis {batch_axis}, "
                          f"got {dims}")
    return batch_axis % len(dims)


def _import(model: Any, where: str, name: str | None, batch_axis: int | None) -> Graph:
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise FormatError(f"{where}: invalid ONNX model: {e}") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    graph_proto = model.graph
    consts = _constants(graph_proto, where)
    g = Graph(name or graph_proto.name or "onnx")
    g.meta["training"] = False  # a checkpoint is an inference graph: compile() gives an eval-mode module
    inputs = []
    for inp in graph_proto.input:
        if inp.name in consts:
            continue
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        inputs.append((inp.name, dims, _input_batch_axis(where, inp.name, dims, batch_axis)))
    batch = inputs[0][1][inputs[0][2]] if inputs and inputs[0][1][inputs[0][2]] > 0 else None
    mapper = _OnnxMapper(g, consts, where, opset, batch)
    moved = {}
    for inp_name, dims, axis in inputs:
        sample = dims[:axis] + dims[axis + 1:]
        node_id = g.add_input(sample, id=_ident(g, inp_name))
        mapper.vals[inp_name] = Value(("N",), tuple(sample), node_id, pos=axis)
        if axis:
            moved[node_id] = axis
    for node in graph_proto.node:
        for n in node.input:
            mapper.uses[n] = mapper.uses.get(n, 0) + 1
    for out in graph_proto.output:
        mapper.uses[out.name] = mapper.uses.get(out.name, 0) + 1
    for node in graph_proto.node:
        if node.op_type != "Constant":
            mapper.map(node)
    for out in graph_proto.output:
        v = mapper.vals.get(out.name)
        if v is None and out.name in mapper.consts and out.name in mapper.producer:
            raise mapper.unsupported(mapper.producer[out.name], f"graph output {out.name!r} is a constant (it does "
                                     "not depend on the input); snnir graphs compute their outputs from inputs")
        if v is None:
            raise FormatError(f"{where}: graph output {out.name!r} is not produced by a supported node")
        if any(v.fold):
            raise UnsupportedOpError(f"{where}: graph output {out.name!r} has the batch folded with per-sample "
                                     f"axes ({mapper.ctx._describe(v)}); snnir outputs have a batch axis of their "
                                     "own")
        out_id = g.add_output(v.node, id=_ident(g, "output"))
        if v.pos:
            moved[out_id] = v.pos
    if moved:
        g.meta["batch_axes"] = moved
    try:
        from snnir.validation import check_loaded

        return check_loaded(g.validate())
    except GraphError as e:
        raise FormatError(f"{where}: the imported graph is inconsistent: {e}") from None


def _load_model(where: str) -> Any:
    """The ModelProto in file ``where``: its size, and that of external data, checked against the limits."""
    import onnx
    from onnx import external_data_helper as ext

    from snnir import limits

    try:
        limits.check_bytes(where, "the file", os.path.getsize(where))
        model = onnx.load(where, load_external_data=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError, FormatError):
        raise
    except Exception as e:  # protobuf decode errors
        raise FormatError(f"{where}: cannot read an ONNX model ({e})") from None
    tensors = [t for t in ext._get_all_tensors(model) if ext.uses_external_data(t)]
    if tensors:
        budget = limits.Budget(where)
        base = os.path.dirname(os.path.abspath(where))
        for t in tensors:
            with file_errors(where, f"external data of tensor {t.name!r}"):
                try:
                    info = ext.ExternalDataInfo(t)
                    stored = os.path.getsize(os.path.join(base, info.location))
                except OSError as e:  # a file the model names, not the one the caller gave
                    raise FormatError(f"{where}: tensor {t.name!r} keeps its data in a file that cannot be read "
                                      f"({e})") from None
                budget.take(f"external data of tensor {t.name!r}", info.length or max(0, stored - (info.offset or 0)))
        with file_errors(where, "external tensor data"):
            ext.load_external_data_for_model(model, base)  # onnx checks the paths stay inside base
    return model


def _constants(graph_proto: Any, where: str) -> dict[str, np.ndarray]:
    """Numeric initializers and Constant node values by name (others are not constants to snnir)."""
    from onnx import numpy_helper

    consts: dict[str, np.ndarray] = {}
    for t in graph_proto.initializer:
        with file_errors(where, f"initializer {t.name!r}"):
            value = numpy_helper.to_array(t)
        if value.dtype.kind in "biuf":
            consts[t.name] = value
    for node in graph_proto.node:  # Constant nodes are initializers too
        if node.op_type != "Constant" or not node.output:
            continue
        with file_errors(where, f"node {node.name!r} (Constant)"):
            a = _attrs(node)
            if "value" in a:
                value = numpy_helper.to_array(a["value"])
            elif "value_float" in a or "value_floats" in a:
                value = np.asarray(a.get("value_float", a.get("value_floats")), dtype=np.float32)
            elif "value_int" in a or "value_ints" in a:
                value = np.asarray(a.get("value_int", a.get("value_ints")), dtype=np.int64)
            else:
                continue  # strings, sparse tensors: not numbers snnir uses
        if value.dtype.kind in "biuf":
            consts[node.output[0]] = value
    return consts


def _ident(g: Graph, name: str) -> str:
    return g._new_id(name or "node")


class _OnnxMapper:
    """Per-model state: activations (``vals``), constants, shape values (``shapes``, "N" the batch)."""

    def __init__(self, g: Graph, consts: dict[str, np.ndarray], where: str, opset: int | None,
                 batch: int | None) -> None:
        self.g, self.consts, self.where, self.opset, self.batch = g, consts, where, opset, batch
        self.vals: dict[str, Value] = {}
        self.uses: dict[str, int] = {}
        self.shapes: dict[str, list] = {}
        self.ctx = TraceContext(g, {"T": 1, "N": batch or 1}, error=UnsupportedOpError, invalid=FormatError)
        self.node: Any = None
        self.producer: dict[str, Any] = {}  # tensor name -> the node that computes it

    def unsupported(self, node: Any, why: str = "") -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.where}: ONNX op {node.op_type!r} (node {node.name!r}, opset {self.opset}) "
                                  f"is not supported{': ' + why if why else ''}. Supported: {', '.join(sorted(_OPS))}")

    def map(self, node: Any) -> None:
        self.node = node
        self.producer.update({out: node for out in node.output})
        what = f"node {node.name!r} ({node.op_type})"
        with file_errors(self.where, what):  # every handler: no raw exception escapes, the node is named
            if _fold_constants(self, node):
                return
            handler = _OPS.get(node.op_type)
            if handler is None or node.domain not in ("", "ai.onnx"):
                raise self.unsupported(node)
            self.ctx.where = f"{self.where}: {what}"
            self.ctx.name = node.name or node.op_type.lower()
            try:
                handler(self, node, _attrs(node))
            except KeyError as e:
                raise FormatError(f"{self.where}: {what} refers to {e}, which it does not have (a missing attribute, "
                                  "or an input that is not a constant initializer or a known activation)") from None

    # --- inputs --------------------------------------------------------------------------------------
    def value(self, name: str) -> Value:
        """An input as an activation or a constant."""
        if name in self.vals:
            return self.vals[name]
        if name in self.consts:
            return constant(self.consts[name])
        raise self.unsupported(self.node, f"input {name!r} is not an activation or constant snnir knows")

    def act(self, name: str) -> Value:
        v = self.value(name)
        if v.is_const:
            raise self.unsupported(self.node, f"input {name!r} is a constant where an activation is expected")
        return v

    def const(self, name: str) -> np.ndarray:
        """A constant input (a ``KeyError`` otherwise, which ``map`` reports naming the node)."""
        return self.consts[name]

    def optional(self, node: Any, i: int) -> str | None:
        return node.input[i] if len(node.input) > i and node.input[i] else None

    def is_shape(self, name: str) -> bool:
        return name in self.shapes

    # --- outputs -------------------------------------------------------------------------------------
    def set(self, name: str, v: Value) -> None:
        if v.is_const:
            self.consts[name] = np.asarray(v.const)
        else:
            self.vals[name] = v

    def emit(self, node: Any, op: str, inputs: list[Value], attrs: dict | None = None, params: dict | None = None,
             pos: int | None = None) -> Value:
        v = self.ctx.emit(op, inputs, attrs, params, pos=pos)
        self.set(node.output[0], v)
        return v

    def sample_axis(self, v: Value, axis: int) -> int:
        return self.ctx.axis(v, int(axis), self.node.op_type)

    def conv_input(self, name: str) -> Value:
        v = self.act(name)
        if v.pos or any(v.fold):
            raise self.unsupported(self.node, "the batch axis must come first here, on its own")
        return v


# Shape arithmetic an exporter leaves in a dynamic-batch graph ((C // heads) ** -0.5 computed from
# Shape, chunk bounds, ...): with all inputs constant it is evaluated by onnx's reference
# implementation: ops whose output is no larger than their inputs, and ConstantOfShape of a small
# shape (checked before it allocates), on small inputs.
_FOLDABLE = {
    "ConstantOfShape", "Cast", "Pow", "Sqrt", "Div", "Mul", "Add", "Sub", "Neg", "Mod", "Floor", "Ceil", "Abs", "Min",
    "Max", "Unsqueeze", "Squeeze", "Concat", "Slice", "Gather", "Reshape", "Equal", "Where", "Not", "Less", "Greater",
    "Identity", "Transpose", "Flatten", "Reciprocal", "Sign",
}
_FOLD_LIMIT = 1 << 16  # elements over all inputs


_BROADCASTING = {"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Min", "Max", "Equal", "Where", "Less", "Greater"}


def _folded_size(node: Any, values: list[np.ndarray]) -> int:
    """An upper bound of the elements ``node`` makes from ``values`` (checked before it allocates)."""
    if node.op_type == "ConstantOfShape":
        return math.prod(int(d) for d in values[0].reshape(-1))
    if node.op_type in _BROADCASTING:
        try:
            return math.prod(np.broadcast_shapes(*(v.shape for v in values)))
        except ValueError:
            return 0  # evaluation names the mismatch
    if node.op_type == "Gather":
        data, idx = values
        return idx.size * (data.size // max(1, data.shape[_attrs(node).get("axis", 0)] if data.ndim else 1))
    return sum(v.size for v in values)


def _fold_constants(m: _OnnxMapper, node: Any) -> bool:
    names = [i for i in node.input if i]
    if node.op_type not in _FOLDABLE or not names or not all(i in m.consts for i in names):
        return False
    values = [m.consts[i] for i in names]
    if sum(v.size for v in values) > _FOLD_LIMIT:
        return False
    if _folded_size(node, values) > _FOLD_LIMIT:
        raise m.unsupported(node, f"its constant result would hold more than {_FOLD_LIMIT} values")
    from onnx.reference import ReferenceEvaluator

    try:
        results = ReferenceEvaluator(node).run(None, dict(zip(names, values)))
    except Exception as e:  # noqa: BLE001 (a malformed constant computation: name the node)
        raise m.unsupported(node, f"evaluating it on its constant inputs failed ({e})") from None
    for out, value in zip(node.output, results):
        if out:
            m.consts[out] = np.asarray(value)
    return True


def _is_symbolic(d: Any) -> bool:
    return isinstance(d, sympy.Basic) and bool(d.free_symbols)


def _dim(d: Any) -> Any:
    """A shape entry: an int, or a sympy expression in the batch size ``N``."""
    return d if _is_symbolic(d) else int(d)


def _set_shape(m: _OnnxMapper, name: str, values: list) -> None:
    """A shape value: a list of dims if one depends on the batch size ``N``, else an int64 constant."""
    values = [_dim(d) for d in values]
    if any(_is_symbolic(d) for d in values):
        m.shapes[name] = values
    else:
        m.consts[name] = np.asarray(values, np.int64)


def _view(x: Value) -> list:
    """What the model sees of ``x``'s shape, ``N`` for the batch (folded axes multiplied in)."""
    lo, hi = x.lead_dim, x.pos + x.fold[1]
    return [*x.shape[:lo], math.prod(x.shape[lo:hi]) * N, *x.shape[hi:]]


# --- synapses and normalization ----------------------------------------------------------------------
def _pads(m: _OnnxMapper, node: Any, a: dict, n: int) -> tuple[int, ...]:
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise m.unsupported(node, f"auto_pad={a['auto_pad']}; export with explicit pads")
    pads = list(a.get("pads", [0] * 2 * n))
    if pads[:n] != pads[n:]:
        raise m.unsupported(node, f"asymmetric pads {pads}")
    return tuple(int(p) for p in pads[:n])


def _conv(m: _OnnxMapper, node: Any, a: dict) -> None:
    w = m.const(node.input[1])
    n = w.ndim - 2
    if n not in (1, 2):
        raise m.unsupported(node, f"{n}-d convolution (1-d and 2-d are supported)")
    params = {"weight": w.astype(np.float32)}
    if m.optional(node, 2):
        params["bias"] = m.const(node.input[2]).astype(np.float32)
    attrs = {"stride": tuple(a.get("strides", [1] * n)), "padding": _pads(m, node, a, n),
             "dilation": tuple(a.get("dilations", [1] * n)), "groups": int(a.get("group", 1))}
    m.emit(node, f"conv{n}d", [m.conv_input(node.input[0])], attrs, params)


def _gemm(m: _OnnxMapper, node: Any, a: dict) -> None:
    if a.get("transA", 0) or node.input[1] not in m.consts:
        raise m.unsupported(node, "only x @ W^T (+ b) with a constant W")
    w = m.consts[node.input[1]].astype(np.float64) * a.get("alpha", 1.0)
    w = w if a.get("transB", 0) else w.T
    params = {"weight": w.astype(np.float32)}
    if m.optional(node, 2):
        bias = m.const(node.input[2]).astype(np.float64) * a.get("beta", 1.0)
        params["bias"] = np.broadcast_to(bias.astype(np.float32).reshape(-1), (w.shape[0],)).copy()
    x = m.act(node.input[0])
    m.sample_axis(x, -1)  # the features are per sample
    m.emit(node, "linear", [x], {}, params)


def _matmul(m: _OnnxMapper, node: Any, a: dict) -> None:
    m.set(node.output[0], matmul(m.ctx, m.value(node.input[0]), m.value(node.input[1])))


def _batchnorm(m: _OnnxMapper, node: Any, a: dict) -> None:
    scale, bias, mean, var = (m.const(i).astype(np.float32) for i in node.input[1:5])
    m.emit(node, "batchnorm", [m.conv_input(node.input[0])], {"eps": float(a.get("epsilon", 1e-5))},
           {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var})


def _layernorm(m: _OnnxMapper, node: Any, a: dict) -> None:
    x = m.act(node.input[0])
    first = int(a.get("axis", -1)) % x.rank
    if first <= x.lead_dim:
        raise m.unsupported(node, f"normalizing from axis {a.get('axis', -1)} includes the batch axis")
    for d in range(first, x.rank):
        m.sample_axis(x, d)
    norm = x.shape[m.sample_axis(x, first):]
    params = {"weight": np.broadcast_to(m.const(node.input[1]), norm).astype(np.float32)}
    if m.optional(node, 2):
        params["bias"] = np.broadcast_to(m.const(node.input[2]), norm).astype(np.float32)
    m.emit(node, "layernorm", [x], {"normalized_shape": norm, "eps": float(a.get("epsilon", 1e-5))}, params)


# --- element-wise ------------------------------------------------------------------------------------------
def _arith(kind: str):
    def handler(m: _OnnxMapper, node: Any, a: dict) -> None:
        x, y = node.input
        if m.is_shape(x) or m.is_shape(y):
            return _shape_arith(m, node, kind)
        if kind == "add" and _fold_bias(m, node):
            return None
        u, v = m.value(x), m.value(y)
        if kind == "add":
            u, v = _finite_mask(u, v), _finite_mask(v, u)
        m.set(node.output[0], arith(m.ctx, kind, u, v))
    return handler


def _finite_mask(c: Value, other: Value) -> Value:
    """An additive attention mask (-inf where masked, as torch exports ``attn_mask``) added to an
    activation: -inf becomes float32's lowest value, since IR constants are finite. Softmax then
    gives the same 0 weights; only a row masked entirely differs (uniform weights instead of NaN)."""
    if not c.is_const or other.is_const or c.const.dtype.kind != "f" or not np.isneginf(c.const).any():
        return c
    return constant(np.where(np.isneginf(c.const), np.finfo(np.float32).min, c.const))


def _fold_bias(m: _OnnxMapper, node: Any) -> bool:
    """``MatMul`` then ``Add`` of a bias vector (torch's export of a Linear on a sequence): one linear."""
    x, y = node.input
    if x in m.consts:
        x, y = y, x
    if y not in m.consts or x not in m.vals:
        return False
    src, bias = m.vals[x], m.consts[y].astype(np.float32)
    if src.is_const or m.uses.get(x) != 1:
        return False
    n = m.g.node(src.node)
    if n.op != "linear" or bias.size != n.params["weight"].shape[0] or bias.ndim > 1 and bias.shape[-1] != bias.size:
        return False
    n.params["bias"] = n.params.get("bias", np.zeros(bias.size, np.float32)) + bias.reshape(-1)
    m.vals[node.output[0]] = src
    return True


def _unary(op: str):
    def handler(m: _OnnxMapper, node: Any, a: dict) -> None:
        m.emit(node, op, [m.act(node.input[0])])
    return handler


def _gelu(m: _OnnxMapper, node: Any, a: dict) -> None:
    m.emit(node, "gelu", [m.act(node.input[0])], {"approximate": a.get("approximate", "none")})


def _hardsigmoid(m: _OnnxMapper, node: Any, a: dict) -> None:
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    x = m.act(node.input[0])
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        m.emit(node, "hardsigmoid", [x])
        return
    y = m.ctx.emit("affine", [x], {}, {"weight": np.array(alpha, np.float32), "bias": np.array(beta, np.float32)})
    m.emit(node, "clip", [y], {"min": 0.0, "max": 1.0})


def _clip(m: _OnnxMapper, node: Any, a: dict) -> None:
    lo, hi = a.get("min"), a.get("max")  # opset < 11: attributes; >= 11: optional inputs
    if m.optional(node, 1):
        lo = float(m.const(node.input[1]))
    if m.optional(node, 2):
        hi = float(m.const(node.input[2]))
    m.emit(node, "clip", [m.act(node.input[0])], {"min": lo, "max": hi})


def _neg(m: _OnnxMapper, node: Any, a: dict) -> None:
    m.emit(node, "scale", [m.act(node.input[0])], {"factor": -1.0})


def _pow(m: _OnnxMapper, node: Any, a: dict) -> None:
    x, e = m.act(node.input[0]), m.const(node.input[1])
    if e.size != 1 or float(e.reshape(())) not in (0.5, 1.0, 2.0):
        raise m.unsupported(node, f"exponent {e.reshape(-1)[:4]} (2, 1 and 0.5 are supported)")
    k = float(e.reshape(()))
    m.set(node.output[0], x if k == 1 else m.ctx.emit("sqrt", [x]) if k == 0.5 else m.ctx.emit("mul", [x, x]))


def _softmax(m: _OnnxMapper, node: Any, a: dict) -> None:
    x = m.act(node.input[0])
    default = -1 if (m.opset or 13) >= 13 else 1
    axis = int(a.get("axis", default)) % x.rank
    if (m.opset or 13) < 13 and axis != x.rank - 1:
        raise m.unsupported(node, "before opset 13 Softmax normalizes the flattened trailing axes; only the last "
                                  "axis is supported")
    m.emit(node, "softmax", [x], {"axis": m.sample_axis(x, axis)})


# --- pooling, reductions, resampling -------------------------------------------------------------------
def _pool(kind: str):
    def handler(m: _OnnxMapper, node: Any, a: dict) -> None:
        k = tuple(a["kernel_shape"])
        n = len(k)
        attrs = {"kernel_size": k, "stride": tuple(a.get("strides", k)), "padding": _pads(m, node, a, n),
                 "ceil_mode": bool(a.get("ceil_mode", 0))}
        if kind == "max":
            attrs["dilation"] = tuple(a.get("dilations", [1] * n))
            if len(node.output) > 1 and node.output[1]:
                raise m.unsupported(node, "MaxPool indices output")
        else:
            attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        m.emit(node, f"{kind}pool{n}d", [m.conv_input(node.input[0])], attrs)
    return handler


def _global_avg(m: _OnnxMapper, node: Any, a: dict) -> None:
    x = m.conv_input(node.input[0])
    rank = len(x.shape) - 1
    m.emit(node, f"adaptive_avgpool{rank}d", [x], {"output_size": (1,) * rank})


def _reduce(kind: str):
    def handler(m: _OnnxMapper, node: Any, a: dict) -> None:
        x = m.act(node.input[0])
        axes = a.get("axes")
        if m.optional(node, 1):
            axes = [int(v) for v in m.const(node.input[1]).reshape(-1)]
        if not axes:
            raise m.unsupported(node, "a reduction over all axes includes the batch axis")
        samples = tuple(sorted({m.sample_axis(x, d) for d in axes}))
        keep = bool(a.get("keepdims", 1))
        pos = x.pos if keep else x.pos - sum(1 for i in samples if i < x.pos)
        m.emit(node, kind, [x], {"axes": samples, "keepdim": keep}, pos=pos)
    return handler


def _resize(m: _OnnxMapper, node: Any, a: dict) -> None:
    x = m.conv_input(node.input[0])
    mode, ctm = a.get("mode", "nearest"), a.get("coordinate_transformation_mode", "half_pixel")
    if node.op_type == "Upsample":
        ctm = "asymmetric"
    spatial = x.shape[1:]
    if mode == "nearest":
        if ctm != "asymmetric" or a.get("nearest_mode", "round_prefer_floor") != "floor":
            raise m.unsupported(node, f"nearest with {ctm}/{a.get('nearest_mode', 'round_prefer_floor')} "
                                      "(torch's asymmetric/floor is supported)")
        align = None
    elif mode == "linear" and ctm in ("align_corners", "pytorch_half_pixel", "half_pixel"):
        align = ctm == "align_corners"
    else:
        raise m.unsupported(node, f"mode {mode!r} with coordinate_transformation_mode {ctm!r}")
    if a.get("antialias") or a.get("axes") or a.get("exclude_outside"):
        raise m.unsupported(node, "antialias, axes and exclude_outside are not supported")
    scales_name = node.input[1] if node.op_type == "Upsample" else m.optional(node, 2)
    sizes_name = None if node.op_type == "Upsample" else m.optional(node, 3)
    scales = None if scales_name is None else m.const(scales_name).astype(np.float64)
    if scales is not None and scales.size:
        if list(scales[:2]) != [1.0, 1.0]:
            raise m.unsupported(node, f"scales {scales.tolist()} resize the batch or channel axis")
        factors = tuple(float(s) for s in scales[2:])
        size, scale = tuple(math.floor(n * f) for n, f in zip(spatial, factors)), factors
    elif sizes_name is not None:
        sizes = m.shapes.get(sizes_name) or [int(v) for v in m.const(sizes_name).reshape(-1)]
        if len(sizes) != x.rank or sizes[1] != x.shape[0]:
            raise m.unsupported(node, f"sizes {sizes} must keep the batch and channel axes")
        size, scale = tuple(int(s) for s in sizes[2:]), None
    else:
        raise m.unsupported(node, "neither scales nor sizes is given")
    if ctm == "half_pixel" and min(size) == 1:
        raise m.unsupported(node, "half_pixel to an output size of 1 differs from torch's bilinear")
    m.emit(node, "upsample", [x], {"size": size, "mode": "nearest" if mode == "nearest" else
                                   ("linear" if len(size) == 1 else "bilinear"), "align_corners": align,
                                   "scale": scale})


# --- shapes -------------------------------------------------------------------------------------------
def _shape(m: _OnnxMapper, node: Any, a: dict) -> None:
    full = _view(m.act(node.input[0]))
    start, end = a.get("start", 0), a.get("end", len(full))
    _set_shape(m, node.output[0], full[start:end])


def _shape_value(m: _OnnxMapper, name: str) -> list | None:
    if name in m.shapes:
        return list(m.shapes[name])
    if name in m.consts:
        return [int(v) for v in np.atleast_1d(m.consts[name]).reshape(-1)]
    return None


_SHAPE_ARITH = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
                "div": lambda x, y: sympy.floor(x / y), "mod": sympy.Mod}


def _shape_arith(m: _OnnxMapper, node: Any, kind: str) -> None:
    """Arithmetic on shape values (sizes are positive, so ONNX's truncating Div is a floor)."""
    x, y = (_shape_value(m, i) for i in node.input)
    if x is None or y is None or (len(x) != len(y) and 1 not in (len(x), len(y))):
        raise m.unsupported(node, f"arithmetic on a non-constant shape, or on shapes {x} and {y} that do not "
                                  "broadcast")
    if kind in ("div", "mod") and 0 in y:
        raise m.unsupported(node, f"{kind} of shape {x} by zero")
    if max(len(x), len(y)) > 64:
        raise m.unsupported(node, f"arithmetic on a shape of {max(len(x), len(y))} values (a shape has one per axis)")
    x, y = ([sympy.sympify(d) for d in v] for v in (x, y))
    fn = _SHAPE_ARITH[kind]
    _set_shape(m, node.output[0], [fn(x[i % len(x)], y[i % len(y)]) for i in range(max(len(x), len(y)))])


def _mod(m: _OnnxMapper, node: Any, a: dict) -> None:
    if not all(m.is_shape(i) or i in m.consts for i in node.input) or a.get("fmod"):
        raise m.unsupported(node, "Mod of activations, or fmod")
    _shape_arith(m, node, "mod")


def _gather(m: _OnnxMapper, node: Any, a: dict) -> None:
    idx = m.const(node.input[1])
    if m.is_shape(node.input[0]):
        data = m.shapes[node.input[0]]
        picked = [data[int(i)] for i in np.atleast_1d(idx)]
        if any(_is_symbolic(d) for d in picked):
            m.shapes[node.output[0]] = picked
        else:  # a scalar index gives a scalar
            m.consts[node.output[0]] = np.asarray(picked, np.int64).reshape(np.shape(idx))
        return
    x = m.value(node.input[0])
    if x.is_const:
        axis = int(a.get("axis", 0)) % max(x.const.ndim, 1)
        m.ctx.folded("Gather", (*x.const.shape[:axis], *np.shape(idx), *x.const.shape[axis + 1:]), x.const, idx)
        m.consts[node.output[0]] = np.take(x.const, idx, axis=axis)
        return
    axis = m.sample_axis(x, int(a.get("axis", 0)))
    size = x.shape[axis]
    flat = [int(i) % size for i in np.atleast_1d(idx).reshape(-1)]
    if flat != list(range(flat[0], flat[0] + len(flat))):
        raise m.unsupported(node, "Gather of non-contiguous indices")
    piece = split(m.ctx, x, axis, [(flat[0], flat[0] + len(flat))]).get(0)
    shape = (*x.shape[:axis], *np.shape(idx), *x.shape[axis + 1:])
    pos = x.pos - 1 if idx.ndim == 0 and axis < x.pos else x.pos
    m.set(node.output[0], m.ctx.reshape(piece, shape, pos=pos))


def _axes_input(m: _OnnxMapper, node: Any, a: dict) -> list[int] | None:
    if m.optional(node, 1):
        return [int(v) for v in m.const(node.input[1]).reshape(-1)]
    return a.get("axes")


def _axis_op_operand(m: _OnnxMapper, node: Any, fold: Callable[[np.ndarray], np.ndarray]) -> Value | None:
    """The value input of a Squeeze/Unsqueeze, or None when already handled: a shape tensor passes
    through unchanged, a constant is folded by ``fold``."""
    if m.is_shape(node.input[0]):
        m.shapes[node.output[0]] = m.shapes[node.input[0]]
        return None
    x = m.value(node.input[0])
    if x.is_const:
        m.consts[node.output[0]] = fold(x.const)
        return None
    return x


def _unsqueeze(m: _OnnxMapper, node: Any, a: dict) -> None:
    axes = _axes_input(m, node, a)
    x = _axis_op_operand(m, node, lambda c: np.expand_dims(c, tuple(axes)))
    if x is None:
        return
    out_rank = x.rank + len(axes)
    new = sorted(d % out_rank for d in axes)
    dims = iter(_view(x))
    m.set(node.output[0], _reshape_to(m, x, [1 if i in new else next(dims) for i in range(out_rank)]))


def _squeeze(m: _OnnxMapper, node: Any, a: dict) -> None:
    axes = _axes_input(m, node, a)
    x = _axis_op_operand(m, node, lambda c: np.squeeze(c, tuple(axes) if axes else None))
    if x is None:
        return
    view = _view(x)
    if axes:
        drop = {int(d) % x.rank for d in axes}
        for d in drop:
            if view[d] != 1:
                m.sample_axis(x, d)  # the batch axis: refused by name
                raise m.unsupported(node, f"Squeeze of axis {d}, of size {view[d]}")
    else:
        drop = {i for i, d in enumerate(view) if d == 1}
    m.set(node.output[0], _reshape_to(m, x, [d for i, d in enumerate(view) if i not in drop]))


def _reshape(m: _OnnxMapper, node: Any, a: dict) -> None:
    target = _shape_value(m, node.input[1])
    x = m.value(node.input[0])
    if target is None:
        raise m.unsupported(node, "the target shape is computed at run time")
    if x.is_const:
        m.consts[node.output[0]] = np.reshape(x.const, [d for d in target])
        return
    view = _view(x)
    if not a.get("allowzero", 0):
        target = [view[i] if not _is_symbolic(d) and d == 0 else d for i, d in enumerate(target)]
    m.set(node.output[0], _reshape_to(m, x, target))


def _reshape_to(m: _OnnxMapper, x: Value, target: list) -> Value:
    """``x`` viewed as ``target`` (ints, at most one -1, and sympy sizes in the batch size ``N``).

    The batch must stay whole inside one target axis of size ``a*N*b``: then the data move is a
    per-sample reshape, and ``a`` and ``b`` become sample axes folded with the batch (``fold``).
    """
    target = [_dim(d) for d in target]
    what = f"Reshape of {m.ctx._describe(x)} to {[str(d) for d in target]}"
    if any(not _is_symbolic(d) and d < -1 for d in target) or target.count(-1) > 1:
        raise m.unsupported(m.node, f"{what}: sizes must be >= 0, at most one -1")
    if not any(_is_symbolic(d) for d in target) and m.batch:
        target = _locate_static_batch(m, x, target)
    total = math.prod(x.shape) * N
    if -1 in target:
        known = math.prod(d for d in target if _is_symbolic(d) or d != -1)
        rest = sympy.simplify(total / known) if known != 0 else None
        if rest is None or not (rest.is_integer or (rest / N).is_integer):
            raise m.unsupported(m.node, f"{what}: the sizes do not fit")
        target[target.index(-1)] = _dim(rest)
    symbolic = [i for i, d in enumerate(target) if _is_symbolic(d)]
    coeff = sympy.simplify(target[symbolic[0]] / N) if len(symbolic) == 1 else None
    if coeff is None and m.batch:
        raise m.unsupported(m.node, f"{what}: the export fixed the batch size ({m.batch}) in the target shape and "
                                    "snnir cannot tell which axis holds the batch; export with a dynamic batch axis "
                                    "(torch.onnx.export(..., dynamic_axes={'x': {0: 'n'}}))")
    if coeff is None or not coeff.is_Integer or sympy.simplify(math.prod(target) - total) != 0:
        raise m.unsupported(m.node, f"{what} mixes the batch axis with per-sample axes (snnir shapes are per "
                                    "sample: the batch must stay whole inside one axis)")
    j, c = symbolic[0], int(coeff)
    inner, after = math.prod(x.shape[x.pos:]), math.prod(target[j + 1:])
    if c < 1 or after < 1 or inner % after or c % (inner // after):
        raise m.unsupported(m.node, f"{what} mixes the batch axis with per-sample axes (snnir shapes are per "
                                    "sample: the batch must stay whole inside one axis)")
    b = inner // after
    a = c // b
    shape = (*target[:j], *([a] if a > 1 else []), *([b] if b > 1 else []), *target[j + 1:])
    return m.ctx.reshape(x, shape, suffix="", pos=j + (a > 1)).with_fold((int(a > 1), int(b > 1)))


def _locate_static_batch(m: _OnnxMapper, x: Value, target: list) -> list:
    """A target shape with the export's batch size baked in: the axis holding the batch, as ``c*N``."""
    b = m.batch
    if not x.pos and not any(x.fold) and target and target[0] == b:
        return [N, *target[1:]]  # [batch, ...] as before (b = 1 or not)
    if b == 1 or -1 in target:
        return target
    inner, outer = math.prod(x.shape[x.pos:]), math.prod(x.shape[:x.pos])
    fits = []
    for j, d in enumerate(target):
        after, before = math.prod(target[j + 1:]), math.prod(target[:j])
        if d > 0 and after > 0 and d % b == 0 and inner % after == 0 and (d // b) % (inner // after) == 0 \
                and before * (d // b) // (inner // after) == outer:
            fits.append(j)
    if len(fits) != 1:
        return target
    return [d // b * N if i == fits[0] else d for i, d in enumerate(target)]


def _flatten(m: _OnnxMapper, node: Any, a: dict) -> None:
    x = m.act(node.input[0])
    view = _view(x)
    axis = int(a.get("axis", 1)) % (len(view) + 1)
    m.set(node.output[0], _reshape_to(m, x, [math.prod(view[:axis]), math.prod(view[axis:])]))


def _transpose(m: _OnnxMapper, node: Any, a: dict) -> None:
    """The model's axes permuted; the batch and the sample axes folded with it move as one."""
    x = m.value(node.input[0])
    perm = [int(p) for p in a.get("perm", range(x.rank - 1, -1, -1))]
    if x.is_const:
        m.consts[node.output[0]] = np.transpose(x.const, perm)
        return
    if sorted(perm) != list(range(x.rank)):
        raise m.unsupported(node, f"perm {perm} is not a permutation of the {x.rank} axes")
    lo, hi = x.lead_dim, x.pos + x.fold[1]
    groups = [[i] for i in range(lo)] + [[*range(lo, x.pos), "N", *range(x.pos, hi)]] \
        + [[i] for i in range(hi, len(x.shape))]
    order = [i for p in perm for i in groups[p]]
    pos = order.index("N")
    per_sample = tuple(i for i in order if i != "N")
    m.set(node.output[0], transpose(m.ctx, x, per_sample, pos=pos).with_fold(x.fold))


def _concat(m: _OnnxMapper, node: Any, a: dict) -> None:
    if any(m.is_shape(i) for i in node.input):  # building a shape: [N] ++ [-1]
        parts = [_shape_value(m, i) for i in node.input]
        if any(p is None for p in parts):
            raise m.unsupported(node, "Concat of a shape with a non-constant")
        _set_shape(m, node.output[0], [v for p in parts for v in p])
        return
    values = [m.value(i) for i in node.input]
    tensors = [v for v in values if not v.is_const]
    if not tensors:
        m.consts[node.output[0]] = np.concatenate([v.const for v in values], axis=int(a["axis"]))
        return
    ref = tensors[0]
    if any((v.pos, len(v.shape), v.fold) != (ref.pos, len(ref.shape), ref.fold) for v in tensors):
        raise m.unsupported(node, "Concat of tensors with different layouts")
    values = [m.ctx.sample_of_const(v, ref) if v.is_const else v for v in values]
    m.emit(node, "cat", values, {"axis": m.sample_axis(ref, int(a["axis"]))})


def _split(m: _OnnxMapper, node: Any, a: dict) -> None:
    x = m.act(node.input[0])
    axis = m.sample_axis(x, int(a.get("axis", 0)))
    size = x.shape[axis]
    sizes = a.get("split")
    if m.optional(node, 1):
        sizes = [int(v) for v in m.const(node.input[1]).reshape(-1)]
    if sizes is None:
        count = int(a.get("num_outputs", len(node.output)))
        step = math.ceil(size / count)
        sizes = [min(step, size - i * step) for i in range(count)]
    if sum(sizes) != size or len(sizes) != len(node.output):
        raise m.unsupported(node, f"split sizes {sizes} do not fit an axis of size {size} and {len(node.output)} "
                                  "outputs")
    starts = np.cumsum([0, *sizes])
    pieces = split(m.ctx, x, axis, [(int(b), int(e)) for b, e in zip(starts[:-1], starts[1:])])
    for i, out in enumerate(node.output):
        if out and m.uses.get(out):
            m.ctx.name = f"{node.name or 'split'}_{i}"
            m.set(out, pieces.get(i))


def _slice(m: _OnnxMapper, node: Any, a: dict) -> None:
    if (m.opset or 13) < 10:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends = (m.const(node.input[i]).reshape(-1).tolist() for i in (1, 2))
        axes = m.const(node.input[3]).reshape(-1).tolist() if m.optional(node, 3) else None
        steps = m.const(node.input[4]).reshape(-1).tolist() if m.optional(node, 4) else None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    if m.is_shape(node.input[0]):
        if len(starts) != 1 or steps[0] != 1:
            raise m.unsupported(node, "Slice of a shape along more than one axis or with a step")
        data = m.shapes[node.input[0]]
        _set_shape(m, node.output[0], data[slice(*slice(int(starts[0]), int(ends[0])).indices(len(data)))])
        return
    x = m.value(node.input[0])
    if x.is_const:
        index = [slice(None)] * x.const.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            index[int(ax)] = slice(int(s), int(e), int(st))
        m.consts[node.output[0]] = np.asarray(x.const)[tuple(index)]
        return
    out = x
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = int(ax) % x.rank
        if ax == x.lead_dim and not any(x.fold):
            if int(s) != 0 or int(e) < (m.batch or 2 ** 62) or st != 1:
                raise m.unsupported(node, "Slice along the batch axis")
            continue
        axis = m.sample_axis(x, ax)
        start, stop, step = slice(int(s), int(e), int(st)).indices(x.shape[axis])
        if step < 1 or stop <= start:
            raise m.unsupported(node, f"Slice [{s}:{e}:{st}] is empty or reversed")
        if (start, stop, step) != (0, x.shape[axis], 1):
            out = m.ctx.emit("slice", [out], {"axis": axis, "start": start, "stop": stop, "step": step})
    m.set(node.output[0], out)


def _expand(m: _OnnxMapper, node: Any, a: dict) -> None:
    x = m.act(node.input[0])
    target = _shape_value(m, node.input[1])
    if target is None or x.pos or any(x.fold):
        raise m.unsupported(node, "Expand to a computed shape, or with the batch axis not first")
    full = [1] * (len(target) - x.rank) + [N, *x.shape]
    if len(full) != x.rank or not (target[0] == N or target[0] in (1, -1) + ((m.batch,) if m.batch else ())):
        raise m.unsupported(node, f"Expand to {target} adds axes before the batch axis or changes it")
    shape = tuple(s if t in (1, -1) else int(t) for s, t in zip(x.shape, target[1:]))
    m.set(node.output[0], x if shape == x.shape else m.ctx.emit("expand", [x], {"shape": shape}))


def _identity(m: _OnnxMapper, node: Any, a: dict) -> None:
    src, out = node.input[0], node.output[0]
    if src in m.consts:  # torch's exporter reaches shared initializers through Identity
        m.consts[out] = m.consts[src]
    elif src in m.shapes:
        m.shapes[out] = m.shapes[src]
    else:
        m.set(out, m.act(src))


def _cast(m: _OnnxMapper, node: Any, a: dict) -> None:
    import onnx

    to = a.get("to")
    if node.input[0] in m.shapes or node.input[0] in m.consts:
        return _identity(m, node, a)
    if to not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise m.unsupported(node, f"Cast of an activation to {onnx.TensorProto.DataType.Name(to)}")
    _identity(m, node, a)


_OPS = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "Add": _arith("add"), "Sub": _arith("sub"), "Mul": _arith("mul"), "Div": _arith("div"), "Neg": _neg,
    "Pow": _pow, "Sqrt": _unary("sqrt"),
    "Relu": _unary("relu"), "Clip": _clip, "Sigmoid": _unary("sigmoid"), "Tanh": _unary("tanh"),
    "Erf": _unary("erf"), "Exp": _unary("exp"), "Gelu": _gelu, "HardSwish": _unary("hardswish"),
    "HardSigmoid": _hardsigmoid, "Softmax": _softmax,
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"), "GlobalAveragePool": _global_avg,
    "ReduceMean": _reduce("mean"), "ReduceSum": _reduce("sum"), "Resize": _resize, "Upsample": _resize,
    "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Concat": _concat, "Split": _split, "Slice": _slice, "Gather": _gather, "Expand": _expand,
    "Shape": _shape, "Mod": _mod, "Cast": _cast, "Dropout": _identity, "Identity": _identity,
}
