"""The op registry: every op is declared once, with its attributes, parameters and shape rule.

Passes and backends look ops up here by name (never by ``isinstance`` chains), so a new op is one
``register_op`` call plus one lowering per backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from snnir.errors import GraphError

Shape = tuple[int, ...]
ShapeRule = Callable[[dict[str, Any], dict[str, Any], list[Shape]], Shape]
StateRule = Callable[[dict[str, Any], Shape, Shape], dict[str, Shape]]


@dataclass(frozen=True)
class OpSpec:
    """Declaration of one op.

    ``attrs`` maps each hyperparameter to its default (``REQUIRED`` if it has none); ``params``
    names the arrays the op carries, ``optional_params`` those it may carry (a bias). ``arity`` is
    the number of inputs, or ``None`` for "one or more" (add, cat). ``infer_shape(attrs, params,
    input_shapes)`` returns the per-sample output shape or raises ``ShapeError``. Stateful ops give
    ``state(attrs, out_shape, in_shape) -> {name: shape}``: the state a backend keeps between steps.
    Ops whose attributes depend on other attributes (a neuron's depend on its model) give
    ``normalize(attrs, params) -> attrs`` instead of a fixed ``attrs`` table (``params``: the
    node's arrays, e.g. a neuron parameter given per neuron is not also an attribute).
    """

    name: str
    infer_shape: ShapeRule
    attrs: dict[str, Any] = field(default_factory=dict)
    params: tuple[str, ...] = ()
    optional_params: tuple[str, ...] = ()
    arity: int | None = 1
    state: StateRule | None = None
    normalize: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    doc: str = ""

    @property
    def stateful(self) -> bool:
        return self.state is not None


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()
_OPS: dict[str, OpSpec] = {}


def register_op(spec: OpSpec) -> OpSpec:
    """Add ``spec`` to the registry; re-registering a name replaces it (useful for extensions)."""
    _OPS[spec.name] = spec
    return spec


def get_op(name: str) -> OpSpec:
    """The spec of op ``name``; raises ``GraphError`` listing the known ops if there is none."""
    try:
        return _OPS[name]
    except KeyError:
        raise GraphError(f"unknown op {name!r}; registered ops: {', '.join(sorted(_OPS))}") from None


def registered_ops() -> list[str]:
    """Names of all registered ops, sorted."""
    return sorted(_OPS)
