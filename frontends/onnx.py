"""ANNs from ONNX files: read with ``onnx`` (protobuf; no code runs), mapped to snnir ops.

Supported operators: Conv (1-d/2-d, symmetric pads), Gemm, MatMul (+ Add of a bias), Add (two
tensors), BatchNormalization, Relu, Clip (ReLU6), MaxPool, AveragePool, GlobalAveragePool,
Flatten, Reshape (to ``[batch, -1]``, also when the target is computed from ``Shape``), Concat,
Dropout and Identity (removed). The first axis of every tensor is the batch; snnir shapes are per
sample. Shape arithmetic (``Shape``, ``Gather``, ``Unsqueeze``, ``Concat`` of shapes, as exporters
emit for ``x.view(x.size(0), -1)``) is evaluated symbolically with the batch as ``"N"``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from snnir.errors import FormatError, GraphError, SnnirError, file_errors
from snnir.graph import Graph


class UnsupportedOpError(SnnirError):
    """An ONNX operator (or attribute value) with no snnir mapping."""


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def from_onnx(model: str | os.PathLike | Any, name: str | None = None) -> Graph:
    """Import an ONNX model (path or ``onnx.ModelProto``) as a graph of ANN ops.

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
        return _import(model, where, name)


def _import(model: Any, where: str, name: str | None) -> Graph:
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
    env: dict[str, str] = {}
    for inp in graph_proto.input:
        if inp.name in consts:
            continue
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        if len(dims) < 2 or any(d <= 0 for d in dims[1:]):
            raise FormatError(f"{where}: input {inp.name!r} needs a static shape [batch, ...], got {dims}")
        env[inp.name] = g.add_input(dims[1:], id=_ident(g, inp.name))
    mapper = _OnnxMapper(g, env, consts, where, opset)
    for node in graph_proto.node:
        for name in node.input:
            mapper.uses[name] = mapper.uses.get(name, 0) + 1
    for node in graph_proto.node:
        if node.op_type != "Constant":
            mapper.map(node)
    for out in graph_proto.output:
        if out.name not in env:
            raise FormatError(f"{where}: graph output {out.name!r} is not produced by a supported node")
        g.add_output(env[out.name], id=_ident(g, "output"))
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
    def __init__(self, g: Graph, env: dict[str, str], consts: dict[str, np.ndarray], where: str, opset) -> None:
        self.g, self.env, self.consts, self.where, self.opset = g, env, consts, where, opset
        self.uses: dict[str, int] = {}
        self.shapes: dict[str, list] = {}  # symbolic shape values ("N" is the batch)

    def unsupported(self, node: Any, why: str = "") -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.where}: ONNX op {node.op_type!r} (node {node.name!r}, opset {self.opset}) "
                                  f"is not supported{': ' + why if why else ''}. Supported: {', '.join(sorted(_OPS))}")

    def act(self, name: str, node: Any) -> str:
        if name not in self.env:
            raise self.unsupported(node, f"input {name!r} is not an activation snnir knows")
        return self.env[name]

    def emit(self, node: Any, op: str, inputs: list[str], attrs: dict | None = None, params: dict | None = None):
        try:
            self.env[node.output[0]] = self.g.add_node(op, inputs, attrs=attrs, params=params,
                                                       id=_ident(self.g, node.name or op))
        except GraphError as e:
            raise FormatError(f"{self.where}: node {node.name!r} ({node.op_type}): {e}") from None

    def map(self, node: Any) -> None:
        handler = _OPS.get(node.op_type)
        if handler is None:
            raise self.unsupported(node)
        what = f"node {node.name!r} ({node.op_type})"
        with file_errors(self.where, what):  # every handler: no raw exception escapes, the node is named
            try:
                handler(self, node, _attrs(node))
            except KeyError as e:
                raise FormatError(f"{self.where}: {what} refers to {e}, which it does not have (a missing attribute, "
                                  "or an input that is not a constant initializer or a known activation)") from None


def _pads(mapper: _OnnxMapper, node: Any, a: dict, n: int) -> tuple[int, ...]:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise mapper.unsupported(node, "auto_pad; export with explicit pads")
    pads = list(a.get("pads", [0] * 2 * n))
    if pads[:n] != pads[n:]:
        raise mapper.unsupported(node, f"asymmetric pads {pads}")
    return tuple(int(p) for p in pads[:n])


def _conv(m: _OnnxMapper, node: Any, a: dict) -> None:
    w = m.consts[node.input[1]]
    n = w.ndim - 2
    params = {"weight": w.astype(np.float32)}
    if len(node.input) > 2 and node.input[2]:
        params["bias"] = m.consts[node.input[2]].astype(np.float32)
    attrs = {"stride": tuple(a.get("strides", [1] * n)), "padding": _pads(m, node, a, n),
             "dilation": tuple(a.get("dilations", [1] * n)), "groups": int(a.get("group", 1))}
    m.emit(node, f"conv{n}d", [m.act(node.input[0], node)], attrs, params)


def _gemm(m: _OnnxMapper, node: Any, a: dict) -> None:
    if a.get("transA", 0) or node.input[1] not in m.consts:
        raise m.unsupported(node, "only x @ W^T (+ b) with a constant W")
    w = m.consts[node.input[1]].astype(np.float64) * a.get("alpha", 1.0)
    w = w if a.get("transB", 0) else w.T
    params = {"weight": w.astype(np.float32)}
    if len(node.input) > 2 and node.input[2]:
        bias = m.consts[node.input[2]].astype(np.float64) * a.get("beta", 1.0)
        params["bias"] = bias.astype(np.float32).reshape(-1)
    m.emit(node, "linear", [m.act(node.input[0], node)], {}, params)


def _matmul(m: _OnnxMapper, node: Any, a: dict) -> None:
    if node.input[1] not in m.consts:
        raise m.unsupported(node, "MatMul of two activations")
    m.emit(node, "linear", [m.act(node.input[0], node)], {}, {"weight": m.consts[node.input[1]].T.astype(np.float32)})


def _add(m: _OnnxMapper, node: Any, a: dict) -> None:
    x, y = node.input
    if x in m.consts:
        x, y = y, x
    if y in m.consts:  # a bias: fold into the MatMul/Gemm/Conv that produced x, else an affine
        src = m.g.node(m.act(x, node))
        bias = m.consts[y].astype(np.float32)
        if src.op == "linear" and bias.size == src.params["weight"].shape[0] and m.uses.get(x) == 1:
            src.params["bias"] = src.params.get("bias", np.zeros_like(bias.reshape(-1))) + bias.reshape(-1)
            m.env[node.output[0]] = src.id
            return
        m.emit(node, "affine", [src.id], {}, {"weight": np.array(1.0, np.float32), "bias": bias.reshape(-1)
                                              if bias.size > 1 else bias.reshape(())})
        return
    m.emit(node, "add", [m.act(x, node), m.act(y, node)])


def _batchnorm(m: _OnnxMapper, node: Any, a: dict) -> None:
    scale, bias, mean, var = (m.consts[i].astype(np.float32) for i in node.input[1:5])
    m.emit(node, "batchnorm", [m.act(node.input[0], node)], {"eps": float(a.get("epsilon", 1e-5))},
           {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var})


def _clip(m: _OnnxMapper, node: Any, a: dict) -> None:
    lo, hi = a.get("min"), a.get("max")  # opset < 11: attributes; >= 11: optional inputs
    if len(node.input) > 1 and node.input[1]:
        lo = float(m.consts[node.input[1]])
    if len(node.input) > 2 and node.input[2]:
        hi = float(m.consts[node.input[2]])
    m.emit(node, "clip", [m.act(node.input[0], node)], {"min": lo, "max": hi})


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
        m.emit(node, f"{kind}pool{n}d", [m.act(node.input[0], node)], attrs)
    return handler


def _global_avg(m: _OnnxMapper, node: Any, a: dict) -> None:
    x = m.act(node.input[0], node)
    rank = len(m.g.infer_shapes().node(x).shape) - 1
    m.emit(node, f"adaptive_avgpool{rank}d", [x], {"output_size": (1,) * rank})


def _flatten(m: _OnnxMapper, node: Any, a: dict) -> None:
    if a.get("axis", 1) != 1:
        raise m.unsupported(node, f"Flatten axis {a.get('axis')} (only 1: keep the batch axis)")
    m.emit(node, "flatten", [m.act(node.input[0], node)], {"start": 0, "end": -1})


def _shape(m: _OnnxMapper, node: Any, a: dict) -> None:
    x = m.act(node.input[0], node)
    m.shapes[node.output[0]] = ["N", *m.g.infer_shapes().node(x).shape]


def _shape_value(m: _OnnxMapper, name: str) -> list | None:
    if name in m.shapes:
        return list(m.shapes[name])
    if name in m.consts:
        return [int(v) for v in np.atleast_1d(m.consts[name])]
    return None


def _gather(m: _OnnxMapper, node: Any, a: dict) -> None:
    data, idx = _shape_value(m, node.input[0]), m.consts.get(node.input[1])
    if data is None or idx is None or a.get("axis", 0) != 0 or node.input[0] not in m.shapes:
        raise m.unsupported(node, "Gather is supported on shape values only")
    picked = [data[int(i)] for i in np.atleast_1d(idx)]
    m.shapes[node.output[0]] = picked


def _unsqueeze(m: _OnnxMapper, node: Any, a: dict) -> None:
    value = _shape_value(m, node.input[0])
    if value is None or node.input[0] not in m.shapes:
        raise m.unsupported(node, "Unsqueeze is supported on shape values only")
    m.shapes[node.output[0]] = value


def _reshape(m: _OnnxMapper, node: Any, a: dict) -> None:
    shape = _shape_value(m, node.input[1])
    x = m.act(node.input[0], node)
    per_sample = m.g.infer_shapes().node(x).shape
    if shape is None or len(shape) != 2 or shape[1] not in (-1, int(np.prod(per_sample))):
        raise m.unsupported(node, f"Reshape to {None if shape is None else list(shape)} (only [batch, -1])")
    m.emit(node, "flatten", [x], {"start": 0, "end": -1})


def _concat(m: _OnnxMapper, node: Any, a: dict) -> None:
    if any(i in m.shapes for i in node.input):  # building a shape: [N] ++ [-1]
        parts = [_shape_value(m, i) for i in node.input]
        if any(p is None for p in parts):
            raise m.unsupported(node, "Concat of a shape with a non-constant")
        m.shapes[node.output[0]] = [v for p in parts for v in p]
        return
    axis = int(a["axis"])
    if axis == 0:
        raise m.unsupported(node, "Concat over the batch axis")
    m.emit(node, "cat", [m.act(i, node) for i in node.input], {"axis": axis - 1 if axis > 0 else axis})


def _identity(m: _OnnxMapper, node: Any, a: dict) -> None:
    m.env[node.output[0]] = m.act(node.input[0], node)


_OPS = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "Add": _add, "BatchNormalization": _batchnorm,
    "Relu": lambda m, n, a: m.emit(n, "relu", [m.act(n.input[0], n)]), "Clip": _clip,
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"), "GlobalAveragePool": _global_avg,
    "Flatten": _flatten, "Reshape": _reshape, "Concat": _concat, "Dropout": _identity, "Identity": _identity,
    "Shape": _shape, "Gather": _gather, "Unsqueeze": _unsqueeze,
}
