"""sympy assignments -> an exact-order list of elementary operations (``Block``).

The order of floating-point operations is the order the equation is written in, so that every
backend computes the same float values (bit for bit where the operations are IEEE-exact):

- an ``Add`` folds left over its operands in tree order; a term ``-1 * b`` subtracts ``b``
  (a leading one negates it);
- a ``Mul`` whose first factor is ``-1`` negates the product of the rest; otherwise it multiplies
  its factors left to right, then divides by the base of every ``b ** -1`` factor in turn
  (``a * b**-1`` is ``a / b``, not ``a * (1/b)``);
- ``b ** n`` for integer ``n`` in 2..4 is ``((b * b) * b) * b`` (as torch computes squares and
  cubes), ``b ** -n`` is ``1 / (that)``, ``b ** -1`` is ``1 / b``, ``b ** (1/2)`` is ``sqrt(b)``;
- a sub-tree without symbols (``pi / 2``) becomes one float64 literal;
- ``Piecewise`` becomes nested ``where`` (no branch left: NaN), relations and ``And``/``Or``/``Not``
  their boolean ops; ``Min``/``Max`` fold left.

Identical sub-trees within one assignment are computed once (their values are identical).
Anything else raises ``LoweringError`` naming the model and the function.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sympy as sp

from .table import BY_SYMPY, FUNCTIONS, LoweringError, supported

Operand = str | float | bool  # a variable name, or a literal
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Op:
    """``out = fn(*args)``: one elementary operation (``fn`` a key of ``FUNCTIONS``)."""

    out: str
    fn: str
    args: tuple[Operand, ...]

    def __str__(self) -> str:
        return f"{self.out} = {self.fn}({', '.join(map(str, self.args))})"


@dataclass(frozen=True)
class Block:
    """A straight-line sequence of ``Op``s.

    ``inputs``: the variables read before any assignment; ``outputs``: the variables whose final
    values the block produces (assigned names a caller reads afterwards); every other assigned
    name is a local temporary. ``booleans`` are the names that hold booleans.
    """

    inputs: tuple[str, ...]
    ops: tuple[Op, ...]
    outputs: tuple[str, ...]
    booleans: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:  # blocks key caches of compiled functions: hash once
        object.__setattr__(self, "_hash", hash((self.inputs, self.ops, self.outputs, self.booleans)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    def assigned(self) -> list[str]:
        """Every name assigned, in order of first assignment."""
        return list(dict.fromkeys(op.out for op in self.ops))

    def locals(self) -> list[str]:
        """Assigned names that are neither inputs nor outputs (temporaries)."""
        keep = {*self.inputs, *self.outputs}
        return [n for n in self.assigned() if n not in keep]

    def __str__(self) -> str:
        head = f"# in: {', '.join(self.inputs)}  out: {', '.join(self.outputs)}"
        return "\n".join([head, *map(str, self.ops)])


def check_name(name: str, who: str) -> str:
    if not _NAME.match(name):
        raise LoweringError(f"{who}: name {name!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*), so no "
                            "backend can print it")
    return name


class Lowerer:
    """Builds one ``Block`` from ordered assignments ``name <- sympy expression``.

    ``who`` names the model in errors; ``prefix`` starts the names of temporaries (unique per
    block, so blocks printed in one scope do not clash).

    Example:
        >>> import sympy as sp
        >>> v, x, tau = sp.symbols("v x tau", real=True)
        >>> with sp.evaluate(False):
        ...     e = v + (x - v) / tau
        >>> lw = Lowerer("LIF", "t")
        >>> lw.assign("v", e)
        >>> print(lw.block(outputs=["v"]))
        # in: x, v, tau  out: v
        t0 = sub(x, v)
        t1 = div(t0, tau)
        v = add(v, t1)
    """

    def __init__(self, who: str, prefix: str) -> None:
        self.who = who
        self.prefix = prefix
        self.ops: list[Op] = []
        self.booleans: set[str] = set()
        self._count = 0
        self._memo: dict[sp.Basic, Operand] = {}

    # --- statements --------------------------------------------------------------------------------
    def assign(self, target: str, expr: sp.Basic) -> None:
        """Append ``target <- expr`` (later statements see the new value of ``target``)."""
        check_name(target, self.who)
        self._memo = {}
        start = len(self.ops)
        value = self._lower(sp.sympify(expr))
        last = self.ops[-1] if len(self.ops) > start else None
        if last is not None and value == last.out and last.out.startswith(self.prefix):
            self.ops[-1] = Op(target, last.fn, last.args)  # write the root straight into the target
            if last.out in self.booleans:
                self.booleans.add(target)
        else:
            self.ops.append(Op(target, "copy", (value,)))
            if isinstance(value, bool) or value in self.booleans:
                self.booleans.add(target)

    def block(self, outputs: Sequence[str]) -> Block:
        """The block of the statements so far, producing ``outputs``."""
        inputs = block_inputs(self.ops)
        written = {op.out for op in self.ops}
        missing = [o for o in outputs if o not in written and o not in inputs]
        if missing:
            raise LoweringError(f"{self.who}: outputs {missing} are never assigned")
        return Block(inputs, tuple(self.ops), tuple(outputs), frozenset(self.booleans))

    # --- expressions -------------------------------------------------------------------------------
    def _emit(self, fn: str, *args: Operand) -> str:
        out = f"{self.prefix}{self._count}"
        self._count += 1
        self.ops.append(Op(out, fn, tuple(args)))
        if FUNCTIONS[fn].kind == "bool" or (fn == "copy" and (isinstance(args[0], bool) or args[0] in self.booleans)):
            self.booleans.add(out)
        return out

    def _lower(self, e: sp.Basic) -> Operand:
        if e in self._memo:
            return self._memo[e]
        value = self._lower_new(e)
        self._memo[e] = value
        return value

    def _lower_new(self, e: sp.Basic) -> Operand:
        if e is sp.true or e is sp.false:
            return bool(e)
        if isinstance(e, sp.Symbol):
            return check_name(e.name, self.who)
        if isinstance(e, sp.Expr) and e.is_number:
            return self._number(e)
        if isinstance(e, sp.Add):
            return self._add(e)
        if isinstance(e, sp.Mul):
            return self._mul(e)
        if isinstance(e, sp.Pow):
            return self._pow(e.base, e.exp)
        if isinstance(e, sp.Piecewise):
            return self._piecewise(e)
        fn = BY_SYMPY.get(type(e))
        if fn is None:
            raise LoweringError(f"{self.who}: function {type(e).__name__} (in {e}) is not supported by the "
                                f"lowering; it supports {', '.join(supported())}")
        args = [self._lower(a) for a in e.args]
        if len(args) != FUNCTIONS[fn].arity and FUNCTIONS[fn].arity == 2 and len(args) > 2:
            acc = args[0]
            for a in args[1:]:  # n-ary Min/Max/And/Or fold left
                acc = self._emit(fn, acc, a)
            return acc
        if len(args) != FUNCTIONS[fn].arity:
            raise LoweringError(f"{self.who}: {type(e).__name__} with {len(args)} arguments (in {e}) is not "
                                "supported by the lowering")
        return self._emit(fn, *args)

    def _number(self, e: sp.Expr) -> float:
        try:
            value = complex(e)
        except (TypeError, ValueError):
            raise LoweringError(f"{self.who}: cannot evaluate the constant {e}") from None
        if value.imag != 0:
            raise LoweringError(f"{self.who}: the constant {e} is not real")
        return float(value.real)

    @staticmethod
    def _negated(term: sp.Basic) -> sp.Basic | None:
        """``b`` if ``term`` is ``-1 * b`` (the form sympy gives ``-b``), else ``None``."""
        if isinstance(term, sp.Mul) and term.args and term.args[0] == -1:
            rest = term.args[1:]
            return rest[0] if len(rest) == 1 else sp.Mul(*rest, evaluate=False)
        return None

    def _add(self, e: sp.Add) -> Operand:
        acc: Operand | None = None
        for term in e.args:
            neg = self._negated(term)
            value = self._lower(term if neg is None else neg)
            if acc is None:
                acc = value if neg is None else self._emit("neg", value)
            else:
                acc = self._emit("add" if neg is None else "sub", acc, value)
        assert acc is not None
        return acc

    def _mul(self, e: sp.Mul) -> Operand:
        neg = self._negated(e)
        if neg is not None:
            return self._emit("neg", self._lower(neg))
        num = [a for a in e.args if not (isinstance(a, sp.Pow) and a.exp == -1)]
        den = [a.base for a in e.args if isinstance(a, sp.Pow) and a.exp == -1]
        acc = self._lower(num[0]) if num else 1.0
        for a in num[1:]:
            acc = self._emit("mul", acc, self._lower(a))
        for d in den:
            acc = self._emit("div", acc, self._lower(d))
        return acc

    def _pow(self, base: sp.Basic, exp: sp.Basic) -> Operand:
        if exp == -1:
            return self._emit("div", 1.0, self._lower(base))
        if exp == sp.S.Half:
            return self._emit("sqrt", self._lower(base))
        if exp == -sp.S.Half:
            return self._emit("div", 1.0, self._emit("sqrt", self._lower(base)))
        if exp.is_Integer and 0 <= abs(int(exp)) <= 4:
            n = abs(int(exp))
            if n == 0:
                return 1.0
            b = self._lower(base)
            acc: Operand = b
            for _ in range(n - 1):
                acc = self._emit("mul", acc, b)
            return self._emit("div", 1.0, acc) if int(exp) < 0 else acc
        return self._emit("pow", self._lower(base), self._lower(exp))

    def _piecewise(self, e: sp.Piecewise) -> Operand:
        pieces = list(e.args)
        if pieces and pieces[-1].cond is sp.true:
            acc = self._lower(pieces.pop().expr)
        else:
            acc = math.nan  # sympy: undefined where no condition holds
        for piece in reversed(pieces):
            acc = self._emit("where", self._lower(piece.cond), self._lower(piece.expr), acc)
        return acc


def lower_assignments(assignments: Iterable[tuple[str, sp.Basic]], outputs: Sequence[str], who: str,
                      prefix: str) -> Block:
    """``Block`` of the ordered ``assignments``, producing ``outputs`` (see ``Lowerer``)."""
    lw = Lowerer(who, prefix)
    for target, expr in assignments:
        lw.assign(target, expr)
    return lw.block(outputs)


def block_inputs(ops: Sequence[Op]) -> tuple[str, ...]:
    """The names ``ops`` read before assigning them, in order of first use."""
    inputs: list[str] = []
    written: set[str] = set()
    for op in ops:
        for a in op.args:
            if isinstance(a, str) and a not in written and a not in inputs:
                inputs.append(a)
        written.add(op.out)
    return tuple(inputs)


def hoist_uniform(blocks: dict[str, Block], uniform: Iterable[str], prefix: str = "q"
                  ) -> tuple[list[Op], dict[str, Block]]:
    """Move every real-valued operation whose operands are all uniform (parameters, literals, or
    results of such operations) out of ``blocks`` into one shared list: values computed once per
    call (in float64, then rounded to the compute type like any parameter). Comparisons and
    selections stay per step, so every uniform value is a real number.

    Identical hoisted operations (same function, same operands) share one name. A hoisted value
    that a block assigns to a non-temporary (an output, an input, or a name assigned twice) stays
    assigned in the block by a ``copy``. Returns ``(hoisted ops, blocks without them)``.
    """
    uniform_names = set(uniform)
    hoisted: list[Op] = []
    numbering: dict[tuple, str] = {}
    out_blocks = {}
    for key, block in blocks.items():
        rename: dict[str, str] = {}
        ops: list[Op] = []
        counts: dict[str, int] = {}
        for op in block.ops:
            counts[op.out] = counts.get(op.out, 0) + 1
        for op in block.ops:
            args = tuple(rename.get(a, a) if isinstance(a, str) else a for a in op.args)
            keep = op.fn == "copy" or FUNCTIONS[op.fn].kind == "bool" or op.fn == "where"
            if keep or not all(not isinstance(a, str) or a in uniform_names for a in args):
                ops.append(Op(op.out, op.fn, args))
                continue
            sig = (op.fn, args)
            if sig not in numbering:
                numbering[sig] = name = f"{prefix}{len(numbering)}"
                hoisted.append(Op(name, op.fn, args))
            name = numbering[sig]
            uniform_names.add(name)
            if op.out in block.outputs or op.out in block.inputs or counts[op.out] > 1:
                ops.append(Op(op.out, "copy", (name,)))
            else:
                rename[op.out] = name
        inputs = block_inputs(ops)
        booleans = block.booleans & {op.out for op in ops}
        out_blocks[key] = Block(inputs, tuple(ops), block.outputs, frozenset(booleans))
    return hoisted, out_blocks
