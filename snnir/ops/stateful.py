"""Stateful non-spiking ops: synaptic filters and delays. Both can close a recurrent loop."""

from __future__ import annotations

from typing import Any

import sympy as sp

from snnir.errors import ShapeError
from snnir.ops.registry import REQUIRED, OpSpec, Shape, register_op


def synapse_filter_update(i: sp.Symbol, x: sp.Symbol, tau: sp.Symbol) -> sp.Expr:
    """The ``synapse_filter`` op's update, ``i[t] = i[t-1] - i[t-1] / tau + x[t]`` (exporters read its
    coefficients with ``snnir.neurons.canonical.linear_update``)."""
    return i - i / tau + x


def _same(attrs: dict[str, Any], params: dict, in_shapes: list[Shape]) -> Shape:
    return in_shapes[0]


def _delay_shape(attrs: dict[str, Any], params: dict, in_shapes: list[Shape]) -> Shape:
    if not isinstance(attrs["steps"], int) or attrs["steps"] < 1:
        raise ShapeError(f"delay steps must be an int >= 1, got {attrs['steps']!r}")
    return in_shapes[0]


def _filter_shape(attrs: dict[str, Any], params: dict, in_shapes: list[Shape]) -> Shape:
    if not attrs["tau"] >= 1.0:
        raise ShapeError(f"synapse_filter tau must be >= 1 (a decay of 1/tau per step), got {attrs['tau']}")
    return in_shapes[0]


register_op(OpSpec("delay", _delay_shape, attrs={"steps": REQUIRED},
                   state=lambda attrs, shape, in_shape: {"buffer": (attrs["steps"], *shape)},
                   doc="y[t] = x[t - steps] (0 for t < steps)."))
register_op(OpSpec("synapse_filter", _filter_shape, attrs={"tau": REQUIRED},
                   state=lambda attrs, shape, in_shape: {"i": shape},
                   doc="Exponential synaptic trace: i[t] = i[t-1] - i[t-1] / tau + x[t]; y[t] = i[t]."))
