"""Python printer of ``Block``s, and the float64 evaluator of uniforms (numpy).

A block prints as a Python function of its inputs returning its outputs. Arithmetic and
comparisons are Python operators (so numbers, numpy arrays and torch tensors all work); every
other operation is ``F.<name>(...)`` on a *namespace* ``F`` given when the function is built:
``NUMPY`` here (floats and arrays, float64), a torch one in the torch backend. One printer serves
both, so the reference path, the constants and the exporters compute with the same operations.

Example:
    >>> import sympy as sp
    >>> from snnir.lowering.lower import lower_assignments
    >>> x = sp.Symbol("x", real=True)
    >>> block = lower_assignments([("y", sp.exp(-x) * 2)], ["y"], "demo", "t")
    >>> print(python_source(block, "f"))
    def f(_x):
        _t0 = -_x
        _t1 = F.exp(_t0)
        _y = 2.0 * _t1
        return (_y,)
    >>> evaluate(block, {"x": 0.0})
    {'y': 2.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from .lower import Block, Operand
from .table import FUNCTIONS

_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**",
           "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_CALLS = {"and": "and_", "or": "or_", "not": "not_"}  # Python keywords


def _var(name: str) -> str:
    """Variables print with a leading underscore: never a keyword, never the namespace ``F``."""
    return f"_{name}"


def _literal(a: Operand) -> str:
    if isinstance(a, str):
        return _var(a)
    if isinstance(a, bool):
        return repr(a)
    if isinstance(a, float):
        if math.isnan(a):
            return "F.nan"
        if math.isinf(a):
            return "F.inf" if a > 0 else "(-F.inf)"
    return repr(a) if a >= 0 else f"({a!r})"


def python_lines(block: Block) -> list[str]:
    """One Python statement per operation."""
    lines = []
    for op in block.ops:
        args = [_literal(a) for a in op.args]
        if op.fn in _BINARY:
            rhs = f"{args[0]} {_BINARY[op.fn]} {args[1]}"
        elif op.fn == "neg":
            rhs = f"-{args[0]}"
        elif op.fn == "copy":
            rhs = args[0]
        else:
            rhs = f"F.{_CALLS.get(op.fn, op.fn)}({', '.join(args)})"
        lines.append(f"{_var(op.out)} = {rhs}")
    return lines


def python_source(block: Block, name: str, inputs: tuple[str, ...] | None = None) -> str:
    """``def name(*inputs): ...; return (outputs,)`` for ``block`` (inputs default to the block's)."""
    inputs = block.inputs if inputs is None else inputs
    missing = [n for n in block.inputs if n not in inputs]
    if missing:
        raise ValueError(f"{name}: the block reads {missing}, which are not among the inputs {list(inputs)}")
    outs = ", ".join(map(_var, block.outputs))
    body = python_lines(block) + [f"return ({outs},)" if outs else "return ()"]
    return f"def {name}({', '.join(map(_var, inputs))}):\n" + "\n".join("    " + line for line in body)


def python_function(block: Block, namespace: Any, name: str = "block",
                    inputs: tuple[str, ...] | None = None) -> Callable[..., tuple]:
    """The compiled function of ``python_source`` with ``F`` bound to ``namespace``."""
    source = python_source(block, name, inputs)
    scope: dict[str, Any] = {"F": namespace}
    exec(compile(source, f"<snnir lowering: {name}>", "exec"), scope)  # generated from equations, not input
    fn = scope[name]
    fn.source = source
    return fn


_ERF = np.vectorize(math.erf, otypes=[np.float64])
_ERFC = np.vectorize(math.erfc, otypes=[np.float64])

# numpy float64 scalars and arrays (np.float64 divides by zero as IEEE does, where a float raises)
NUMPY = SimpleNamespace(
    nan=np.float64(math.nan), inf=np.float64(math.inf),
    exp=np.exp, log=np.log, sqrt=np.sqrt, abs=np.abs, sign=np.sign, floor=np.floor, ceil=np.ceil, sin=np.sin,
    cos=np.cos, tan=np.tan, asin=np.arcsin, acos=np.arccos, atan=np.arctan, sinh=np.sinh, cosh=np.cosh,
    tanh=np.tanh, erf=lambda a: _ERF(a)[()], erfc=lambda a: _ERFC(a)[()],
    sigmoid=lambda a: 1.0 / (1.0 + np.exp(-a)), min=np.minimum, max=np.maximum,
    where=lambda c, a, b: np.where(c, a, b)[()],
    and_=np.logical_and, or_=np.logical_or, not_=np.logical_not,
)


def namespace_covers(namespace: Any) -> list[str]:
    """Table entries a namespace lacks (a printer must spell every operation)."""
    return [f for f in FUNCTIONS if f not in _BINARY and f not in ("neg", "copy")
            and not hasattr(namespace, _CALLS.get(f, f))]


_COMPILED: dict[tuple[Block, int], Callable[..., tuple]] = {}


def evaluate(block: Block, values: Mapping[str, Any]) -> dict[str, float | np.ndarray]:
    """Run ``block`` on ``values`` in float64 (numpy); returns its outputs by name (floats for scalars).

    This is how uniforms (constants, initial values) are computed for every backend.
    """
    key = (block, id(NUMPY))
    if key not in _COMPILED:
        _COMPILED[key] = python_function(block, NUMPY, "evaluate")
    args = [np.asarray(values[n], np.float64)[()] for n in block.inputs]
    with np.errstate(all="ignore"):
        out = _COMPILED[key](*args)
    return {name: float(v) if np.ndim(v) == 0 else np.asarray(v, np.float64) for name, v in zip(block.outputs, out)}
