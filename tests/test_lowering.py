"""The lowering layer (``snnir.lowering``): the operation order it fixes, its one function table
(every printer spells every entry), float64 evaluation of uniforms, the C/CUDA printers, and the
errors for what it cannot lower.
"""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import sympy as sp
import torch

import snnir
from snnir import nn as snn
from snnir.backends.onnx_expr import COMPOSED, ONNX_OPS
from snnir.backends.torch.lowered import namespace
from snnir.errors import GraphError
from snnir.lowering import (
    FUNCTIONS,
    NUMPY,
    CDialect,
    LoweringError,
    c_lines,
    device_functions,
    evaluate,
    lower_assignments,
    lower_equations,
    lower_step,
    prelude,
    python_function,
)
from snnir.lowering.c import includes
from snnir.lowering.python import namespace_covers
from snnir.neurons import registered_models
from snnir.neurons.adjoint import step_program
from snnir.surrogate import ATan, PiecewiseQuadratic

x, y, z, a = sp.symbols("x y z a", real=True)


def ops_of(expr, outputs=("out",)):
    block = lower_assignments([("out", expr)], list(outputs), "test", "t")
    return [(op.fn, op.args) for op in block.ops]


def test_written_order_is_kept():
    with sp.evaluate(False):
        e = x + (y - (x - a)) / z  # LIF's charge: four ops, in this order
    assert ops_of(e) == [("sub", ("x", "a")), ("sub", ("y", "t0")), ("div", ("t1", "z")), ("add", ("x", "t2"))]
    with sp.evaluate(False):
        e = x - y * a + z  # -1*b in an Add subtracts; a*b**-1 divides
    assert ops_of(e) == [("mul", ("y", "a")), ("sub", ("x", "t0")), ("add", ("t1", "z"))]
    with sp.evaluate(False):
        e1, e2 = -x * y, -(x * y)  # -1 * b negates b: (-x) * y, and -(x * y)
    assert ops_of(e1) == [("neg", ("x",)), ("mul", ("t0", "y"))]
    assert ops_of(e2) == [("mul", ("x", "y")), ("neg", ("t0",))]


def test_powers_follow_torch():
    assert ops_of(x**2) == [("mul", ("x", "x"))]
    assert ops_of(x**4) == [("mul", ("x", "x")), ("mul", ("t0", "x")), ("mul", ("t1", "x"))]
    assert ops_of(x**-2) == [("mul", ("x", "x")), ("div", (1.0, "t0"))]
    assert ops_of(sp.sqrt(x)) == [("sqrt", ("x",))]
    assert ops_of(x**2.5) == [("pow", ("x", 2.5))]
    assert ops_of(sp.Mul(sp.pi / 2, x, evaluate=False)) == [("mul", (math.pi / 2, "x"))]  # one float64 literal


def test_piecewise_minmax_and_logic():
    with sp.evaluate(False):
        pw = sp.Piecewise((x, sp.And(x > 0, y <= 1)), (y, sp.Not(sp.Eq(x, a))), (0, True))
    fns = [f for f, _ in ops_of(pw)]
    assert fns.count("where") == 2 and {"gt", "le", "and", "eq", "not"} <= set(fns)
    assert [f for f, _ in ops_of(sp.Min(x, y, z))] == ["min", "min"]
    # no otherwise branch: NaN where no condition holds (sympy's meaning)
    out = evaluate(lower_assignments([("out", sp.Piecewise((1.0, x > 0)))], ["out"], "t", "t"), {"x": -1.0})
    assert math.isnan(out["out"])


# one expression per table entry that is a function (the rest come from the tree structure)
FUNCTION_CASES = {
    "exp": sp.exp(x), "log": sp.log(x + 2), "sqrt": sp.sqrt(x + 2), "abs": sp.Abs(x), "sign": sp.sign(x),
    "floor": sp.floor(x), "ceil": sp.ceiling(x), "sin": sp.sin(x), "cos": sp.cos(x), "tan": sp.tan(x),
    "asin": sp.asin(x / 2), "acos": sp.acos(x / 2), "atan": sp.atan(x), "sinh": sp.sinh(x), "cosh": sp.cosh(x),
    "tanh": sp.tanh(x), "erf": sp.erf(x), "erfc": sp.erfc(x), "sigmoid": snnir.neurons.sigmoid(x),
    "pow": (x + 2) ** y, "min": sp.Min(x, y), "max": sp.Max(x, y),
    "where": sp.Piecewise((x, x < y), (y, True)), "ne": sp.Piecewise((x, sp.Ne(x, y)), (0, True)),
    "ge": sp.Piecewise((x, x >= y), (0, True)), "or": sp.Piecewise((x, sp.Or(x < 0, y < 0)), (0, True)),
}


@pytest.mark.parametrize("fn", sorted(FUNCTION_CASES))
def test_every_function_evaluates_like_sympy(fn):
    expr = FUNCTION_CASES[fn]
    block = lower_assignments([("out", expr)], ["out"], "test", "t")
    assert fn in {op.fn for op in block.ops}
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(-1.5, 1.5, 7), rng.uniform(-1.5, 1.5, 7)
    ref = np.array([float(expr.subs({x: xi, y: yi}).evalf()) for xi, yi in zip(xs, ys)])
    got = evaluate(block, {"x": xs, "y": ys})["out"]
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    fn_t = python_function(block, namespace(torch.float64), "f", ("x", "y"))
    np.testing.assert_allclose(fn_t(torch.from_numpy(xs), torch.from_numpy(ys))[0].numpy(), ref, rtol=1e-12,
                               atol=1e-14)


def test_every_printer_spells_the_whole_table():
    assert namespace_covers(NUMPY) == [] and namespace_covers(namespace(torch.float32)) == []
    assert set(FUNCTIONS) == set(ONNX_OPS) | set(COMPOSED)
    for dialect, dtype in [("c99", "float"), ("c99", "double"), ("cuda", "half"), ("cuda", "bfloat16")]:
        d = CDialect(dialect, dtype)
        for f in FUNCTIONS.values():
            args = tuple(["c"] + [1.0] * (f.arity - 1)) if f.name == "where" else tuple(["a", "b", "c"][:f.arity])
            block = snnir.lowering.Block(("a", "b", "c"), (snnir.lowering.Op("o", f.name, args),), ("o",),
                                         frozenset({"c", "o"} if f.kind == "bool" else {"c"}))
            (line,) = c_lines(block, d)
            assert line.endswith(";") and " o = " in line


def test_uniform_operations_are_hoisted_and_evaluated_in_float64():
    low = lower_equations(snnir.neurons.Izhikevich().equations())
    assert [(op.fn, op.args) for op in low.prologue.ops] == [("mul", ("p_dt", "p_a"))]  # dt * a, once per call
    assert "q0" in low.uniforms and not any(op.args == ("p_dt", "p_a") for op in low.charge.ops)
    plif = lower_equations(snnir.neurons.ParametricLIF().equations())
    assert [op.fn for op in plif.prologue.ops] == ["sigmoid"] and "p_k_0" in plif.uniforms
    # float64, per-neuron arrays too; division by zero is IEEE's
    out = evaluate(plif.prologue, {"p_w": np.array([0.0, 2.0])})["p_k_0"]
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-np.array([0.0, 2.0]))), rtol=0, atol=0)
    assert evaluate(lower_assignments([("o", 1 / x)], ["o"], "t", "t"), {"x": 0.0})["o"] == math.inf


def test_unsupported_function_is_named():
    class Bessel(snnir.NeuronModel):
        def charge(self, s, **options):
            return {"v": s.v + sp.besselj(0, s.x)}

    with pytest.raises(LoweringError, match="neuron model Bessel: function besselj"):
        snn.Neuron(Bessel())
    g = snnir.Graph()
    i = g.add_input((3,))
    g.add_output(g.add_node("neuron", [i], attrs={"model": "Bessel"}, id="n1"))
    with pytest.raises(GraphError, match="node 'n1'.*Bessel.*besselj"):
        g.validate()
    undefined = sp.Function("f")
    with pytest.raises(LoweringError, match="function f"):
        lower_assignments([("o", undefined(x))], ["o"], "demo", "t")


def _step(model_name, reset="hard", surrogate=ATan, learnable=()):
    eq = snnir.neurons.get_model(model_name).equations(reset=reset)
    return lower_step(step_program(eq, surrogate, False, learnable), eq)


BUILTINS = ["AdaptiveLIF", "CubaLIF", "EIF", "IF", "Izhikevich", "LIF", "ParametricLIF", "QIF", "Threshold"]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not installed")
def test_cuda_dialect_bodies_compile_with_nvcc(tmp_path):
    """Every built-in's per-step forward/backward in the CUDA dialect, for the four storage types,
    in one translation unit (the GPU backend calls these functions from its grid loop)."""
    assert set(BUILTINS) <= set(registered_models())
    parts = [*includes(CDialect("cuda"))]
    for dtype in ("float", "double", "half", "bfloat16"):
        d = CDialect("cuda", dtype)
        for name in BUILTINS:
            for reset, sg in (("hard", ATan), ("soft", PiecewiseQuadratic)):
                step = _step(name, reset, sg, ("w",) if name == "ParametricLIF" else ())
                S, K = len(step.states), max(1, len(step.kept))
                U, L = max(1, len(step.uniforms)), max(1, len(step.learnable))
                parts += [f"namespace {name}_{reset}_{dtype} {{", prelude(d, with_includes=False),
                          device_functions(step, d), "__global__ void run(const scalar_t* x, scalar_t* out, int n) {",
                          "  int j = blockIdx.x * blockDim.x + threadIdx.x; if (j >= n) return;",
                          f"  scalar_t s[{S}] = {{}}; scalar_t h[{K}]; scalar_t hp[{K}] = {{}};",
                          f"  scalar_t g[{S}] = {{}}; opmath_t u[{U}] = {{}}; opmath_t gp[{L}] = {{}};",
                          "  out[j] = snnir_forward(x[j], s, h, u);",
                          "  out[j] = (scalar_t)snnir_backward(x[j], out[j], h, hp, s, j == 0, g, u, gp);", "}", "}"]
    src = tmp_path / "bodies.cu"
    src.write_text("\n".join(parts))
    proc = subprocess.run(["nvcc", "-ptx", "-arch=sm_80", str(src), "-o", str(tmp_path / "bodies.ptx")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "bodies.ptx").stat().st_size > 1000


def test_c_dialects():
    assert CDialect("c99", "float").literal(0.04) == "0.04f" and CDialect("c99", "double").literal(-2.0) == "(-2.0)"
    assert CDialect("cuda", "half").math("exp") == "expf" and CDialect("cuda", "double").math("tanh") == "tanh"
    assert "CUDART_INF_F" in CDialect("cuda", "float").literal(math.inf)
    with pytest.raises(ValueError, match="half needs the CUDA dialect"):
        CDialect("c99", "half")
    src = device_functions(_step("LIF"), CDialect("c99", "double"))
    assert "static inline scalar_t snnir_forward" in src and "__device__" not in src
