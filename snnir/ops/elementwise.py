"""Element-wise activations, broadcasting arithmetic, softmax and layer normalization.

The equations (``x`` one element, per-sample axes):

- ``sigmoid``: 1 / (1 + exp(-x));  ``tanh``;  ``erf``;  ``exp``;  ``sqrt``
- ``gelu``: x * Phi(x), with ``approximate="none"`` (Phi the normal CDF: 0.5 (1 + erf(x / sqrt 2)))
  or ``"tanh"`` (0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))))
- ``silu``: x * sigmoid(x);  ``hardswish``: x * relu6(x + 3) / 6;  ``hardsigmoid``: relu6(x + 3) / 6
- ``mul``/``sub``/``div``: two inputs of one per-sample rank, size-1 axes broadcast
- ``softmax``: exp(x_i) / sum_j exp(x_j) along ``axis``
- ``layernorm``: (x - mean) / sqrt(var + eps) * weight + bias, mean and (biased) variance over the
  trailing ``normalized_shape`` axes, as torch.nn.LayerNorm
"""

from __future__ import annotations

from snnir.errors import ShapeError
from snnir.ops.registry import REQUIRED, OpSpec, Shape, register_op
from snnir.ops.rules import MAX_RANK, Float, Int, Rule, declare_rules
from snnir.ops.rules import Shape as ShapeRule
from snnir.ops.tensor import broadcast_shapes

UNARY = {
    "sigmoid": "y = 1 / (1 + exp(-x)).",
    "tanh": "y = tanh(x).",
    "erf": "y = erf(x), the Gauss error function.",
    "exp": "y = exp(x).",
    "sqrt": "y = sqrt(x).",
    "silu": "y = x * sigmoid(x) (SiLU, swish).",
    "hardswish": "y = x * relu6(x + 3) / 6.",
    "hardsigmoid": "y = relu6(x + 3) / 6.",
}
BINARY = {"mul": "y = a * b", "sub": "y = a - b", "div": "y = a / b"}


def _passthrough(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    return in_shapes[0]


def _gelu_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    if attrs["approximate"] not in ("none", "tanh"):
        raise ShapeError(f"gelu approximate must be 'none' or 'tanh', got {attrs['approximate']!r}")
    return in_shapes[0]


def _binary(name: str):
    def infer(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
        return broadcast_shapes(in_shapes, name)
    return infer


def _softmax_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    if not isinstance(attrs["axis"], int) or not -len(shape) <= attrs["axis"] < len(shape):
        raise ShapeError(f"softmax axis {attrs['axis']!r} is out of range for a per-sample shape {shape}")
    return shape


def _layernorm_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    norm = tuple(attrs["normalized_shape"])
    if not norm or shape[len(shape) - len(norm):] != norm or len(norm) > len(shape):
        raise ShapeError(f"layernorm over the trailing axes {norm} does not fit the per-sample shape {shape}")
    for k in ("weight", "bias"):
        if k in params and tuple(params[k].shape) != norm:
            raise ShapeError(f"layernorm {k} has shape {tuple(params[k].shape)}, expected {norm}")
    return shape


for _name, _doc in UNARY.items():
    register_op(OpSpec(_name, _passthrough, doc=_doc))
register_op(OpSpec("gelu", _gelu_shape, attrs={"approximate": "none"},
                   doc="y = x * Phi(x); approximate='tanh' uses the tanh form of Phi (see the module doc)."))
for _name, _doc in BINARY.items():
    register_op(OpSpec(_name, _binary(_name), arity=2,
                       doc=f"{_doc}, inputs of one per-sample rank, size-1 axes broadcast."))
register_op(OpSpec("softmax", _softmax_shape, attrs={"axis": -1},
                   doc="y_i = exp(x_i) / sum_j exp(x_j) along per-sample ``axis``."))
register_op(OpSpec("layernorm", _layernorm_shape, attrs={"normalized_shape": REQUIRED, "eps": 1e-5},
                   optional_params=("weight", "bias"),
                   doc="Normalization over the trailing ``normalized_shape`` axes, as torch.nn.LayerNorm."))

declare_rules("gelu", {"approximate": Rule("'none' or 'tanh'", lambda v: v in ("none", "tanh"))})
declare_rules("softmax", {"axis": Int(-MAX_RANK, MAX_RANK)})
declare_rules("layernorm", {"normalized_shape": ShapeRule(), "eps": Float(0.0, lo_open=True)})
