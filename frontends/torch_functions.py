"""How torch functions and tensor methods met during tracing become IR ops.

One mapper per function family, registered for every spelling (``torch.softmax``, ``F.softmax``,
``x.softmax``) with ``@handles``. A mapper gets the ``TraceContext``, the call's arguments (traced
tensors as ``Value``s, the rest as given) and returns the result's ``Value`` (or a ``Results``
tuple for ``chunk``/``split``). Dims are torch's: the context turns them into per-sample axes and
refuses those that touch the time or batch axes.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from snnir.frontends.values import (
    Results,
    TraceContext,
    Value,
    arith,
    constant,
    lead_words,
    matmul,
    split,
    transpose,
)

Handler = Callable[[TraceContext, list, dict], Any]
HANDLERS: dict[Any, Handler] = {}


def handles(*targets: Any) -> Callable[[Handler], Handler]:
    """Register ``fn`` for functions (objects) and tensor methods (names) ``targets``."""
    def wrap(fn: Handler) -> Handler:
        for t in targets:
            HANDLERS[t] = fn
        return fn
    return wrap


def bind(args: list, kwargs: dict, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    """torch-style arguments by name (positional first, then keywords, then defaults)."""
    out = dict(defaults)
    out.update(zip(names, args))
    out.update(kwargs)
    return out


def tensor(ctx: TraceContext, a: Any, what: str) -> Value:
    if isinstance(a, Value):
        return a
    if isinstance(a, Results) and getattr(a, "primary", False):
        raise ctx.error(f"{what} is the tuple a peer module returns; take its spikes with [0]")
    if hasattr(a, "why"):  # a peer module's output with no IR form (a neuron's state)
        raise ctx.error(a.why(what))
    if isinstance(a, torch.Tensor):
        return constant(a.detach().cpu().numpy())
    raise ctx.error(f"{what} must be a tensor, got {type(a).__name__} {a!r}")


def _is_number(a: Any) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def _dims(args: list) -> list:
    """``f(*dims)`` or ``f(dims)`` (torch accepts both for view, permute, ...)."""
    return list(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else list(args)


# --- activations ----------------------------------------------------------------------------------
@handles(F.relu, torch.relu, "relu", F.relu_, torch.relu_, "relu_")
def _relu(ctx, args, kwargs):
    return ctx.emit("relu", [tensor(ctx, args[0], "relu input")])


@handles(F.relu6, F.hardtanh, torch.clamp, torch.clip, "clamp", "clip")
def _clip(ctx, args, kwargs):
    target = ctx.target
    lo = args[1] if len(args) > 1 else kwargs.get("min", kwargs.get("min_val", 0.0 if target is F.relu6 else None))
    hi = args[2] if len(args) > 2 else kwargs.get("max", kwargs.get("max_val", 6.0 if target is F.relu6 else None))
    if target is F.hardtanh:
        lo, hi = (-1.0 if lo is None else lo), (1.0 if hi is None else hi)
    if isinstance(lo, Value) or isinstance(hi, Value):
        raise ctx.error("clamp with tensor bounds is not supported; give numbers")
    return ctx.emit("clip", [tensor(ctx, args[0], "clip input")],
                    {"min": None if lo is None else float(lo), "max": None if hi is None else float(hi)})


_UNARY = {
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", "sigmoid": "sigmoid",
    torch.tanh: "tanh", F.tanh: "tanh", "tanh": "tanh",
    torch.erf: "erf", torch.special.erf: "erf", "erf": "erf",
    torch.exp: "exp", "exp": "exp",
    F.silu: "silu", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid",
}


@handles(*_UNARY)
def _unary(ctx, args, kwargs):  # inplace=True: the caller rebinds the result, as out of place
    return ctx.emit(_UNARY[ctx.target], [tensor(ctx, args[0], f"{_UNARY[ctx.target]} input")])


@handles(F.gelu)
def _gelu(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "approximate"), {"approximate": "none"})
    return ctx.emit("gelu", [tensor(ctx, a["input"], "gelu input")], {"approximate": a["approximate"]})


@handles(F.softmax, torch.softmax, "softmax")
def _softmax(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "dim"), {"dim": None})
    x = tensor(ctx, a["input"], "softmax input")
    if a["dim"] is None:
        raise ctx.error("softmax without dim is ambiguous; give dim")
    if a.get("dtype") not in (None, torch.float32):
        raise ctx.error(f"softmax with dtype={a['dtype']} is not supported (snnir computes in the input's dtype)")
    return ctx.emit("softmax", [x], {"axis": ctx.axis(x, a["dim"], "softmax")})


@handles(F.layer_norm)
def _layer_norm(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "normalized_shape", "weight", "bias", "eps"),
             {"weight": None, "bias": None, "eps": 1e-5})
    params = {k: np.asarray(tensor(ctx, a[k], f"layer_norm {k}").const, np.float32)
              for k in ("weight", "bias") if a[k] is not None}
    if any(isinstance(a[k], Value) and not a[k].is_const for k in ("weight", "bias")):
        raise ctx.error("layer_norm weight and bias must be parameters, not computed tensors")
    return layer_norm(ctx, tensor(ctx, a["input"], "layer_norm input"), tuple(a["normalized_shape"]),
                      float(a["eps"]), params)


def layer_norm(ctx: TraceContext, x: Value, normalized_shape: tuple[int, ...], eps: float, params: dict) -> Value:
    return ctx.emit("layernorm", [x], {"normalized_shape": tuple(int(s) for s in normalized_shape), "eps": eps},
                    params)


@handles(F.dropout, F.dropout1d, F.dropout2d)
def _dropout(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "p", "training", "inplace"), {"p": 0.5, "training": True})
    x = tensor(ctx, a["input"], "dropout input")
    if not a["training"] or a["p"] == 0:
        return x
    return ctx.emit("dropout", [x], {"p": float(a["p"]), "channelwise": ctx.target is not F.dropout})


@handles("contiguous", "clone", torch.clone, "detach", torch.detach, "float", "to", "type_as")
def _identity(ctx, args, kwargs):
    x = tensor(ctx, args[0], f"{ctx.label} input")
    dtypes = [a for a in (*args[1:], kwargs.get("dtype")) if isinstance(a, torch.dtype)]
    if any(d != torch.float32 for d in dtypes):
        raise ctx.error(f"conversion to {dtypes[0]} is not supported (snnir graphs compute in float32)")
    return x


# --- shapes ---------------------------------------------------------------------------------------
def _lead_span(x: Value) -> range:
    return range(x.pos, x.pos + len(x.lead))


@handles(torch.flatten, "flatten")
def _flatten(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
    x = tensor(ctx, a["input"], "flatten input")
    start, end = a["start_dim"] % max(x.rank, 1), a["end_dim"] % max(x.rank, 1)
    lead = _lead_span(x)
    if start >= end:
        return x
    if start <= lead[-1] and end >= lead[0] if lead else False:
        if x.lead == ("T", "N") and (start, end) == (lead[0], lead[-1]):  # [T, N] -> [T*N]
            return Value(("T*N",), x.shape, x.node, x.const, x.pos)
        raise ctx.error(f"flatten({a['start_dim']}, {a['end_dim']}) would merge the batch axis into the features")
    before = end < x.pos
    ps, pe = (start, end) if before else (start - len(x.lead), end - len(x.lead))
    shape = (*x.shape[:ps], math.prod(x.shape[ps:pe + 1]), *x.shape[pe + 1:])
    return ctx.reshape(x, shape, suffix="", pos=x.pos - (pe - ps) if before else x.pos)


@handles("view", "reshape", torch.reshape)
def _view(ctx, args, kwargs):
    x = tensor(ctx, args[0], f"{ctx.label} input")
    target = _dims(args[1:]) if len(args) > 1 else list(kwargs.get("shape", ()))
    lead, shape = ctx.split_target(x, target, ctx.label)
    return _relead(ctx.reshape(x, shape, suffix=""), lead)


def _relead(v: Value, lead: tuple[str, ...]) -> Value:
    return v if v.is_const else Value(lead, v.shape, v.node, v.const, 0)


@handles("unflatten", torch.unflatten)
def _unflatten(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "dim", "sizes"), {})
    x = tensor(ctx, a["input"], "unflatten input")
    full = list(ctx.traced_shape(x))
    dim = a["dim"] % x.rank
    target = full[:dim] + list(a["sizes"]) + full[dim + 1:]
    lead, shape = ctx.split_target(x, target, "unflatten")
    return _relead(ctx.reshape(x, shape, suffix=""), lead)


def _insert_axis(ctx: TraceContext, x: Value, dim: int, what: str) -> tuple[int, int]:
    """(per-sample index, new pos) of a new axis at model-view ``dim`` (0..rank)."""
    if x.pos < dim < x.pos + len(x.lead):
        raise ctx.error(f"{what} puts an axis between the {lead_words(x.lead)}")
    if dim <= x.pos:
        return dim, x.pos + 1
    return dim - len(x.lead), x.pos


@handles("unsqueeze", torch.unsqueeze)
def _unsqueeze(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "dim"), {})
    x = tensor(ctx, a["input"], "unsqueeze input")
    if x.is_const:
        return constant(np.expand_dims(x.const, a["dim"]))
    axis, pos = _insert_axis(ctx, x, a["dim"] % (x.rank + 1), f"unsqueeze({a['dim']})")
    return ctx.reshape(x, (*x.shape[:axis], 1, *x.shape[axis:]), suffix="", pos=pos)


@handles("squeeze", torch.squeeze)
def _squeeze(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "dim"), {"dim": None})
    x = tensor(ctx, a["input"], "squeeze input")
    if a["dim"] is None:
        axes = [i for i, s in enumerate(x.shape) if s == 1]
    else:
        dims = a["dim"] if isinstance(a["dim"], (tuple, list)) else (a["dim"],)
        axes = [i for i in (ctx.axis(x, d, "squeeze") for d in dims) if x.shape[i] == 1]
    shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)
    return ctx.reshape(x, shape, suffix="", pos=x.pos - sum(1 for i in axes if i < x.pos))


@handles("permute", torch.permute)
def _permute(ctx, args, kwargs):
    x = tensor(ctx, args[0], "permute input")
    dims = _dims(args[1:]) if len(args) > 1 else list(kwargs["dims"])
    if len(dims) != x.rank:
        raise ctx.error(f"permute{tuple(dims)} needs {x.rank} dims")
    dims = [d % x.rank for d in dims]
    if x.is_const:
        return constant(np.transpose(x.const, dims))
    lead = list(_lead_span(x))
    at = [dims.index(d) for d in lead]
    if at != list(range(at[0], at[0] + len(lead))):
        raise ctx.error(f"permute{tuple(dims)} reorders or separates the {lead_words(x.lead)}; they must stay "
                        "together, in order")
    perm = [d if d < x.pos else d - len(lead) for d in dims if d not in lead]
    return transpose(ctx, x, tuple(perm), pos=at[0])


@handles("transpose", torch.transpose, "swapaxes", torch.swapaxes)
def _transpose(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "dim0", "dim1"), {})
    x = tensor(ctx, a["input"], "transpose input")
    if x.is_const:
        return constant(np.swapaxes(x.const, a["dim0"], a["dim1"]))
    i, j = ctx.axis(x, a["dim0"], "transpose"), ctx.axis(x, a["dim1"], "transpose")
    perm = list(range(len(x.shape)))
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(ctx, x, tuple(perm))


def getattr_tensor(ctx: TraceContext, x: Value, name: str) -> Value:
    """``x.T`` / ``x.mT`` (the others are answered by the proxy itself)."""
    if name == "mT":
        if x.is_const:
            return constant(np.swapaxes(x.const, -1, -2))
        i, j = ctx.axis(x, -2, "x.mT"), ctx.axis(x, -1, "x.mT")
        perm = list(range(len(x.shape)))
        perm[i], perm[j] = perm[j], perm[i]
        return transpose(ctx, x, tuple(perm))
    if name == "T" and x.is_const:
        return constant(np.asarray(x.const).T)
    raise ctx.error(f"tensor attribute {name!r} is not supported" +
                    ("; x.T reverses the batch axis too, use x.transpose(-2, -1)" if name == "T" else ""))


@handles("chunk", torch.chunk)
def _chunk(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "chunks", "dim"), {"dim": 0})
    x = tensor(ctx, a["input"], "chunk input")
    axis = ctx.axis(x, a["dim"], "chunk")
    size = x.shape[axis]
    step = math.ceil(size / a["chunks"])
    return split(ctx, x, axis, [(s, min(s + step, size)) for s in range(0, size, step)])


@handles("split", torch.split)
def _split_fn(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "split_size_or_sections", "dim"), {"dim": 0})
    x = tensor(ctx, a["input"], "split input")
    axis = ctx.axis(x, a["dim"], "split")
    size, sections = x.shape[axis], a["split_size_or_sections"]
    if isinstance(sections, int):
        return split(ctx, x, axis, [(s, min(s + sections, size)) for s in range(0, size, sections)])
    if sum(sections) != size:
        raise ctx.error(f"split sizes {list(sections)} do not add up to {size}")
    starts = np.cumsum([0, *sections])
    return split(ctx, x, axis, [(int(b), int(e)) for b, e in zip(starts[:-1], starts[1:])])


@handles("unbind", torch.unbind)
def _unbind(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "dim"), {"dim": 0})
    x = tensor(ctx, a["input"], "unbind input")
    axis = ctx.axis(x, a["dim"], "unbind")
    pieces = split(ctx, x, axis, [(i, i + 1) for i in range(x.shape[axis])])
    squeezed = (*x.shape[:axis], *x.shape[axis + 1:])
    pos = x.pos - 1 if axis < x.pos else x.pos
    return Results([lambda i=i: ctx.reshape(pieces.get(i), squeezed, pos=pos) for i in range(len(pieces))])


@handles(operator.getitem)
def _getitem(ctx, args, kwargs):
    x, index = args
    if isinstance(x, Results):
        return x.get(index)
    if isinstance(x, (tuple, list)):
        return x[index]
    x = tensor(ctx, x, "indexed value")
    if x.is_const:
        return constant(np.asarray(x.const)[index])
    index = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, (Value, torch.Tensor, list, bool)) for i in index):
        raise ctx.error("indexing with tensors, lists or bools is not supported; use slices and ints")
    explicit = sum(1 for i in index if i is not None and i is not Ellipsis)
    if index.count(Ellipsis) > 1 or explicit > x.rank:
        raise ctx.error(f"index {tuple(index)} does not fit a tensor of rank {x.rank}")
    if Ellipsis in index:
        e = index.index(Ellipsis)
        index[e:e + 1] = [slice(None)] * (x.rank - explicit)
    index += [slice(None)] * (x.rank - sum(1 for i in index if i is not None))
    lead = _lead_span(x)
    out, final, new_pos, dim = x, [], None, 0
    for i in index:  # slices keep every axis in place; ints and None are settled by the final reshape
        if dim in lead:
            if i is None:
                raise ctx.error(f"indexing with None between or before the {lead_words(x.lead)} is not supported")
            if i != slice(None):
                raise ctx.error(f"index {i!r} on dim {dim} selects along the {lead_words(x.lead)}; snnir ops act "
                                "per sample")
            new_pos = len(final) if new_pos is None else new_pos
            dim += 1
            continue
        if i is None:
            final.append(1)
            continue
        axis = dim if dim < x.pos else dim - len(lead)
        size = x.shape[axis]
        if isinstance(i, int):
            if not -size <= i < size:
                raise ctx.error(f"index {i} is out of range for size {size}")
            start, stop, step = i % size, i % size + 1, 1
        elif isinstance(i, slice):
            start, stop, step = i.indices(size)
            if step < 1 or stop <= start:
                raise ctx.error(f"slice {i} along an axis of size {size} is empty or reversed")
            final.append(len(range(start, stop, step)))
        else:
            raise ctx.error(f"index {i!r} is not supported")
        if (start, stop, step) != (0, size, 1):
            out = ctx.emit("slice", [out], {"axis": axis, "start": start, "stop": stop, "step": step}, suffix="")
        dim += 1
    return ctx.reshape(out, tuple(final), suffix="_index", pos=new_pos if lead else 0)


def _same_layout(ctx: TraceContext, values: list[Value], what: str) -> Value:
    tensors = [v for v in values if not v.is_const]
    if not tensors:
        raise ctx.error(f"{what} of constants only")
    ref = tensors[0]
    if any((v.lead, v.pos, len(v.shape)) != (ref.lead, ref.pos, len(ref.shape)) for v in tensors):
        raise ctx.error(f"{what} of tensors with different layouts {[tuple(ctx.traced_shape(v)) for v in tensors]}")
    return ref


def _tensor_list(ctx: TraceContext, seq: Any, what: str) -> list[Value]:
    items = [seq.get(i) for i in range(len(seq))] if isinstance(seq, Results) else list(seq)
    return [tensor(ctx, t, what) for t in items]


@handles(torch.cat, torch.concat, torch.concatenate)
def _cat(ctx, args, kwargs):
    a = bind(args, kwargs, ("tensors", "dim"), {"dim": 0})
    values = _tensor_list(ctx, a["tensors"], "cat input")
    ref = _same_layout(ctx, values, "cat")
    values = [ctx.sample_of_const(v, ref) if v.is_const else v for v in values]
    if len(values) == 1:
        return values[0]
    return ctx.emit("cat", values, {"axis": ctx.axis(ref, a["dim"], "cat")})


@handles(torch.stack)
def _stack(ctx, args, kwargs):
    a = bind(args, kwargs, ("tensors", "dim"), {"dim": 0})
    values = _tensor_list(ctx, a["tensors"], "stack input")
    ref = _same_layout(ctx, values, "stack")
    axis, pos = _insert_axis(ctx, ref, a["dim"] % (ref.rank + 1), f"stack(dim={a['dim']})")
    parts = [ctx.reshape(ctx.sample_of_const(v, ref) if v.is_const else v, (*ref.shape[:axis], 1, *ref.shape[axis:]),
                         suffix="_unsqueeze", pos=pos) for v in values]
    return ctx.emit("cat", parts, {"axis": axis}) if len(parts) > 1 else parts[0]


# --- arithmetic -----------------------------------------------------------------------------------
_ADD = {operator.add, torch.add, "add", operator.iadd}
_SUB = {operator.sub, torch.sub, "sub", operator.isub, torch.subtract}
_MUL = {operator.mul, torch.mul, "mul", operator.imul, torch.multiply}
_DIV = {operator.truediv, torch.div, "div", operator.itruediv, torch.true_divide, torch.divide}


@handles(*_ADD, *_SUB, *_MUL, *_DIV)
def _arith(ctx, args, kwargs):
    t = ctx.target
    kind = "add" if t in _ADD else "sub" if t in _SUB else "mul" if t in _MUL else "div"
    if kwargs.get("alpha", 1) != 1 or kwargs.get("rounding_mode") is not None:
        raise ctx.error(f"{ctx.label} with alpha/rounding_mode is not supported")
    a, b = args[0], args[1] if len(args) > 1 else kwargs["other"]
    return arith(ctx, kind, a, b)


@handles("expand", "expand_as")
def _expand(ctx, args, kwargs):
    x = tensor(ctx, args[0], "expand input")
    if ctx.target == "expand_as":
        target = list(ctx.traced_shape(tensor(ctx, args[1], "expand_as reference")))
    else:
        target = _dims(args[1:]) if len(args) > 1 else list(kwargs["size"])
    full = list(ctx.traced_shape(x))
    if len(target) != len(full):
        raise ctx.error(f"expand to {tuple(target)} changes the rank of {ctx._describe(x)}; unsqueeze first")
    target = [f if t == -1 else t for t, f in zip(target, full)]
    lead = set(_lead_span(x))
    if any(int(target[d]) != int(full[d]) for d in lead):
        raise ctx.error(f"expand to {tuple(target)} changes the {lead_words(x.lead)}")
    shape = tuple(int(t) for d, t in enumerate(target) if d not in lead)
    return x if shape == x.shape else ctx.emit("expand", [x], {"shape": shape})


@handles(operator.neg, torch.neg, "neg")
def _neg(ctx, args, kwargs):
    return ctx.emit("scale", [tensor(ctx, args[0], "neg input")], {"factor": -1.0})


@handles(operator.matmul, torch.matmul, "matmul", torch.bmm, "bmm", torch.mm, "mm")
def _matmul(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "other"), {})
    if "mat2" in kwargs:
        a["other"] = kwargs["mat2"]
    return matmul(ctx, tensor(ctx, a["input"], "matmul input"), tensor(ctx, a["other"], "matmul input"))


@handles(F.linear)
def _linear(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "weight", "bias"), {"bias": None})
    w, bias = tensor(ctx, a["weight"], "linear weight"), a["bias"]
    if not w.is_const or (isinstance(bias, Value) and not bias.is_const):
        raise ctx.error("F.linear with a computed weight or bias is not supported; use x @ w.T")
    params = {"weight": np.asarray(w.const, np.float32)}
    if bias is not None:
        params["bias"] = np.asarray(tensor(ctx, bias, "linear bias").const, np.float32)
    return ctx.emit("linear", [tensor(ctx, a["input"], "linear input")], {}, params)


@handles(F.conv1d, F.conv2d)
def _conv(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
             {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
    w, bias = tensor(ctx, a["weight"], "conv weight"), a["bias"]
    if not w.is_const or (isinstance(bias, Value) and not bias.is_const):
        raise ctx.error("convolution with a computed weight or bias is not supported")
    n = w.const.ndim - 2
    padding = a["padding"]
    if isinstance(padding, str):
        dil = (a["dilation"],) * n if isinstance(a["dilation"], int) else tuple(a["dilation"])
        totals = [d * (k - 1) for d, k in zip(dil, w.const.shape[2:])]
        if padding == "same" and any(t % 2 for t in totals):
            raise ctx.error("padding='same' with an even kernel pads asymmetrically; give explicit padding")
        padding = 0 if padding == "valid" else tuple(t // 2 for t in totals)
    params = {"weight": np.asarray(w.const, np.float32)}
    if bias is not None:
        params["bias"] = np.asarray(tensor(ctx, bias, "conv bias").const, np.float32)
    attrs = {"stride": a["stride"], "padding": padding, "dilation": a["dilation"], "groups": a["groups"]}
    return ctx.emit(f"conv{n}d", [tensor(ctx, a["input"], "conv input")], attrs, params)


@handles(F.batch_norm)
def _batch_norm(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
             {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5})
    if a["training"] or a["running_mean"] is None:
        raise ctx.error("F.batch_norm in training mode (batch statistics) has no IR form; trace in eval mode "
                        "or use nn.BatchNorm modules")
    params = {}
    for k in ("running_mean", "running_var", "weight", "bias"):
        if a[k] is not None:
            v = tensor(ctx, a[k], f"batch_norm {k}")
            if not v.is_const:
                raise ctx.error(f"batch_norm {k} must be a parameter or buffer")
            params[k] = np.asarray(v.const, np.float32)
    return ctx.emit("batchnorm", [tensor(ctx, a["input"], "batch_norm input")],
                    {"eps": float(a["eps"]), "momentum": float(a["momentum"] or 0.1)}, params)


# --- reductions -----------------------------------------------------------------------------------
@handles(torch.mean, "mean", torch.sum, "sum")
def _reduce(ctx, args, kwargs):
    kind = "mean" if ctx.target in (torch.mean, "mean") else "sum"
    a = bind(args, kwargs, ("input", "dim", "keepdim"), {"dim": None, "keepdim": False})
    x = tensor(ctx, a["input"], f"{kind} input")
    if a.get("dtype") is not None:
        raise ctx.error(f"{kind} with dtype is not supported")
    if a["dim"] is None or a["dim"] == [] or a["dim"] == ():
        raise ctx.error(f"{kind} over all axes reduces the batch axis too; give the per-sample dims")
    dims = a["dim"] if isinstance(a["dim"], (tuple, list)) else (a["dim"],)
    over_time = [d for d in dims if ctx.is_time_dim(x, d)]
    axes = tuple(sorted({ctx.axis(x, d, kind) for d in dims if d not in over_time}))
    if over_time and a["keepdim"]:
        raise ctx.error(f"{kind} over the time axis (dim {over_time[0]}) with keepdim=True keeps a time axis of "
                        "size 1 to broadcast against the steps, which needs all steps at once; a graph runs one "
                        f"step at a time. Reduce without keepdim (x.{kind}(0)) and use the result per sample")
    if axes:
        pos = x.pos if a["keepdim"] else x.pos - sum(1 for i in axes if i < x.pos)
        x = ctx.emit(kind, [x], {"axes": axes, "keepdim": bool(a["keepdim"])}, pos=pos)
    if over_time:  # a running reduction over the steps so far; its final step is the model's value
        x = ctx.emit("time_reduce", [x], {"mode": kind}, lead=tuple(n for n in x.lead if n != "T"),
                     suffix="_time" if axes else "")
    return x


# --- pooling and resampling -----------------------------------------------------------------------
_MAXPOOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVGPOOL_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
_MAX_DEFAULTS = {"kernel_size": None, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}
_AVG_DEFAULTS = {"kernel_size": None, "stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True}
_POOLS = {
    F.max_pool1d: ("maxpool1d", _MAXPOOL_ARGS, _MAX_DEFAULTS),
    F.max_pool2d: ("maxpool2d", _MAXPOOL_ARGS, _MAX_DEFAULTS),
    F.avg_pool1d: ("avgpool1d", _AVGPOOL_ARGS, _AVG_DEFAULTS),
    F.avg_pool2d: ("avgpool2d", _AVGPOOL_ARGS, _AVG_DEFAULTS),
    F.adaptive_avg_pool1d: ("adaptive_avgpool1d", ("output_size",), {"output_size": None}),
    F.adaptive_avg_pool2d: ("adaptive_avgpool2d", ("output_size",), {"output_size": None}),
}


@handles(*_POOLS)
def _pool(ctx, args, kwargs):
    op, names, defaults = _POOLS[ctx.target]
    bound = dict(zip(names, args[1:]))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    if bound.get("return_indices") or bound.get("divisor_override"):
        raise ctx.error(f"{ctx.label} with return_indices/divisor_override is not supported")
    attrs = {k: bound.get(k, d) for k, d in defaults.items()}
    return ctx.emit(op, [tensor(ctx, args[0], f"{ctx.label} input")], attrs)


@handles(F.interpolate, F.upsample)
def _interpolate(ctx, args, kwargs):
    a = bind(args, kwargs, ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor",
                            "antialias"), {"size": None, "scale_factor": None, "mode": "nearest",
                                           "align_corners": None, "recompute_scale_factor": None,
                                           "antialias": False})
    x = tensor(ctx, a["input"], "interpolate input")
    return upsample(ctx, x, a["size"], a["scale_factor"], a["mode"], a["align_corners"],
                    bool(a["recompute_scale_factor"]), bool(a["antialias"]))


def upsample(ctx: TraceContext, x: Value, size: Any, scale_factor: Any, mode: str, align_corners: bool | None,
             recompute: bool = False, antialias: bool = False) -> Value:
    spatial = x.shape[1:]
    n = len(spatial)
    if mode not in ("nearest", "linear", "bilinear") or antialias:
        raise ctx.error(f"interpolate mode {mode!r}{' with antialias' if antialias else ''} is not supported "
                        "(nearest, linear, bilinear)")
    if (size is None) == (scale_factor is None):
        raise ctx.error("interpolate needs exactly one of size and scale_factor")
    scale = None
    if size is not None:
        out = tuple(int(s) for s in ((size,) * n if isinstance(size, int) else size))
    else:
        factors = tuple(float(s) for s in ((scale_factor,) * n if _is_number(scale_factor) else scale_factor))
        out = tuple(math.floor(s * f) for s, f in zip(spatial, factors))
        scale = None if recompute else factors
    attrs = {"size": out, "mode": mode, "scale": scale,
             "align_corners": None if mode == "nearest" else bool(align_corners)}
    return ctx.emit("upsample", [x], attrs)


# --- attention ------------------------------------------------------------------------------------
@handles(F.scaled_dot_product_attention)
def _sdpa(ctx, args, kwargs):
    a = bind(args, kwargs, ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"),
             {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False})
    if a["attn_mask"] is not None or a["is_causal"] or a["dropout_p"] or a["enable_gqa"]:
        raise ctx.error("scaled_dot_product_attention with a mask, is_causal, dropout or GQA is not supported")
    q, k, v = (tensor(ctx, a[n], f"attention {n}") for n in ("query", "key", "value"))
    scale = a["scale"] if a["scale"] is not None else 1.0 / math.sqrt(q.shape[-1])
    probs = attention_weights(ctx, q, k, scale)
    return matmul(ctx, probs, v)


def attention_weights(ctx: TraceContext, q: Value, k: Value, scale: float) -> Value:
    """softmax(q k^T * scale) over the last axis (keys)."""
    perm = list(range(len(k.shape)))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    scores = matmul(ctx, q, transpose(ctx, k, tuple(perm)))
    scores = ctx.emit("scale", [scores], {"factor": float(scale)}, suffix="_scale")
    return ctx.emit("softmax", [scores], {"axis": len(scores.shape) - 1}, suffix="_softmax")


def multi_head_attention(ctx: TraceContext, m: torch.nn.MultiheadAttention, args: list, kwargs: dict) -> Results:
    """``nn.MultiheadAttention`` (batch_first) decomposed: in-projections, per-head scaled dot-product
    attention, out-projection; the attention weights (averaged over heads unless told otherwise)
    are emitted only if the model uses them. The same arithmetic as torch's reference path."""
    a = bind(args, kwargs, ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
                            "average_attn_weights", "is_causal"),
             {"key_padding_mask": None, "need_weights": True, "attn_mask": None, "average_attn_weights": True,
              "is_causal": False})
    if not m.batch_first:
        raise ctx.error("nn.MultiheadAttention with batch_first=False puts the batch on dim 1; construct it with "
                        "batch_first=True (snnir keeps the batch axis first)")
    if a["key_padding_mask"] is not None or a["attn_mask"] is not None or a["is_causal"]:
        raise ctx.error("nn.MultiheadAttention with masks or is_causal is not supported")
    if m.bias_k is not None or m.add_zero_attn or (m.training and m.dropout > 0):
        raise ctx.error("nn.MultiheadAttention with add_bias_kv, add_zero_attn or training dropout is not supported")
    q, k, v = (tensor(ctx, a[n], f"attention {n}") for n in ("query", "key", "value"))
    e, h = m.embed_dim, m.num_heads
    d = e // h

    def weights(i: int) -> tuple[np.ndarray, np.ndarray | None]:
        if m.in_proj_weight is not None:
            w = m.in_proj_weight[i * e:(i + 1) * e]
        else:
            w = (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight)[i]
        b = None if m.in_proj_bias is None else m.in_proj_bias[i * e:(i + 1) * e]
        return w.detach().numpy().astype(np.float32), None if b is None else b.detach().numpy().astype(np.float32)

    heads = []
    base = ctx.name
    for i, (name, x) in enumerate(zip("qkv", (q, k, v))):
        w, b = weights(i)
        ctx.name = f"{base}_{name}"
        proj = ctx.emit("linear", [x], {}, {"weight": w, **({"bias": b} if b is not None else {})})
        length = proj.shape[0]
        heads.append(transpose(ctx, ctx.reshape(proj, (length, h, d)), (1, 0, 2)))  # (h, L, d)
    ctx.name = f"{base}_attn"
    probs = attention_weights(ctx, heads[0], heads[1], 1.0 / math.sqrt(d))  # (h, Lq, Lk)
    ctx.name = base
    out = matmul(ctx, probs, heads[2])  # (h, Lq, d)
    out = ctx.reshape(transpose(ctx, out, (1, 0, 2)), (out.shape[1], e))
    params = {"weight": m.out_proj.weight.detach().numpy().astype(np.float32)}
    if m.out_proj.bias is not None:
        params["bias"] = m.out_proj.bias.detach().numpy().astype(np.float32)
    out = ctx.emit("linear", [out], {}, params, suffix="_out")

    def attn_weights() -> Value | None:
        if not a["need_weights"]:
            return None
        ctx.name = f"{base}_weights"
        if a["average_attn_weights"]:
            return ctx.emit("mean", [probs], {"axes": (0,), "keepdim": False})
        return probs

    return Results([lambda: out, attn_weights])

