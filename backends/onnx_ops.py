"""ONNX lowerings of snnir ops, one function per op, registered by op name (``LOWERINGS``).

A lowering is ``fn(b, node, args, state) -> output name``: ``b`` is the ``OnnxBuilder``, ``args``
the input tensor names (by port) and ``state`` maps ``<node>.<state>`` to the tensor holding it
before the step; a stateful lowering writes the tensor after the step back into ``state``. A new
op needs one ``@lowers("op")`` function here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from snnir.errors import SnnirError
from snnir.graph import Node
from snnir.lowering import evaluate, lower_equations
from snnir.neurons import get_model
from snnir.ops.neuron import parameter_values

from .onnx_expr import OnnxBuilder

Lowering = Callable[[OnnxBuilder, Node, list[str], dict[str, str]], str]
LOWERINGS: dict[str, Lowering] = {}


class UnsupportedOpError(SnnirError):
    """A node the ONNX exporter has no lowering for (the message names the node)."""


def lowers(*ops: str) -> Callable[[Lowering], Lowering]:
    """Register the ONNX lowering of ``ops``."""
    def wrap(fn: Lowering) -> Lowering:
        for op in ops:
            LOWERINGS[op] = fn
        return fn
    return wrap


def lower(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    """Emit ``node``; raises ``UnsupportedOpError`` naming it when there is no lowering."""
    if node.attrs.get("quant"):
        raise UnsupportedOpError(f"node {node.id!r} ({node.op}): fake-quantized weights are not exported; "
                                 "export the float graph")
    if node.op not in LOWERINGS:
        raise UnsupportedOpError(f"node {node.id!r}: the ONNX exporter has no lowering for op {node.op!r}")
    return LOWERINGS[node.op](b, node, args, state)


def _ints(value: Any, n: int) -> list[int]:
    a = np.asarray(value).reshape(-1)
    return [int(a[0])] * n if a.size == 1 else [int(v) for v in a]


def _f32(value: Any) -> np.ndarray:
    return np.asarray(value, np.float32)


@lowers("output", "dropout")
def _identity(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return args[0]


@lowers("linear")
def _linear(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    w, p = _f32(node.params["weight"]), node.params
    if len(node.in_shape) == 1:
        inputs = [args[0], b.const(w, hint=f"{node.id}.weight")]
        if "bias" in p:
            inputs.append(b.const(_f32(p["bias"]), hint=f"{node.id}.bias"))
        return b.op("Gemm", inputs, transB=1)
    y = b.op("MatMul", [args[0], b.const(w.T.copy(), hint=f"{node.id}.weight")])
    return b.op("Add", [y, b.const(_f32(p["bias"]))]) if "bias" in p else y


@lowers("conv1d", "conv2d")
def _conv(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    a, p = node.attrs, node.params
    n = 1 if node.op == "conv1d" else 2
    pads = _ints(a["padding"], n)
    inputs = [args[0], b.const(_f32(p["weight"]), hint=f"{node.id}.weight")]
    if "bias" in p:
        inputs.append(b.const(_f32(p["bias"]), hint=f"{node.id}.bias"))
    return b.op("Conv", inputs, strides=_ints(a["stride"] or 1, n), pads=pads + pads,
                dilations=_ints(a["dilation"], n), group=a["groups"])


@lowers("avgpool1d", "avgpool2d", "maxpool1d", "maxpool2d")
def _pool(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    a, n = node.attrs, int(node.op[-2])
    kernel = _ints(a["kernel_size"], n)
    pads = _ints(a["padding"], n)
    kw = {"kernel_shape": kernel, "strides": _ints(a["stride"] if a["stride"] is not None else kernel, n),
          "pads": pads + pads, "ceil_mode": int(a["ceil_mode"])}
    if node.op.startswith("avg"):
        return b.op("AveragePool", [args[0]], count_include_pad=int(a["count_include_pad"]), **kw)
    return b.op("MaxPool", [args[0]], dilations=_ints(a["dilation"], n), **kw)


@lowers("adaptive_avgpool1d", "adaptive_avgpool2d")
def _adaptive_avgpool(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    sizes, out = node.in_shape[1:], node.shape[1:]
    if any(i % o for i, o in zip(sizes, out)):  # equal windows only when the sizes divide
        raise UnsupportedOpError(f"node {node.id!r} ({node.op}): input size {sizes} is not a multiple of the "
                                 f"output size {out}")
    kernel = [i // o for i, o in zip(sizes, out)]
    return b.op("AveragePool", [args[0]], kernel_shape=kernel, strides=kernel)


@lowers("flatten")
def _flatten(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("Reshape", [args[0], b.const(np.array([0, *node.shape], np.int64))])


@lowers("relu")
def _relu(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("Relu", args)


@lowers("scale")
def _scale(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("Mul", [args[0], b.const(node.attrs["factor"])])


@lowers("affine")
def _affine(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    shape = (-1, *([1] * (len(node.shape) - 1)))  # per channel: axis 0 of the sample
    w, bias = (_f32(node.params[k]) for k in ("weight", "bias"))
    y = b.op("Mul", [args[0], b.const(w.reshape(shape) if w.ndim else w)])
    return b.op("Add", [y, b.const(bias.reshape(shape) if bias.ndim else bias)])


@lowers("add")
def _add(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    acc = args[0]
    for other in args[1:]:
        acc = b.op("Add", [acc, other])
    return acc


@lowers("cat")
def _cat(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("Concat", args, axis=node.attrs["axis"] % len(node.shape) + 1)


@lowers("clip")
def _clip(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    lo, hi = node.attrs["min"], node.attrs["max"]
    return b.op("Clip", [args[0], b.const(lo) if lo is not None else "", b.const(hi) if hi is not None else ""])


@lowers("constant")
def _constant(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.const(_f32(node.params["value"])[None], hint=node.id)  # [1, ...]: broadcasts over the batch


@lowers("batchnorm")
def _batchnorm(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    p, c = node.params, node.shape[0]
    scale, shift = _f32(p.get("weight", np.ones(c))), _f32(p.get("bias", np.zeros(c)))
    stats = [b.const(_f32(p["running_mean"])), b.const(_f32(p["running_var"]))]
    return b.op("BatchNormalization", [args[0], b.const(scale), b.const(shift), *stats], epsilon=node.attrs["eps"])


# --- tensor ops, activations, attention building blocks ----------------------------------------
def _i64(values: Any) -> np.ndarray:
    return np.asarray(values, np.int64).reshape(-1)


def _batch_axis(axis: int) -> int:
    """The ONNX axis of per-sample ``axis`` (the batch comes first; negative axes are kept)."""
    return axis + 1 if axis >= 0 else axis


@lowers("reshape")
def _reshape(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("Reshape", [args[0], b.const(_i64([0, *node.attrs["shape"]]))])


@lowers("expand")
def _expand(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("Expand", [args[0], b.const(_i64([1, *node.attrs["shape"]]))])


@lowers("transpose")
def _transpose(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("Transpose", args, perm=[0, *(p + 1 for p in node.attrs["perm"])])


@lowers("slice")
def _slice(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    a = node.attrs
    bounds = [b.const(_i64(v)) for v in (a["start"], a["stop"], _batch_axis(a["axis"] % len(node.in_shape)), a["step"])]
    return b.op("Slice", [args[0], *bounds])


@lowers("mean", "sum")
def _reduce(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    axes = [_batch_axis(x % len(node.in_shape)) for x in node.attrs["axes"]]
    keep = int(node.attrs["keepdim"])
    if node.op == "mean":  # opset 17: ReduceMean takes axes as an attribute, ReduceSum as an input
        return b.op("ReduceMean", args, axes=axes, keepdims=keep)
    return b.op("ReduceSum", [args[0], b.const(_i64(axes))], keepdims=keep)


@lowers("matmul")
def _matmul(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("MatMul", args)


@lowers("mul", "sub", "div")
def _binary(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op(node.op.capitalize(), args)


_ONNX_UNARY = {"sigmoid": "Sigmoid", "tanh": "Tanh", "erf": "Erf", "exp": "Exp", "sqrt": "Sqrt",
               "hardswish": "HardSwish"}


@lowers(*_ONNX_UNARY)
def _unary(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op(_ONNX_UNARY[node.op], args)


@lowers("hardsigmoid")
def _hardsigmoid(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("HardSigmoid", args, alpha=1.0 / 6.0, beta=0.5)  # clip(x / 6 + 1/2, 0, 1) = relu6(x + 3) / 6


@lowers("silu")
def _silu(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("Mul", [args[0], b.op("Sigmoid", args)])


@lowers("gelu")
def _gelu(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    """Opset 17 has no Gelu: x * 0.5 * (1 + erf(x / sqrt 2)), or the tanh form."""
    x = args[0]
    if node.attrs["approximate"] == "tanh":
        cube = b.op("Mul", [b.op("Mul", [x, x]), x])
        inner = b.op("Add", [x, b.op("Mul", [cube, b.const(0.044715)])])
        phi = b.op("Tanh", [b.op("Mul", [inner, b.const(float(np.sqrt(2.0 / np.pi)))])])
    else:
        phi = b.op("Erf", [b.op("Mul", [x, b.const(float(1.0 / np.sqrt(2.0)))])])
    return b.op("Mul", [b.op("Mul", [x, b.const(0.5)]), b.op("Add", [phi, b.const(1.0)])])


@lowers("softmax")
def _softmax(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    return b.op("Softmax", args, axis=_batch_axis(node.attrs["axis"] % len(node.shape)))


@lowers("layernorm")
def _layernorm(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    norm, p = tuple(node.attrs["normalized_shape"]), node.params
    scale = b.const(_f32(p.get("weight", np.ones(norm))), hint=f"{node.id}.weight")
    inputs = [args[0], scale] + ([b.const(_f32(p["bias"]), hint=f"{node.id}.bias")] if "bias" in p else [])
    return b.op("LayerNormalization", inputs, axis=-len(norm), epsilon=node.attrs["eps"])


@lowers("upsample")
def _upsample(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    """``Resize``: torch's legacy nearest is asymmetric + floor; linear modes are pytorch_half_pixel
    or align_corners. A scale factor is passed as ``scales`` (torch maps coordinates with it),
    a size as ``sizes`` (the map uses in/out, as torch's)."""
    a = node.attrs
    if a["mode"] == "nearest":
        kw = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        kw = {"mode": "linear",
              "coordinate_transformation_mode": "align_corners" if a["align_corners"] else "pytorch_half_pixel"}
    if a["scale"] is not None:
        return b.op("Resize", [args[0], "", b.const(np.asarray([1.0, 1.0, *a["scale"]], np.float32))], **kw)
    lead = b.op("Slice", [b.op("Shape", args), b.const(_i64(0)), b.const(_i64(2))])
    sizes = b.op("Concat", [lead, b.const(_i64(a["size"]))], axis=0)
    return b.op("Resize", [args[0], "", "", sizes], **kw)


@lowers("synapse_filter")
def _synapse_filter(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    i = state[f"{node.id}.i"]  # i - i / tau + x, as the torch module
    state[f"{node.id}.i"] = b.op("Add", [b.op("Sub", [i, b.op("Div", [i, b.const(node.attrs["tau"])])]), args[0]])
    return state[f"{node.id}.i"]


@lowers("delay")
def _delay(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    buf = state[f"{node.id}.buffer"]  # [N, steps, ...]: the oldest value first
    one = b.const(np.array([1], np.int64))
    out = b.op("Gather", [buf, b.const(np.array(0, np.int64))], axis=1)
    rest = b.op("Slice", [buf, one, b.const(np.array([node.attrs["steps"]], np.int64)), one])
    state[f"{node.id}.buffer"] = b.op("Concat", [rest, b.op("Unsqueeze", [args[0], one])], axis=1)
    return out


@lowers("time_reduce")
def _time_reduce(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    # s = s + x; mean: s / count with count = count + 1 (as the torch module: sum in time order, then divide)
    total = state[f"{node.id}.sum"] = b.op("Add", [state[f"{node.id}.sum"], args[0]])
    if node.attrs["mode"] == "sum":
        return total
    count = state[f"{node.id}.count"] = b.op("Add", [state[f"{node.id}.count"], b.const(np.float32(1.0))])
    return b.op("Div", [total, count])


# --- neurons: the model's equations ----------------------------------------------------------------
def equations(node: Node) -> Any:
    """The ``Equations`` a neuron or integrator node runs (its reset kind and options)."""
    a = node.attrs
    model = get_model(a["model"])
    options = {k: a[k] for k in model.options}
    if node.op == "integrator":
        return model.equations(reset="none", **options)
    return model.equations(reset="soft" if "v_reset" in a and a["v_reset"] is None else "hard", **options)


def _uniforms(node: Node, eq: Any) -> tuple[Any, dict[str, float | np.ndarray]]:
    """The lowered equations and their uniforms' values (float64: scalars, or per-neuron arrays)."""
    low = lower_equations(eq)
    raw = {f"p_{k}": v for k, v in parameter_values(node).items()}
    values = {**raw, **evaluate(low.prologue, raw)}
    return low, {n: values[n] for n in low.uniforms}


def neuron_init(node: Node) -> list[tuple[str, float | list]]:
    """Each state's initial value (``v = v_reset``, ...): a float, or a nested list (per neuron)."""
    eq = equations(node)
    low = lower_equations(eq)
    raw = {f"p_{k}": v for k, v in parameter_values(node).items()}
    init = evaluate(low.init, raw)
    out = []
    for k in eq.states:
        v = init[f"s_{k}"]
        out.append((k, float(v) if np.ndim(v) == 0 else np.asarray(v, np.float32).tolist()))
    return out


@lowers("neuron", "integrator")
def _neuron_step(b: OnnxBuilder, node: Node, args: list[str], state: dict[str, str]) -> str:
    """The model's lowered charge, fire and reset blocks as ONNX nodes (spikes out, or ``v`` for
    integrators); uniforms (parameters, constants) are float32 initializers, per-neuron ones arrays
    broadcasting over the batch."""
    eq = equations(node)
    low, uniforms = _uniforms(node, eq)
    env = {n: b.const(v, hint=f"{node.id}.{n[2:] if n.startswith('p_') else n}") for n, v in uniforms.items()}
    env.update({"x": args[0], **{f"s_{k}": state[f"{node.id}.{k}"] for k in eq.states}})
    b.block(low.charge, env)
    if node.op == "integrator":
        out = env["s_v"]
    else:
        b.block(low.fire, env)
        out = b.op("Cast", [b.op("GreaterOrEqual", [env["z"], b.const(0.0)])], to=1)  # 1 = FLOAT
        env["spike"] = out
        b.block(low.reset, env)
    for k in eq.states:
        state[f"{node.id}.{k}"] = env[f"s_{k}"]
    return out
