"""Fused CPU kernels for neuron layers: C generated from a ``StepProgram``, built once, cached.

Forward runs all T steps of a tile of neurons (up to ``TILE_MAX``; the caller picks the size) with
the state in L1-resident arrays: each step streams one contiguous run of every array (``omp simd``
over the tile, OpenMP over tiles), which keeps hardware prefetchers and the TLB happy where a
small block walking time at a stride of N would miss the cache on every access. The forward writes
only the spikes. The backward, per tile, first re-runs that tile's forward from the saved input and
initial state into a small local buffer of the charged values it reads (so no full-size voltage
sequence is ever allocated), then walks time in reverse, recomputing spikes and previous states
from them. Floating point follows
the equation's written order with ``-ffp-contract=off``, so the forward matches the per-step torch
path operation for operation. Builds are cached under ``$SNNIR_CACHE_DIR`` (default
``~/.cache/snnir``) by a hash of source, compiler and flags, so only the first use of a model pays
the compiler (well under a second).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import cache
from pathlib import Path

import sympy as sp
from sympy.codegen.ast import float32, float64, real
from sympy.printing.c import C99CodePrinter

from snnir.codegen import ExactOrderPrinter, rename
from snnir.neurons.adjoint import StepProgram

TILE_MAX = 1024
# -ffp-contract=off: no fused multiply-adds, so the float operations are exactly those written;
# -fno-math-errno: math calls have no side effects and vectorize (libmvec), results unchanged.
_FLAGS = ["-O3", "-fPIC", "-shared", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-march=native",
          "-std=c99"]
# glibc's libmvec has vector versions of these; declaring them lets `omp simd` loops that call them
# (EIF's exp) vectorize instead of calling the scalar function per element (within 4 ulp).
_VECTOR_MATH = ("exp", "log", "sin", "cos", "pow")
_SIMD_MATH = "\n".join(
    ["#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)"]
    + [f"#pragma omp declare simd notinbranch\n{t} {f}{s}({', '.join([t] * (2 if f == 'pow' else 1))});"
       for f in _VECTOR_MATH for t, s in (("float", "f"), ("double", ""))]
    + ["#define SNNIR_LIBMVEC 1", "#endif"])
_lock = threading.Lock()


class KernelBuildError(RuntimeError):
    """No C compiler, or the generated source failed to build."""


class _CPrinter(ExactOrderPrinter, C99CodePrinter):
    def __init__(self, dtype: str) -> None:
        super().__init__({"type_aliases": {real: float32 if dtype == "float" else float64}})
        self._suffix = "F" if dtype == "float" else ""

    def _print(self, expr, **kwargs):  # type: ignore[override]
        if isinstance(expr, sp.Expr) and expr.is_number and not expr.is_Boolean:
            value = float(expr)
            return f"({value!r}{self._suffix})" if "e" in repr(value) or "." in repr(value) else \
                f"({value!r}.0{self._suffix})"
        return super()._print(expr, **kwargs)

    def _print_Pow(self, expr):
        if expr.exp.is_Integer and 1 <= int(expr.exp) <= 4:  # v**2 -> v*v, as torch squares
            base = self._operand(expr.base)
            return "(" + "*".join([base] * int(expr.exp)) + ")"
        if expr.exp == -1:
            return f"((1.0{self._suffix})/{self.parenthesize(expr.base, 100)})"
        return super()._print_Pow(expr)

    def _print_sigmoid(self, expr):
        one = f"1.0{self._suffix}"
        return f"({one}/({one} + {self._print(sp.exp(-expr.args[0]))}))"


def _assign(printer: _CPrinter, name: str, expr: sp.Expr, declare: bool = False) -> str:
    return f"{'scalar_t ' if declare else ''}{name} = {printer.doprint(expr)};"


def _indent(lines: list[str], depth: int) -> str:
    return "\n".join(" " * (4 * depth) + line for line in lines)


def _per_state(template: str, states: tuple[str, ...]) -> list[str]:
    return [template.format(i=i, k=k) for i, k in enumerate(states)]


def generate_source(prog: StepProgram, dtype: str) -> str:
    """C source of the forward and backward kernels of ``prog`` for ``dtype`` ('float'/'double')."""
    pr = _CPrinter(dtype)
    S, kept, nh = prog.states, prog.kept, len(prog.kept)
    at = "t_ * N + b_ + j_"
    params = _indent([f"const scalar_t p_{n} = (scalar_t)prm[{i}];" for i, n in enumerate(prog.params)], 1)
    h_to_s = {sp.Symbol(f"s_{k}", real=True): sp.Symbol(f"h_{k}", real=True) for k in S}
    z_of_h = rename(prog.fire, h_to_s)
    spike_of = "const scalar_t spike = ({z} >= 0) ? 1 : 0;"

    # No branches in the vectorized loops: buffers that are not wanted are replaced by L1 scratch.
    fwd_ptrs = [f"scalar_t* hp{i}_ = h_store ? h_store + (t_ * {nh} + {i}) * N + b_ : hsc{i}_;"
                for i in range(nh)]
    fwd_ptrs += ["scalar_t* vp_ = v_seq ? v_seq + t_ * N + b_ : vsc_;", "scalar_t* sp_ = spikes + t_ * N + b_;"]
    # the backward's recompute: charged values into the tile buffer, spikes and v into scratch
    re_ptrs = [f"scalar_t* hp{i}_ = hb_ + (t_ * {nh} + {i}) * tile;" for i in range(nh)]
    re_ptrs += ["scalar_t* vp_ = vsc_;", "scalar_t* sp_ = ssc_;"]
    fwd = [f"scalar_t s_{k} = r_{k}[j_];" for k in S] + ["const scalar_t x = xt_[j_];"]
    fwd += [_assign(pr, f"s_{k}", e) for k, e in prog.charge]
    fwd += [f"hp{i}_[j_] = s_{k};" for i, k in enumerate(kept)]
    fwd += [_assign(pr, "z_", prog.fire, declare=True), spike_of.format(z="z_")]
    fwd += [_assign(pr, f"s_{k}", e) for k, e in prog.reset]
    fwd += ["vp_[j_] = s_v;", "sp_[j_] = spike;"] + [f"r_{k}[j_] = s_{k};" for k in S]
    fwd_scratch = [f"scalar_t hsc{i}_[{TILE_MAX}];" for i in range(nh)] + [f"scalar_t vsc_[{TILE_MAX}];"]

    def backward_body(first_step: bool) -> list[str]:
        body = [f"const scalar_t h_{k} = hb_[(t_ * {nh} + {i}) * tile + j_];" for i, k in enumerate(kept)]
        body += [f"const scalar_t g_{k} = rg_{k}[j_];" for k in S]
        body += [_assign(pr, "z_", z_of_h, declare=True), spike_of.format(z="z_"),
                 "const scalar_t g_spike = gs_[j_];"]
        if prog.needs_x:
            body.append(f"const scalar_t x = x_in[{at}];")
        if prog.needs_prev and first_step:  # the state before step 0 is the initial state
            body += _per_state("const scalar_t s_{k} = state0[{i} * N + b_ + j_];", S)
        elif prog.needs_prev:  # ... else reset(h(t-1), spike(t-1)), recomputed
            body += [" ".join(f"scalar_t s_{k};" for k in S), "{"]
            body += [f"    const scalar_t h_{k} = hb_[((t_ - 1) * {nh} + {i}) * tile + j_];"
                     for i, k in enumerate(kept)]
            body += ["    " + _assign(pr, "zp_", z_of_h, declare=True), "    " + spike_of.format(z="zp_")]
            body += ["    " + _assign(pr, f"s_{k}", e) for k, e in prog.prev_state] + ["}"]
        for name, e in prog.backward:
            if name.startswith("gp_"):
                body.append(f"acc_{name[3:]} += {pr.doprint(e)};")
            else:
                body.append(f"const scalar_t {name} = {pr.doprint(e)};")
        return body + [f"grad_x[{at}] = gx;"] + [f"rg_{k}[j_] = gprev_{k};" for k in S]

    bwd_later, bwd_first = backward_body(False), backward_body(True)

    def time_loop(ptrs: list[str]) -> str:
        """The forward over all steps of one tile, writing through ``ptrs`` (set per step)."""
        lines = ["for (int64_t t_ = 0; t_ < T; ++t_) {", "    const scalar_t* xt_ = x_in + t_ * N + b_;"]
        lines += ["    " + p for p in ptrs] + ["    #pragma omp simd", "    for (int64_t j_ = 0; j_ < nb_; ++j_) {"]
        return _indent(lines + ["        " + f for f in fwd] + ["    }", "}"], 2)

    learn = prog.learnable
    reduction = f" reduction(+:{', '.join(f'acc_{n}' for n in learn)})" if learn else ""
    block_loop = "for (int64_t j_ = 0; j_ < nb_; ++j_) "
    return f"""// generated by snnir from the equations of states {', '.join(S)}; do not edit
#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
typedef {dtype} scalar_t;
{_SIMD_MATH}

void snnir_forward(int64_t T, int64_t N, int64_t tile, const scalar_t* x_in, scalar_t* spikes, scalar_t* state,
                   scalar_t* h_store, scalar_t* v_seq, const double* prm, int nthreads) {{
{params}
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t b_ = 0; b_ < N; b_ += tile) {{
        const int64_t nb_ = (N - b_ < tile) ? N - b_ : tile;
{_indent([f"scalar_t r_{k}[{TILE_MAX}];" for k in S], 2)}
{_indent(_per_state(block_loop + "r_{k}[j_] = state[{i} * N + b_ + j_];", S), 2)}
{_indent(fwd_scratch, 2)}
{time_loop(fwd_ptrs)}
{_indent(_per_state(block_loop + "state[{i} * N + b_ + j_] = r_{k}[j_];", S), 2)}
    }}
}}

int snnir_backward(int64_t T, int64_t N, int64_t tile, const scalar_t* grad_spikes, int grad_is_scalar,
                   const scalar_t* grad_state, const scalar_t* x_in, const scalar_t* state0, scalar_t* grad_x,
                   scalar_t* grad_state0, double* grad_params, const double* prm, int nthreads) {{
{params}
    int failed = 0;
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t b_ = 0; b_ < N; b_ += tile) {{
        const int64_t nb_ = (N - b_ < tile) ? N - b_ : tile;
{_indent([f"scalar_t rg_{k}[{TILE_MAX}];" for k in S] + [f"double acc_{n} = 0;" for n in learn], 2)}
        /* recompute this tile's forward from the saved input: charged values into hb_ */
        scalar_t* hb_ = (scalar_t*)malloc(sizeof(scalar_t) * (size_t)(T * {max(nh, 1)} * tile));
        if (!hb_) {{ failed = 1; continue; }}
{_indent([f"scalar_t r_{k}[{TILE_MAX}];" for k in S], 2)}
{_indent(_per_state(block_loop + "r_{k}[j_] = state0[{i} * N + b_ + j_];", S), 2)}
{_indent(fwd_scratch + [f"scalar_t ssc_[{TILE_MAX}];"], 2)}
{time_loop(re_ptrs)}
{_indent(_per_state(block_loop + "rg_{k}[j_] = grad_state ? grad_state[{i} * N + b_ + j_] : 0;", S), 2)}
        scalar_t gsc_[{TILE_MAX}];
        if (grad_is_scalar) for (int64_t j_ = 0; j_ < nb_; ++j_) gsc_[j_] = grad_spikes[0];
        for (int64_t t_ = T - 1; t_ >= 0; --t_) {{
            const scalar_t* gs_ = grad_is_scalar ? gsc_ : grad_spikes + t_ * N + b_;
            if (t_ > 0) {{
                #pragma omp simd{reduction}
                for (int64_t j_ = 0; j_ < nb_; ++j_) {{
{_indent(bwd_later, 5)}
                }}
            }} else {{
                #pragma omp simd{reduction}
                for (int64_t j_ = 0; j_ < nb_; ++j_) {{
{_indent(bwd_first, 5)}
                }}
            }}
        }}
{_indent(_per_state(block_loop + "grad_state0[{i} * N + b_ + j_] = rg_{k}[j_];", S), 2)}
        free(hb_);
{_indent([f"grad_params[(b_ / tile) * {len(learn)} + {i}] = acc_{n};" for i, n in enumerate(learn)], 2)}
    }}
    return failed;
}}
"""


def _cache_dir() -> Path:
    root = os.environ.get("SNNIR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "snnir")
    path = Path(root) / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise KernelBuildError("no C compiler found (set CC, or install gcc); using the per-step torch path")
    return cc


@cache
def _host_tag() -> str:
    # -march=native code is only valid on this CPU: key the cache by its model and flags
    info = ""
    try:
        with open("/proc/cpuinfo") as f:
            info = "".join(line for line in f if line.startswith(("model name", "flags")))[:4096]
    except OSError:
        pass
    return f"{platform.machine()}|{sys.platform}|{info}"


def build(source: str) -> ctypes.CDLL:
    """Compile ``source`` to a shared library (cached by content hash) and load it."""
    cc = _compiler()
    key = hashlib.sha256("\0".join([source, cc, *_FLAGS, _host_tag()]).encode()).hexdigest()[:24]
    lib_path = _cache_dir() / f"snnir_{key}.so"
    with _lock:
        if not lib_path.exists():
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / "kernel.c"
                src.write_text(source)
                out = Path(tmp) / "kernel.so"
                try:
                    mvec = ["-lmvec"] if platform.machine() == "x86_64" and sys.platform.startswith("linux") else []
                    proc = subprocess.run([cc, *_FLAGS, str(src), "-o", str(out), *mvec, "-lm"], capture_output=True,
                                          text=True)
                except OSError as e:
                    raise KernelBuildError(f"cannot run the C compiler {cc!r}: {e}") from None
                if proc.returncode != 0:
                    raise KernelBuildError(f"building a fused kernel failed:\n{proc.stderr[-2000:]}")
                tmp_lib = lib_path.with_suffix(f".{os.getpid()}.tmp")
                shutil.copyfile(out, tmp_lib)
                os.replace(tmp_lib, lib_path)  # atomic: concurrent builders never see half a file
        return ctypes.CDLL(str(lib_path))


def build_neuron(source: str) -> ctypes.CDLL:
    """``build`` for a neuron kernel from ``generate_source``, with its entry points typed."""
    lib = build(source)
    i64, ptr, integer = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.snnir_forward.argtypes = [i64, i64, i64, ptr, ptr, ptr, ptr, ptr, ptr, integer]
    lib.snnir_forward.restype = None
    lib.snnir_backward.argtypes = [i64, i64, i64, ptr, integer, ptr, ptr, ptr, ptr, ptr, ptr, ptr, integer]
    lib.snnir_backward.restype = integer
    return lib
