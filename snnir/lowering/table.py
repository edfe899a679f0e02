"""The one table of elementary operations every code generator prints.

Each entry names an operation of the lowered form (``Op.fn``), its arity, whether it yields a
real number or a boolean, and the sympy classes that lower to it. The lowering (``lower.py``) maps
sympy trees onto these names only; every printer (torch, C/CUDA, ONNX, the float64 evaluator)
supplies one spelling per name, and a test checks that each printer covers the whole table.

Arithmetic (``add sub mul div neg``), integer powers and ``copy`` come from the tree structure;
the rest are functions. ``where(c, a, b)`` selects elementwise (sympy's ``Piecewise``);
``lt le gt ge eq ne`` compare, ``and or not`` combine comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from snnir.errors import GraphError
from snnir.neurons.model import sigmoid


class LoweringError(GraphError):
    """An expression uses something the lowering has no elementary operation for."""


@dataclass(frozen=True)
class Function:
    """One elementary operation: ``arity`` operands, result ``kind`` ('real' or 'bool')."""

    name: str
    arity: int
    kind: str = "real"
    sympy: tuple[type, ...] = ()
    doc: str = ""


def _table(*entries: Function) -> dict[str, Function]:
    return {f.name: f for f in entries}


FUNCTIONS: dict[str, Function] = _table(
    Function("copy", 1, doc="a := b"),
    Function("add", 2, doc="a + b"),
    Function("sub", 2, doc="a - b"),
    Function("mul", 2, doc="a * b"),
    Function("div", 2, doc="a / b"),
    Function("neg", 1, doc="-a"),
    Function("pow", 2, doc="a ** b (non-integer or large exponents; 2..4 are multiplications)"),
    Function("min", 2, sympy=(sp.Min,), doc="minimum (n-ary Min folds left)"),
    Function("max", 2, sympy=(sp.Max,), doc="maximum (n-ary Max folds left)"),
    Function("exp", 1, sympy=(sp.exp,)),
    Function("log", 1, sympy=(sp.log,), doc="natural logarithm"),
    Function("sqrt", 1, doc="a ** (1/2)"),
    Function("abs", 1, sympy=(sp.Abs,)),
    Function("sign", 1, sympy=(sp.sign,)),
    Function("floor", 1, sympy=(sp.floor,)),
    Function("ceil", 1, sympy=(sp.ceiling,)),
    Function("sin", 1, sympy=(sp.sin,)),
    Function("cos", 1, sympy=(sp.cos,)),
    Function("tan", 1, sympy=(sp.tan,)),
    Function("asin", 1, sympy=(sp.asin,)),
    Function("acos", 1, sympy=(sp.acos,)),
    Function("atan", 1, sympy=(sp.atan,)),
    Function("sinh", 1, sympy=(sp.sinh,)),
    Function("cosh", 1, sympy=(sp.cosh,)),
    Function("tanh", 1, sympy=(sp.tanh,)),
    Function("erf", 1, sympy=(sp.erf,)),
    Function("erfc", 1, sympy=(sp.erfc,)),
    Function("sigmoid", 1, sympy=(sigmoid,), doc="1 / (1 + exp(-a))"),
    Function("where", 3, doc="a if c else b, elementwise (Piecewise)"),
    Function("lt", 2, "bool", (sp.StrictLessThan,)),
    Function("le", 2, "bool", (sp.LessThan,)),
    Function("gt", 2, "bool", (sp.StrictGreaterThan,)),
    Function("ge", 2, "bool", (sp.GreaterThan,)),
    Function("eq", 2, "bool", (sp.Eq,)),
    Function("ne", 2, "bool", (sp.Ne,)),
    Function("and", 2, "bool", (sp.And,)),
    Function("or", 2, "bool", (sp.Or,)),
    Function("not", 1, "bool", (sp.Not,)),
)

# sympy class -> op name, for the function-like entries
BY_SYMPY: dict[type, str] = {cls: f.name for f in FUNCTIONS.values() for cls in f.sympy}


def supported() -> list[str]:
    """Names of the sympy functions the lowering accepts (for error messages and docs)."""
    return sorted({cls.__name__ for cls in BY_SYMPY} | {"Add", "Mul", "Pow", "Piecewise"})
