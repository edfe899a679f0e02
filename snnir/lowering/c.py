"""C printer of ``Block``s, in two dialects: C99 (CPU kernels) and CUDA C++ (GPU kernels).

One statement per operation, in the lowered order; temporaries are ``const`` locals. Types:
``scalar_t`` is the storage type (``float``, ``double``, CUDA's ``__half``/``__nv_bfloat16``),
``opmath_t`` the type arithmetic runs in (``float`` for the 16-bit types, as torch computes them;
else ``scalar_t``). With 16-bit storage every operand is widened and every result rounded back,
so each operation rounds once, as a torch op on such tensors does. Literals are ``opmath_t``
literals; math functions are the C library's (``expf``/``exp``), the same names on the device.

The loop templates (per device) are separate from the body. A template declares the variables a
block reads (``x``, ``s_<state>``, the uniforms ``p_*``/``q*``, ...) and prints the blocks of a
``LoweredStep`` with ``c_lines``. The CUDA backend calls ``device_functions`` to get the whole
per-step forward and backward as ``__host__ __device__`` functions (see its docstring for the
calling convention) and writes only its grid loop around them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .lower import Block, Operand
from .program import LoweredStep
from .table import FUNCTIONS

_TYPES = {"float": ("float", "float"), "double": ("double", "double"),
          "half": ("__half", "float"), "bfloat16": ("__nv_bfloat16", "float")}
# operations whose C spelling is a math function, float and double names
_MATH = {"exp": "exp", "log": "log", "sqrt": "sqrt", "abs": "fabs", "floor": "floor", "ceil": "ceil",
         "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos", "atan": "atan",
         "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "erf": "erf", "erfc": "erfc", "pow": "pow",
         "min": "fmin", "max": "fmax"}
_HELPERS = {"sigmoid": "snnir_sigmoid", "sign": "snnir_sign"}
_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
          "eq": "==", "ne": "!=", "and": "&", "or": "|"}


@dataclass(frozen=True)
class CDialect:
    """How C is spelled for one dialect (``'c99'`` or ``'cuda'``) and storage type.

    Example:
        >>> d = CDialect("cuda", "half")
        >>> d.scalar_t, d.opmath_t, d.literal(0.04), d.math("exp")
        ('__half', 'float', '0.04f', 'expf')
    """

    dialect: str = "c99"
    dtype: str = "float"

    def __post_init__(self) -> None:
        if self.dialect not in ("c99", "cuda"):
            raise ValueError(f"C dialect must be 'c99' or 'cuda', got {self.dialect!r}")
        if self.dtype not in _TYPES:
            raise ValueError(f"C dtype must be one of {sorted(_TYPES)}, got {self.dtype!r}")
        if self.dialect == "c99" and self.dtype in ("half", "bfloat16"):
            raise ValueError(f"{self.dtype} needs the CUDA dialect (C99 has no 16-bit float type)")

    @property
    def scalar_t(self) -> str:
        return _TYPES[self.dtype][0]

    @property
    def opmath_t(self) -> str:
        return _TYPES[self.dtype][1]

    @property
    def narrow(self) -> bool:
        """Storage narrower than arithmetic: operands are widened, results rounded."""
        return self.scalar_t != self.opmath_t

    @property
    def bool_t(self) -> str:
        return "bool" if self.dialect == "cuda" else "int"

    @property
    def qualifier(self) -> str:
        """What precedes a helper function definition."""
        return "__host__ __device__ __forceinline__" if self.dialect == "cuda" else "static inline"

    def literal(self, value: Operand) -> str:
        if isinstance(value, bool):
            return ("true" if value else "false") if self.dialect == "cuda" else str(int(value))
        assert isinstance(value, float)
        single = self.opmath_t == "float"
        if math.isnan(value) or math.isinf(value):
            if self.dialect == "cuda":
                name = "CUDART_NAN" if math.isnan(value) else "CUDART_INF"
                text = name + ("_F" if single else "")
            else:
                text = f"(({self.opmath_t})NAN)" if math.isnan(value) else f"(({self.opmath_t})INFINITY)"
            return f"(-{text})" if math.isinf(value) and value < 0 else text
        text = repr(value)
        if "e" not in text and "." not in text:
            text += ".0"
        text += "f" if single else ""
        return f"({text})" if value < 0 else text

    def spike(self, z: str) -> str:
        """The Heaviside of ``z`` as a ``scalar_t`` (``H(0) = 1``)."""
        one, zero = self.literal(1.0), self.literal(0.0)
        return f"(scalar_t)((({self.opmath_t}){z} >= {zero}) ? {one} : {zero})" if self.narrow else \
            f"(({z} >= {zero}) ? {one} : {zero})"

    def math(self, fn: str) -> str:
        if fn in _HELPERS:
            return f"{_HELPERS[fn]}_{self.opmath_t}"
        return _MATH[fn] + ("f" if self.opmath_t == "float" else "")


def includes(d: CDialect) -> list[str]:
    """The headers the printed code needs."""
    if d.dialect == "cuda":
        return ["#include <math_constants.h>", "#include <cuda_fp16.h>", "#include <cuda_bf16.h>"]
    return ["#include <math.h>", "#include <stdint.h>", "#include <stddef.h>", "#include <stdlib.h>"]


def prelude(d: CDialect, with_includes: bool = True) -> str:
    """The includes, the ``scalar_t``/``opmath_t`` typedefs and the helper functions blocks call
    (without includes: to put several dtypes' preludes in namespaces of one CUDA file)."""
    o = d.opmath_t
    head = includes(d) if with_includes else []
    one = d.literal(1.0)
    helpers = [f"typedef {d.scalar_t} scalar_t;", f"typedef {o} opmath_t;",
               f"{d.qualifier} {o} {d.math('sigmoid')}({o} a) {{ return {one} / ({one} + {d.math('exp')}(-a)); }}",
               f"{d.qualifier} {o} {d.math('sign')}({o} a) {{ return (a > 0) ? {one} : ((a < 0) ? -{one} : a); }}"]
    return "\n".join(head + helpers)


def _operand(d: CDialect, a: Operand, booleans: frozenset[str]) -> str:
    if not isinstance(a, str):
        return d.literal(a)
    return f"(({d.opmath_t}){a})" if d.narrow and a not in booleans else a


def _rhs(d: CDialect, fn: str, args: list[str]) -> str:
    if fn in _INFIX:
        return f"({args[0]} {_INFIX[fn]} {args[1]})"
    if fn == "neg":
        return f"(-{args[0]})"
    if fn == "not":
        return f"(!{args[0]})"
    if fn == "copy":
        return args[0]
    if fn == "where":
        return f"({args[0]} ? {args[1]} : {args[2]})"
    return f"{d.math(fn)}({', '.join(args)})"


def c_lines(block: Block, d: CDialect, declared: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """One C statement per operation. Names in ``declared`` (and the block's inputs) are assigned;
    every other name is declared at its first assignment (``const`` unless assigned again)."""
    counts: dict[str, int] = {}
    for op in block.ops:
        counts[op.out] = counts.get(op.out, 0) + 1
    known = set(declared) | set(block.inputs)
    lines = []
    for op in block.ops:
        missing = FUNCTIONS[op.fn].arity != len(op.args)
        if missing:
            raise ValueError(f"{op}: {op.fn} takes {FUNCTIONS[op.fn].arity} operands")
        rhs = _rhs(d, op.fn, [_operand(d, a, block.booleans) for a in op.args])
        is_bool = op.out in block.booleans
        if d.narrow and not is_bool:
            rhs = f"(scalar_t)({rhs})"
        if op.out in known:
            lines.append(f"{op.out} = {rhs};")
        else:
            known.add(op.out)
            kind = d.bool_t if is_bool else "scalar_t"
            lines.append(f"{'const ' if counts[op.out] == 1 else ''}{kind} {op.out} = {rhs};")
    return lines


def _indent(lines: list[str], depth: int = 1) -> list[str]:
    return ["    " * depth + line for line in lines]


def device_functions(step: LoweredStep, d: CDialect, name: str = "snnir") -> str:
    """The per-step forward and backward of ``step`` as two functions, for a kernel to call per
    neuron and step (CUDA: ``__host__ __device__``, so the very same body also builds as host code).

    ``S`` states, ``K`` kept values, ``U`` uniforms (``step.uniforms``, this neuron's values),
    ``L`` learnable parameters::

        scalar_t <name>_forward(scalar_t x, scalar_t* s, scalar_t* h, const opmath_t* u)

    ``s[S]``: the state before the step, overwritten by the state after it; ``h[K]``: receives the
    charged values the backward keeps (``step.kept``); returns the spike (0 or 1). ::

        opmath_t <name>_backward(scalar_t x, scalar_t g_spike, const scalar_t* h, const scalar_t* hp,
                                 const scalar_t* s0, int first, scalar_t* g, const opmath_t* u,
                                 opmath_t* gp)

    ``h[K]``: kept values of this step; ``hp[K]``: those of the previous step, or, when ``first``,
    ``s0[S]``, the state before step 0 (read only when ``step.needs_prev``); ``g[S]``: in
    ``dL/dstate`` after this step, out ``dL/dstate`` before it; ``gp[L]`` accumulates
    ``dL/dparam``; returns ``dL/dx``. ``x`` is read only when ``step.needs_x``.

    Example:
        >>> from snnir.neurons import LIF
        >>> from snnir.neurons.adjoint import step_program
        >>> from snnir.lowering import lower_step
        >>> from snnir.surrogate import ATan
        >>> eq = LIF().equations()
        >>> src = device_functions(lower_step(step_program(eq, ATan, False), eq), CDialect("cuda", "float"))
        >>> "__host__ __device__" in src and "snnir_backward" in src
        True
    """
    assert step.backward is not None and step.fire_h is not None and step.prev_state is not None
    S, K = step.states, step.kept
    q, o = d.qualifier, d.opmath_t
    declared = {f"s_{k}" for k in S}

    def uniforms(*blocks: Block) -> list[str]:
        read = {n for b in blocks for n in b.inputs}
        return [f"const {o} {n} = u[{i}];" for i, n in enumerate(step.uniforms) if n in read]

    fwd = uniforms(step.charge, step.fire, step.reset) + [f"scalar_t s_{k} = s[{i}];" for i, k in enumerate(S)]
    fwd += c_lines(step.charge, d, declared) + [f"h[{i}] = s_{k};" for i, k in enumerate(K)]
    fwd += c_lines(step.fire, d) + [f"const scalar_t spike = {d.spike('z')};"]
    fwd += c_lines(step.reset, d, declared)
    fwd += [f"s[{i}] = s_{k};" for i, k in enumerate(S)] + ["return spike;"]

    bwd = uniforms(step.fire_h, step.prev_state, step.backward)
    bwd += [f"const scalar_t h_{k} = h[{i}];" for i, k in enumerate(K)]
    bwd += [f"const scalar_t g_{k} = g[{i}];" for i, k in enumerate(S)]
    bwd += ["scalar_t spike;", "{", *_indent(c_lines(step.fire_h, d) + [f"spike = {d.spike('z')};"]), "}"]
    if step.needs_prev:  # the state before this step: s0, or the reset of the previous step
        bwd += [" ".join(f"scalar_t s_{k};" for k in S), "if (first) {"]
        bwd += _indent([f"s_{k} = s0[{i}];" for i, k in enumerate(S)]) + ["} else {"]
        inner = [f"const scalar_t h_{k} = hp[{i}];" for i, k in enumerate(K)]
        inner += c_lines(step.fire_h, d) + [f"const scalar_t spike = {d.spike('z')};"]
        inner += c_lines(step.prev_state, d, declared)
        bwd += _indent(inner) + ["}"]
    bwd += c_lines(step.backward, d)
    bwd += [f"g[{i}] = gprev_{k};" for i, k in enumerate(S)]
    bwd += [f"gp[{i}] += ({o})gp_{n};" for i, n in enumerate(step.learnable)] + [f"return ({o})gx;"]
    return "\n".join([
        f"// generated by snnir from the equations of {step.model}: states {', '.join(S)}; "
        f"uniforms {', '.join(step.uniforms) or '-'}",
        f"{q} scalar_t {name}_forward(scalar_t x, scalar_t* s, scalar_t* h, const {o}* u) {{",
        *_indent(["(void)x; (void)h; (void)u;", *fwd]), "}", "",
        f"{q} {o} {name}_backward(scalar_t x, scalar_t g_spike, const scalar_t* h, const scalar_t* hp,",
        f"        const scalar_t* s0, int first, scalar_t* g, const {o}* u, {o}* gp) {{",
        *_indent(["(void)x; (void)h; (void)hp; (void)s0; (void)first; (void)u; (void)gp;", *bwd]), "}", ""])
