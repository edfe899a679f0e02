"""Compile sympy expressions (neuron equations, surrogate derivatives) to torch functions.

Printing goes through sympy's ``TorchPrinter`` with three changes: powers use Python's ``**``
(``torch.pow`` rejects a float base), constant sub-expressions become float literals (so
``sqrt(pi)`` never reaches a torch function), and ``Piecewise`` branches that are plain numbers
are broadcast against a reference tensor so the result keeps its dtype (float64 gradchecks).
Expressions built with ``sympy.evaluate(False)`` keep their grouping, so the generated code does the
same floating-point operations, in the same order, as the equation reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache

import sympy as sp
import torch
from sympy.printing.pytorch import TorchPrinter

from snnir.codegen import ExactOrderPrinter
from snnir.neurons.model import sigmoid


class _SnnirTorchPrinter(ExactOrderPrinter, TorchPrinter):
    def __init__(self, ref: str) -> None:
        super().__init__({"strict": True})
        self._ref = ref

    def _print(self, expr, **kwargs):  # type: ignore[override]
        if isinstance(expr, sp.Expr) and expr.is_number and not expr.has(sp.nan, sp.zoo):
            value = float(expr)
            return f"({value!r})" if value < 0 else repr(value)
        return super()._print(expr, **kwargs)

    def _print_Pow(self, expr: sp.Pow) -> str:
        base = self._operand(expr.base)
        if expr.exp == -1:
            return f"(1.0/{base})"
        if expr.exp == sp.S.Half:
            return f"torch.sqrt({self._print(expr.base)})"
        if expr.exp.is_Integer:
            return f"({base}**{int(expr.exp)})"
        return f"({base}**({self._print(expr.exp)}))"

    # Python operators accept float-tensor mixes in either order; torch.gt(float, tensor) does not.
    def _print_Relational(self, expr: sp.core.relational.Relational) -> str:
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"

    def _print_And(self, expr: sp.And) -> str:
        return "(" + " & ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr: sp.Or) -> str:
        return "(" + " | ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr: sp.Not) -> str:
        return f"(~{self._print(expr.args[0])})"

    def _print_sigmoid(self, expr: sigmoid) -> str:
        return f"torch.sigmoid({self._print(expr.args[0])})"

    def _print_erfc(self, expr: sp.erfc) -> str:
        return f"torch.erfc({self._print(expr.args[0])})"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        (value, cond), rest = expr.args[0], expr.args[1:]
        tail = self._branch(rest[0].expr) if len(rest) == 1 and rest[0].cond == sp.true else (
            self._print_Piecewise(sp.Piecewise(*rest)) if rest else "0.0")
        return f"torch.where({self._print(cond)}, {self._branch(value)}, {tail})"

    def _branch(self, value: sp.Expr) -> str:
        if sp.Symbol(self._ref, real=True) in value.free_symbols:
            return self._print(value)
        return f"(torch.zeros_like({self._ref}) + {self.parenthesize(value, 0)})"


@cache
def compile_expr(expr: sp.Expr, args: Sequence[str], ref: str = "x") -> Callable[..., torch.Tensor]:
    """A torch function of ``args`` (names, positional or keyword) evaluating ``expr``.

    ``ref`` names a tensor argument whose dtype/device constant ``Piecewise`` branches take.

    Example:
        >>> import sympy as sp, torch
        >>> x = sp.Symbol("x", real=True)
        >>> f = compile_expr(2 * x + 1, ("x",))
        >>> f(torch.tensor([1.0]))
        tensor([3.])
    """
    symbols = [sp.Symbol(a, real=True) for a in args]
    unknown = expr.free_symbols - set(symbols)
    if unknown:
        raise ValueError(f"expression {expr} uses {sorted(map(str, unknown))}, not among {list(args)}")
    return sp.lambdify(symbols, expr, modules=[{"torch": torch, "math": math}],
                       printer=_SnnirTorchPrinter(ref), docstring_limit=0)


def source_of(fn: Callable) -> str:
    """The generated Python source of a compiled expression (for inspection and debugging)."""
    import inspect

    return inspect.getsource(fn)
