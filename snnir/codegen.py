"""Printing helpers shared by every backend's code generator.

Neuron equations are built with ``sympy.evaluate(False)``, so their trees keep the grouping the
author wrote. ``ExactOrderPrinter`` prints that grouping explicitly: each ``Add``/``Mul`` operand
is parenthesized and operands appear in tree order, ``a * b**-1`` prints as ``a / b`` and
``-1 * b`` as ``-(b)``. Generated code therefore performs the same floating-point operations in
the same order on every backend (and as a hand-written PyTorch expression would).
"""

from __future__ import annotations

import sympy as sp


class ExactOrderPrinter:
    """Mixin for sympy code printers (put it first in the bases)."""

    def _operand(self, e: sp.Expr) -> str:
        text = self._print(e)  # type: ignore[attr-defined]
        if e.is_Atom or isinstance(e, sp.Function) or text.startswith("("):
            return text
        return f"({text})"

    def _print_Add(self, expr: sp.Add, order=None) -> str:
        out = ""
        for i, arg in enumerate(expr.args):
            neg = isinstance(arg, sp.Mul) and arg.args and arg.args[0] == -1
            term = self._operand(sp.Mul(*arg.args[1:], evaluate=False) if neg and len(arg.args) > 2
                                 else arg.args[1] if neg else arg)
            if i == 0:
                out = f"-{term}" if neg else term
            else:
                out += f" - {term}" if neg else f" + {term}"
        return f"({out})"

    def _print_Mul(self, expr: sp.Mul) -> str:
        args = list(expr.args)
        if args and args[0] == -1:
            rest = args[1:]
            inner = self._operand(rest[0]) if len(rest) == 1 else self._print_Mul(sp.Mul(*rest, evaluate=False))
            return f"(-{inner})"
        num = [a for a in args if not (isinstance(a, sp.Pow) and a.exp == -1)]
        den = [a.base for a in args if isinstance(a, sp.Pow) and a.exp == -1]
        text = "*".join(self._operand(a) for a in num) if num else self._print(sp.Integer(1))  # type: ignore[attr-defined]
        for d in den:
            text = f"({text})/{self._operand(d)}"
        return f"({text})"


def rename(expr: sp.Expr, mapping: dict[sp.Symbol, sp.Expr]) -> sp.Expr:
    """``expr.xreplace(mapping)`` without re-evaluation, so the written grouping survives."""
    with sp.evaluate(False):
        return expr.xreplace(mapping)
