"""The ONNX printer: ONNX nodes for lowered ``Block``s (``snnir.lowering``), one node per operation.

Blocks list the operations in the order the equation is written (an ``Add`` folds left, ``a * b**-1``
divides, ``-1 * b`` negates), and the torch and C printers run the same list, so the float32
operations match one for one. Every entry of the lowering's function table has an ONNX spelling
here (``erfc`` is ``1 - Erf``, ``ne`` is ``Not(Equal)``; the rest are one ONNX op each).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snnir.lowering import Block

# lowering op -> ONNX op type
ONNX_OPS = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "neg": "Neg", "pow": "Pow", "min": "Min",
            "max": "Max", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs", "sign": "Sign", "floor": "Floor",
            "ceil": "Ceil", "sin": "Sin", "cos": "Cos", "tan": "Tan", "asin": "Asin", "acos": "Acos", "atan": "Atan",
            "sinh": "Sinh", "cosh": "Cosh", "tanh": "Tanh", "erf": "Erf", "sigmoid": "Sigmoid", "where": "Where",
            "lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual", "eq": "Equal", "and": "And",
            "or": "Or", "not": "Not"}
COMPOSED = ("copy", "erfc", "ne")  # no single ONNX op: an alias, 1 - Erf, Not(Equal)


class OnnxBuilder:
    """Collects ONNX nodes and initializers; names are unique within one model.

    Example:
        >>> import sympy as sp
        >>> from snnir.lowering import lower_assignments
        >>> x = sp.Symbol("x", real=True)
        >>> b = OnnxBuilder()
        >>> env = b.block(lower_assignments([("y", 2 * x + 1)], ["y"], "demo", "t"), {"x": "input"})
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

    # --- lowered blocks -> ONNX ------------------------------------------------------------------------
    def block(self, block: Block, env: dict[str, str]) -> dict[str, str]:
        """Emit ``block``; ``env`` maps the names it reads to tensor names and receives the names it
        assigns (returned too)."""
        for op in block.ops:
            args = []
            for a in op.args:
                if isinstance(a, str):
                    if a not in env:
                        raise KeyError(f"ONNX export: {a!r} has no value (known: {sorted(env)})")
                    args.append(env[a])
                elif isinstance(a, bool):
                    args.append(self.const(np.array(a)))
                else:
                    args.append(self.const(float(a)))
            if op.fn == "copy":
                env[op.out] = args[0]
            elif op.fn == "erfc":
                env[op.out] = self.op("Sub", [self.const(1.0), self.op("Erf", args)])
            elif op.fn == "ne":
                env[op.out] = self.op("Not", [self.op("Equal", args)])
            else:
                env[op.out] = self.op(ONNX_OPS[op.fn], args)
        return env
