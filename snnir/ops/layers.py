"""Stateless ops: synapses (linear, conv), normalization, pooling, reshaping and arithmetic.

Shapes are per sample: no batch axis, no time axis. ``conv2d`` on a ``(C, H, W)`` input, ``linear``
on ``(..., in_features)``.
"""

from __future__ import annotations

import math
from typing import Any

from snnir.errors import ShapeError
from snnir.ops.registry import REQUIRED, OpSpec, Shape, register_op
from snnir.ops.rules import BOOL, Optional, Rule, declare_rules
from snnir.ops.rules import Shape as ShapeRule


def _ntuple(value: Any, n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) != n or not all(isinstance(v, int) for v in value):
        raise ShapeError(f"attribute {name}={value!r} must be an int or {n} ints")
    return value


def _window_out(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int:
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (math.ceil if ceil else math.floor)(span / stride) + 1
    # torch drops a last window that would start inside the right padding only
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _spatial(in_shape: Shape, ndim: int, op: str) -> tuple[int, tuple[int, ...]]:
    if len(in_shape) != ndim + 1:
        raise ShapeError(f"{op} expects a per-sample (channels, *spatial) input with {ndim} "
                         f"spatial axes, got shape {in_shape}")
    return in_shape[0], tuple(in_shape[1:])


def _windows(attrs: dict, ndim: int, sizes: tuple[int, ...], kernel: tuple[int, ...]) -> tuple[int, ...]:
    stride = _ntuple(attrs.get("stride") or kernel, ndim, "stride")
    pad = _ntuple(attrs.get("padding", 0), ndim, "padding")
    dil = _ntuple(attrs.get("dilation", 1), ndim, "dilation")
    ceil = bool(attrs.get("ceil_mode", False))
    out = tuple(_window_out(s, k, st, p, d, ceil) for s, k, st, p, d in zip(sizes, kernel, stride, pad, dil))
    if min(out) < 1:
        raise ShapeError(f"input spatial size {sizes} is too small for kernel {kernel} "
                         f"(stride {stride}, padding {pad}, dilation {dil})")
    return out


def _single(in_shapes: list[Shape]) -> Shape:
    return in_shapes[0]


def _linear_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    out_f, in_f = params["weight"].shape
    if not shape or shape[-1] != in_f:
        raise ShapeError(f"linear expects a last axis of {in_f} features, got input shape {shape}")
    if "bias" in params and params["bias"].shape != (out_f,):
        raise ShapeError(f"linear bias has shape {params['bias'].shape}, expected ({out_f},)")
    return (*shape[:-1], out_f)


def _make_conv(ndim: int) -> OpSpec:
    name = f"conv{ndim}d"

    def infer(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
        channels, sizes = _spatial(in_shapes[0], ndim, name)
        weight = params["weight"]
        if weight.ndim != ndim + 2:
            raise ShapeError(f"{name} weight must have {ndim + 2} axes, got shape {weight.shape}")
        groups = attrs["groups"]
        if channels != weight.shape[1] * groups:
            raise ShapeError(f"{name} expects {weight.shape[1] * groups} input channels, got {channels}")
        if "bias" in params and params["bias"].shape != (weight.shape[0],):
            raise ShapeError(f"{name} bias has shape {params['bias'].shape}, expected ({weight.shape[0]},)")
        attrs = {**attrs, "stride": attrs["stride"] or 1}
        return (weight.shape[0], *_windows(attrs, ndim, sizes, tuple(weight.shape[2:])))

    return OpSpec(name, infer, attrs={"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "quant": None},
                  params=("weight",), optional_params=("bias",),
                  doc=f"{ndim}-d cross-correlation with zero padding, as torch.nn.Conv{ndim}d.")


def _batchnorm_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    n = params["running_mean"].shape[0]
    if not shape or shape[0] != n:
        raise ShapeError(f"batchnorm over {n} channels got input shape {shape} (channels come first)")
    for name in ("running_var", "weight", "bias"):
        if name in params and params[name].shape != (n,):
            raise ShapeError(f"batchnorm {name} has shape {params[name].shape}, expected ({n},) like running_mean")
    return shape


def _make_pool(kind: str, ndim: int) -> OpSpec:
    name = f"{kind}pool{ndim}d"

    def infer(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
        channels, sizes = _spatial(in_shapes[0], ndim, name)
        kernel = _ntuple(attrs["kernel_size"], ndim, "kernel_size")
        return (channels, *_windows(attrs, ndim, sizes, kernel))

    attrs: dict[str, Any] = {"kernel_size": REQUIRED, "stride": None, "padding": 0, "ceil_mode": False}
    if kind == "max":
        attrs["dilation"] = 1
    else:
        attrs["count_include_pad"] = True
    return OpSpec(name, infer, attrs=attrs, doc=f"{kind} pooling over {ndim} spatial axes.")


def _make_adaptive_avgpool(ndim: int) -> OpSpec:
    name = f"adaptive_avgpool{ndim}d"

    def infer(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
        channels, sizes = _spatial(in_shapes[0], ndim, name)
        out = _ntuple(attrs["output_size"], ndim, "output_size")
        return (channels, *out)

    return OpSpec(name, infer, attrs={"output_size": REQUIRED},
                  doc="average pooling to a fixed output size, as torch.nn.AdaptiveAvgPool.")


_UPSAMPLE_MODES = {"nearest": (1, 2), "linear": (1,), "bilinear": (2,)}


def _upsample_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    size = tuple(attrs["size"])
    channels, sizes = _spatial(in_shapes[0], len(size), "upsample")
    mode = attrs["mode"]
    if mode not in _UPSAMPLE_MODES or len(size) not in _UPSAMPLE_MODES[mode]:
        raise ShapeError(f"upsample mode {mode!r} with {len(size)} spatial axes is not supported; modes: "
                         "nearest (1-d, 2-d), linear (1-d), bilinear (2-d)")
    if mode == "nearest" and attrs["align_corners"] is not None:
        raise ShapeError("upsample: align_corners applies to the linear modes only")
    scale = attrs["scale"]
    if scale is not None:
        if len(scale) != len(size) or any(s <= 0 for s in scale):
            raise ShapeError(f"upsample scale {scale} must be one positive factor per spatial axis")
        expected = tuple(math.floor(n * s) for n, s in zip(sizes, scale))
        if expected != size:
            raise ShapeError(f"upsample size {size} does not match input {sizes} times scale {scale}")
    if min(size) < 1:
        raise ShapeError(f"upsample output size {size} must be positive")
    return (channels, *size)


def _axis(axis: int, rank: int, what: str) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"{what} axis {axis} is out of range for a per-sample shape of rank {rank}")
    return axis % rank


def _flatten_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    if not shape:
        return (1,)
    start, end = _axis(attrs["start"], len(shape), "flatten"), _axis(attrs["end"], len(shape), "flatten")
    return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])


def _add_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    if len(set(in_shapes)) != 1:
        raise ShapeError(f"add needs inputs of one shape, got {in_shapes}")
    return in_shapes[0]


def _cat_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    rank = len(in_shapes[0])
    axis = _axis(attrs["axis"], rank, "cat")
    for s in in_shapes:
        if len(s) != rank or s[:axis] + s[axis + 1:] != in_shapes[0][:axis] + in_shapes[0][axis + 1:]:
            raise ShapeError(f"cat along axis {axis} needs shapes equal on the other axes, got {in_shapes}")
    return (*in_shapes[0][:axis], sum(s[axis] for s in in_shapes), *in_shapes[0][axis + 1:])


def _passthrough(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    return in_shapes[0]


register_op(OpSpec("input", lambda a, p, s: tuple(a["shape"]), attrs={"shape": REQUIRED}, arity=0,
                   doc="A graph input; `shape` is per sample."))
register_op(OpSpec("output", _passthrough, doc="A graph output."))
register_op(OpSpec("linear", _linear_shape, attrs={"quant": None}, params=("weight",), optional_params=("bias",),
                   doc="y = x W^T + b over the last axis, as torch.nn.Linear. ``quant`` (set by the "
                       "quantize pass): the weights are used on an integer grid (fake quantization)."))
for _n in (1, 2):
    register_op(_make_conv(_n))
    register_op(_make_pool("max", _n))
    register_op(_make_pool("avg", _n))
    register_op(_make_adaptive_avgpool(_n))
register_op(OpSpec("upsample", _upsample_shape,
                   attrs={"size": REQUIRED, "mode": "nearest", "align_corners": None, "scale": None},
                   doc="Resampling of the spatial axes to ``size`` (nearest, linear, bilinear; "
                       "``align_corners`` as torch). ``scale``, when given, fixes the coordinate map "
                       "(input = output / scale), as torch's ``scale_factor``; else input/output sizes do."))
register_op(OpSpec("batchnorm", _batchnorm_shape, attrs={"eps": 1e-5, "momentum": 0.1},
                   params=("running_mean", "running_var"), optional_params=("weight", "bias"),
                   doc="y = (x - mean) / sqrt(var + eps) * weight + bias over the channel axis (axis 0)."))
register_op(OpSpec("flatten", _flatten_shape, attrs={"start": 0, "end": -1},
                   doc="Merge per-sample axes start..end (inclusive) into one."))
register_op(OpSpec("dropout", _passthrough, attrs={"p": 0.5, "channelwise": False},
                   doc="Dropout in training, identity in evaluation; one mask for all time steps."))
register_op(OpSpec("relu", _passthrough, doc="y = max(x, 0)."))
register_op(OpSpec("add", _add_shape, arity=None, doc="Element-wise sum of inputs of one shape."))
register_op(OpSpec("cat", _cat_shape, attrs={"axis": REQUIRED}, arity=None,
                   doc="Concatenation along a per-sample axis."))
register_op(OpSpec("scale", _passthrough, attrs={"factor": REQUIRED}, doc="y = factor * x."))


def _affine_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    for name in ("weight", "bias"):
        p = params[name]
        if p.ndim > 1 or (p.ndim == 1 and (not shape or p.shape[0] != shape[0])):
            raise ShapeError(f"affine {name} of shape {p.shape} must be a scalar or one value per channel "
                             f"(axis 0 of input shape {shape})")
    return shape


def _constant_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    return tuple(params["value"].shape)


register_op(OpSpec("affine", _affine_shape, params=("weight", "bias"),
                   doc="y = x * weight + bias; weight/bias are scalars or per channel (axis 0)."))
register_op(OpSpec("constant", _constant_shape, params=("value",), arity=0,
                   doc="A per-sample constant (the same for every sample and step)."))


def _clip_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    lo, hi = attrs["min"], attrs["max"]
    if lo is not None and hi is not None and lo > hi:
        raise ShapeError(f"clip min {lo} is above max {hi}")
    return in_shapes[0]


register_op(OpSpec("clip", _clip_shape, attrs={"min": None, "max": None},
                   doc="y = min(max(x, min), max); ReLU6 is clip(0, 6). None leaves a side open."))


def _positive_factors(v) -> bool:
    return v is None or (isinstance(v, (tuple, list)) and 1 <= len(v) <= 2
                         and all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 2**31 for f in v))


declare_rules("upsample", {"size": ShapeRule(), "mode": Rule("'nearest', 'linear' or 'bilinear'",
                                                             lambda v: v in _UPSAMPLE_MODES),
                           "align_corners": Optional(BOOL),
                           "scale": Rule("None or one positive factor per spatial axis", _positive_factors)})
