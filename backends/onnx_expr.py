"""Emit ONNX nodes for sympy expressions (neuron equations), in the order the equation is written.

The ONNX counterpart of ``snnir.codegen.ExactOrderPrinter``: an ``Add`` is a left-to-right chain
of ``Add``/``Sub``, a ``Mul`` multiplies its numerator factors left to right and then divides by
each ``x**-1`` factor, ``-1 * x`` is ``Neg``. The torch backend prints the same trees the same
way, so both run the same float32 operations in the same order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sympy as sp

from snnir.neurons.model import sigmoid

_COMPARE = {sp.StrictGreaterThan: "Greater", sp.StrictLessThan: "Less", sp.GreaterThan: "GreaterOrEqual",
            sp.LessThan: "LessOrEqual"}


class OnnxBuilder:
    """Collects ONNX nodes and initializers; names are unique within one model.

    Example:
        >>> import sympy as sp
        >>> b = OnnxBuilder()
        >>> x = sp.Symbol("x", real=True)
        >>> out = b.expr(2 * x + 1, {"x": "input"})
        >>> [n.op_type for n in b.nodes]
        ['Mul', 'Add']
    """

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0
        self._consts: dict[tuple, str] = {}

    def fresh(self, hint: str) -> str:
        """A new tensor name; the ``:`` keeps it apart from graph inputs/outputs (node ids)."""
        self._count += 1
        return f"{hint}:{self._count}"

    def const(self, value: Any, hint: str = "c") -> str:
        """An initializer holding ``value``: numbers and float arrays as float32, integer arrays
        as they are (indices, shapes). Small constants of equal value share one initializer."""
        from onnx import numpy_helper

        arr = np.asarray(value)
        arr = arr if arr.dtype.kind in "iub" else arr.astype(np.float32)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 16 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._consts[key] = name
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = output or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.fresh(f"n_{op_type}"), **attrs))
        return out

    # --- sympy -> ONNX -----------------------------------------------------------------------------
    def expr(self, e: sp.Expr, env: dict[str, str]) -> str:
        """Emit ``e``; ``env`` maps symbol names to tensor names. Returns the result's name."""
        if isinstance(e, sp.Symbol):
            if e.name not in env:
                raise KeyError(f"ONNX export: symbol {e.name!r} has no value (known: {sorted(env)})")
            return env[e.name]
        if e.is_number:
            return self.const(float(e))
        if isinstance(e, sp.Add):
            return self._add(e, env)
        if isinstance(e, sp.Mul):
            return self._mul(e, env)
        if isinstance(e, sp.Pow):
            return self._pow(e, env)
        if isinstance(e, sp.exp):
            return self.op("Exp", [self.expr(e.args[0], env)])
        if isinstance(e, sigmoid):
            return self.op("Sigmoid", [self.expr(e.args[0], env)])
        if isinstance(e, sp.Piecewise):
            return self._piecewise(e, env)
        if type(e) in _COMPARE:
            return self.op(_COMPARE[type(e)], [self.expr(e.lhs, env), self.expr(e.rhs, env)])
        raise NotImplementedError(f"ONNX export: no ONNX form for {type(e).__name__} in {e}")

    def _add(self, e: sp.Add, env: dict[str, str]) -> str:
        acc: str | None = None
        for arg in e.args:
            neg = isinstance(arg, sp.Mul) and arg.args and arg.args[0] == -1
            term = (sp.Mul(*arg.args[1:], evaluate=False) if len(arg.args) > 2 else arg.args[1]) if neg else arg
            value = self.expr(term, env)
            if acc is None:
                acc = self.op("Neg", [value]) if neg else value
            else:
                acc = self.op("Sub" if neg else "Add", [acc, value])
        assert acc is not None
        return acc

    def _mul(self, e: sp.Mul, env: dict[str, str]) -> str:
        args = list(e.args)
        if args and args[0] == -1:
            rest = args[1:]
            inner = rest[0] if len(rest) == 1 else sp.Mul(*rest, evaluate=False)
            return self.op("Neg", [self.expr(inner, env)])
        num = [a for a in args if not (isinstance(a, sp.Pow) and a.exp == -1)]
        den = [a.base for a in args if isinstance(a, sp.Pow) and a.exp == -1]
        acc = self.expr(num[0], env) if num else self.const(1.0)
        for a in num[1:]:
            acc = self.op("Mul", [acc, self.expr(a, env)])
        for d in den:
            acc = self.op("Div", [acc, self.expr(d, env)])
        return acc

    def _piecewise(self, e: sp.Piecewise, env: dict[str, str]) -> str:
        """``Where`` chain: ``Piecewise((a, c1), (b, c2), (d, True))`` is ``c1 ? a : (c2 ? b : d)``."""
        (value, cond), rest = e.args[0], e.args[1:]
        if not rest:
            raise NotImplementedError(f"ONNX export: Piecewise {e} has no fallback branch")
        tail = self.expr(rest[0].expr, env) if len(rest) == 1 and rest[0].cond == sp.true else \
            self._piecewise(sp.Piecewise(*rest), env)
        # Where broadcasts: a number branch stays a scalar initializer
        return self.op("Where", [self.expr(cond, env), self.expr(value, env), tail])

    def _pow(self, e: sp.Pow, env: dict[str, str]) -> str:
        base = self.expr(e.base, env)
        if e.exp == -1:
            return self.op("Div", [self.const(1.0), base])
        if e.exp == sp.S.Half:
            return self.op("Sqrt", [base])
        if e.exp == 2:  # torch computes x**2 as x * x
            return self.op("Mul", [base, base])
        return self.op("Pow", [base, self.const(float(e.exp))])
