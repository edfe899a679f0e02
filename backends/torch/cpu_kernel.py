"""Fused CPU kernels for neuron layers: the C99 loop template around the lowered step body.

The body (charge, fire, reset; the backward's adjoint and recompute) is printed by
``snnir.lowering`` (C99 dialect); this module only writes the loops around it, builds the source
once and caches the library.

Forward runs all T steps of a tile of neurons (up to ``TILE_MAX``; the caller picks the size) with
the state in L1-resident arrays: each step streams one contiguous run of every array (``omp simd``
over the tile, OpenMP over tiles), which keeps hardware prefetchers and the TLB happy where a
small block walking time at a stride of N would miss the cache on every access. The forward writes
only the spikes. The backward, per tile, first re-runs that tile's forward from the saved input and
initial state into a small local buffer of the charged values it reads (so no full-size voltage
sequence is ever allocated), then walks time in reverse, recomputing spikes and previous states
from them. Floating point follows the equation's written order with ``-ffp-contract=off``, so the
forward matches the per-step torch path operation for operation.

The kernel ABI (``snnir_forward`` / ``snnir_backward`` below): input ``[T, N]`` in memory order
(``N`` = batch x neurons, neuron ``n`` of a sample at ``n % M``; any dense layout of the caller's
tensor is such rows, see ``layout``), the initial state ``state0`` read at ``i * s0_row + n *
s0_col`` (``s0_col = 0``: one value per state, broadcast), the final state written as ``[S, N]``;
the uniforms in ``LoweredStep.uniforms`` order, each a scalar (``prm[i]``, float64) or, for the
names in ``per_neuron`` (a compile-time choice), a row of ``arrays[A, M]`` in the compute type;
with ``input_affine`` two more rows scale and shift the input (a BatchNorm inside the neuron
pass). Sequences (input, spikes, their gradients) are float32, float64, or bfloat16/float16
computed in float32 (``io_load``/``io_store``: exact widening, rounding to nearest even); states,
the voltage sequence and the arrays are in the compute type. Learnable-parameter gradients come
out per neuron, ``grad_learn[L, N]`` (float64, summed over time), for the caller to reduce over the
batch and the parameter's broadcast axes; ``grad_state0`` may be NULL when nobody asks for it. Builds are cached under
``$SNNIR_CACHE_DIR`` (default ``~/.cache/snnir``) by a hash of source, compiler and flags, so only
the first use of a configuration pays the compiler (well under a second).
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
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch

from snnir.lowering import CDialect, LoweredStep, c_lines, prelude

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


def _indent(lines: list[str], depth: int) -> str:
    return "\n".join(" " * (4 * depth) + line for line in lines)


def _per_state(template: str, states: tuple[str, ...]) -> list[str]:
    return [template.format(i=i, k=k) for i, k in enumerate(states)]


# Storage of the sequences a kernel reads and writes (input, spikes, their gradients) per torch
# dtype name: (C type, compute type, load/store definitions). 16-bit sequences are computed in
# float -- the states, the voltage sequence and the per-neuron arrays are float too -- so a
# bfloat16 / float16 kernel does exactly the float kernel's arithmetic on the widened input and
# rounds only what it stores (to nearest even, as torch does; NaN stays NaN).
_IO = {
    "float": ("float", "float", "#define io_load(v) (v)\n#define io_store(f) (f)"),
    "double": ("double", "double", "#define io_load(v) (v)\n#define io_store(f) (f)"),
    "bfloat16": ("uint16_t", "float", """typedef union { uint32_t u; float f; } snnir_bits_;
static inline float io_load(uint16_t v) { snnir_bits_ c; c.u = (uint32_t)v << 16; return c.f; }
static inline uint16_t io_store(float f) {
    snnir_bits_ c; c.f = f;
    const uint32_t rounded = (c.u + 0x7fffu + ((c.u >> 16) & 1u)) >> 16;
    return (uint16_t)(((c.u & 0x7fffffffu) > 0x7f800000u) ? 0x7fc0u : rounded);
}"""),
    "half": ("_Float16", "float", "#define io_load(v) ((float)(v))\n#define io_store(f) ((_Float16)(f))"),
}
IO_DTYPES = tuple(_IO)


def generate_source(step: LoweredStep, dtype: str, per_neuron: frozenset[str] = frozenset(),
                    input_affine: bool = False) -> str:
    """C source of the forward and backward kernels of ``step`` for sequences of ``dtype``
    ('float', 'double', 'bfloat16', 'half'; the last two computed in float); the uniforms named in
    ``per_neuron`` are read per neuron from ``arrays``, the others are scalars. ``input_affine``:
    the input is ``x * scale + shift`` with per-neuron ``scale``/``shift`` (the last two rows of
    ``arrays``): a BatchNorm applied inside the neuron pass; the input gradient is then the
    gradient of that affine output."""
    if dtype not in _IO:
        raise ValueError(f"kernel dtype must be one of {IO_DTYPES}, got {dtype!r}")
    io_t, compute, io_defs = _IO[dtype]
    d = CDialect("c99", compute)
    S, kept, nh = step.states, step.kept, len(step.kept)
    assert step.backward is not None and step.fire_h is not None and step.prev_state is not None
    unknown = set(per_neuron) - set(step.uniforms)
    if unknown:
        raise ValueError(f"{step.model}: per-neuron uniforms {sorted(unknown)} are not among {list(step.uniforms)}")
    at = "t_ * N + b_ + j_"
    arrays = [n for n in step.uniforms if n in per_neuron] + (["in_scale", "in_shift"] if input_affine else [])
    scalars = [f"const scalar_t {n} = (scalar_t)prm[{i}];" for i, n in enumerate(step.uniforms) if n not in per_neuron]
    # per-neuron uniforms: this tile's values in L1, loaded once per call
    tile_arrays = [f"scalar_t ua_{n}[{TILE_MAX}];" for n in arrays]
    if arrays:  # neuron b_ + j_ of a sample at (b_ + j_) % M: one division per tile, not one per neuron
        loads = " ".join(f"ua_{n}[j_] = arrays[{a} * M + m_];" for a, n in enumerate(arrays))
        tile_arrays.append(f"{{ int64_t m_ = b_ % M; for (int64_t j_ = 0; j_ < nb_; ++j_) {{ {loads} "
                           "if (++m_ == M) m_ = 0; } }")
    read_arrays = [f"const scalar_t {n} = ua_{n}[j_];" for n in arrays if n in per_neuron]

    def read_x(src: str) -> str:
        if input_affine:  # BatchNorm's y = x * a + b, in this order and without contraction, like torch's
            return f"const scalar_t x = (scalar_t)io_load({src}) * ua_in_scale[j_] + ua_in_shift[j_];"
        return f"const scalar_t x = (scalar_t)io_load({src});"

    declared = {f"s_{k}" for k in S}

    def spike(z: str) -> str:
        return f"const scalar_t spike = {d.spike(z)};"

    # No branches in the vectorized loops: buffers that are not wanted are replaced by L1 scratch.
    fwd_ptrs = [f"scalar_t* hp{i}_ = hsc{i}_;" for i in range(nh)]
    fwd_ptrs += ["scalar_t* vp_ = v_seq ? v_seq + t_ * N + b_ : vsc_;", "io_t* sp_ = spikes + t_ * N + b_;"]
    # the backward's recompute: charged values into the tile buffer, spikes and v into scratch
    re_ptrs = [f"scalar_t* hp{i}_ = hb_ + (t_ * {nh} + {i}) * tile;" for i in range(nh)]
    re_ptrs += ["scalar_t* vp_ = vsc_;", "io_t* sp_ = ssc_;"]
    fwd = read_arrays + [f"scalar_t s_{k} = r_{k}[j_];" for k in S] + [read_x("xt_[j_]")]
    fwd += c_lines(step.charge, d, declared)
    fwd += [f"hp{i}_[j_] = s_{k};" for i, k in enumerate(kept)]
    fwd += c_lines(step.fire, d) + [spike("z")] + c_lines(step.reset, d, declared)
    fwd += ["sp_[j_] = io_store(spike);", "vp_[j_] = s_v;"] + [f"r_{k}[j_] = s_{k};" for k in S]
    fwd_scratch = [f"scalar_t hsc{i}_[{TILE_MAX}];" for i in range(nh)] + [f"scalar_t vsc_[{TILE_MAX}];"]
    # the state before step 0: [S, N] rows, or one value per state broadcast to every neuron (s0_col = 0)
    s0_at = "state0[{i} * s0_row + (b_ + j_) * s0_col]"

    def backward_body(first_step: bool) -> list[str]:
        body = read_arrays + [f"const scalar_t h_{k} = hb_[(t_ * {nh} + {i}) * tile + j_];" for i, k in enumerate(kept)]
        body += [f"const scalar_t g_{k} = rg_{k}[j_];" for k in S]
        body += c_lines(step.fire_h, d) + [spike("z"), "const scalar_t g_spike = (scalar_t)io_load(gs_[j_]);"]
        if step.needs_x:
            body.append(read_x(f"x_in[{at}]"))
        if step.needs_prev and first_step:  # the state before step 0 is the initial state
            body += _per_state("const scalar_t s_{k} = " + s0_at + ";", S)
        elif step.needs_prev:  # ... else reset(h(t-1), spike(t-1)), recomputed
            body += [" ".join(f"scalar_t s_{k};" for k in S), "{"]
            inner = [f"const scalar_t h_{k} = hb_[((t_ - 1) * {nh} + {i}) * tile + j_];" for i, k in enumerate(kept)]
            inner += c_lines(step.fire_h, d) + [spike("z")] + c_lines(step.prev_state, d, declared)
            body += ["    " + line for line in inner] + ["}"]
        body += c_lines(step.backward, d)
        body += [f"acc_{n}[j_] += (double)gp_{n};" for n in step.learnable]
        return body + [f"grad_x[{at}] = io_store(gx);"] + [f"rg_{k}[j_] = gprev_{k};" for k in S]

    bwd_later, bwd_first = backward_body(False), backward_body(True)

    def time_loop(ptrs: list[str]) -> str:
        """The forward over all steps of one tile, writing through ``ptrs`` (set per step)."""
        lines = ["for (int64_t t_ = 0; t_ < T; ++t_) {", "    const io_t* xt_ = x_in + t_ * N + b_;"]
        lines += ["    " + p for p in ptrs] + ["    #pragma omp simd", "    for (int64_t j_ = 0; j_ < nb_; ++j_) {"]
        return _indent(lines + ["        " + f for f in fwd] + ["    }", "}"], 2)

    learn = step.learnable
    block_loop = "for (int64_t j_ = 0; j_ < nb_; ++j_) "
    load_state0 = _per_state(block_loop + "r_{k}[j_] = " + s0_at + ";", S)
    return f"""// generated by snnir from the equations of {step.model} (states {', '.join(S)}); do not edit
// uniforms: {', '.join(f"{n}{'[M]' if n in per_neuron else ''}" for n in step.uniforms) or '-'}
// sequences: {dtype}{'; input x * in_scale[M] + in_shift[M]' if input_affine else ''}
{prelude(d)}
{_SIMD_MATH}
typedef {io_t} io_t;
{io_defs}

void snnir_forward(int64_t T, int64_t N, int64_t M, int64_t tile, const io_t* x_in, io_t* spikes,
                   const scalar_t* state0, int64_t s0_row, int64_t s0_col, scalar_t* state, scalar_t* v_seq,
                   const double* prm, const scalar_t* arrays, int nthreads) {{
{_indent(scalars, 1)}
    (void)arrays; (void)M; (void)prm;
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t b_ = 0; b_ < N; b_ += tile) {{
        const int64_t nb_ = (N - b_ < tile) ? N - b_ : tile;
{_indent([f"scalar_t r_{k}[{TILE_MAX}];" for k in S], 2)}
{_indent(load_state0, 2)}
{_indent(fwd_scratch + tile_arrays, 2)}
{time_loop(fwd_ptrs)}
{_indent(_per_state(block_loop + "state[{i} * N + b_ + j_] = r_{k}[j_];", S), 2)}
    }}
}}

int snnir_backward(int64_t T, int64_t N, int64_t M, int64_t tile, const io_t* grad_spikes, int grad_is_scalar,
                   const scalar_t* grad_state, const io_t* x_in, const scalar_t* state0, int64_t s0_row,
                   int64_t s0_col, io_t* grad_x, scalar_t* grad_state0, double* grad_learn, const double* prm,
                   const scalar_t* arrays, int nthreads) {{
{_indent(scalars, 1)}
    (void)arrays; (void)M; (void)prm; (void)grad_learn;
    int failed = 0;
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t b_ = 0; b_ < N; b_ += tile) {{
        const int64_t nb_ = (N - b_ < tile) ? N - b_ : tile;
{_indent([f"scalar_t rg_{k}[{TILE_MAX}];" for k in S] + [f"double acc_{n}[{TILE_MAX}];" for n in learn], 2)}
{_indent([block_loop + f"acc_{n}[j_] = 0;" for n in learn], 2)}
        /* recompute this tile's forward from the saved input: charged values into hb_ */
        scalar_t* hb_ = (scalar_t*)malloc(sizeof(scalar_t) * (size_t)(T * {max(nh, 1)} * tile));
        if (!hb_) {{ failed = 1; continue; }}
{_indent([f"scalar_t r_{k}[{TILE_MAX}];" for k in S], 2)}
{_indent(load_state0, 2)}
{_indent(fwd_scratch + [f"io_t ssc_[{TILE_MAX}];"] + tile_arrays, 2)}
{time_loop(re_ptrs)}
{_indent(_per_state(block_loop + "rg_{k}[j_] = grad_state ? grad_state[{i} * N + b_ + j_] : 0;", S), 2)}
        io_t gsc_[{TILE_MAX}];
        if (grad_is_scalar) for (int64_t j_ = 0; j_ < nb_; ++j_) gsc_[j_] = grad_spikes[0];
        for (int64_t t_ = T - 1; t_ >= 0; --t_) {{
            const io_t* gs_ = grad_is_scalar ? gsc_ : grad_spikes + t_ * N + b_;
            if (t_ > 0) {{
                #pragma omp simd
                for (int64_t j_ = 0; j_ < nb_; ++j_) {{
{_indent(bwd_later, 5)}
                }}
            }} else {{
                #pragma omp simd
                for (int64_t j_ = 0; j_ < nb_; ++j_) {{
{_indent(bwd_first, 5)}
                }}
            }}
        }}
        if (grad_state0) {{
{_indent(_per_state(block_loop + "grad_state0[{i} * N + b_ + j_] = rg_{k}[j_];", S), 3)}
        }}
        free(hb_);
{_indent([block_loop + f"grad_learn[{i} * N + b_ + j_] = acc_{n}[j_];" for i, n in enumerate(learn)], 2)}
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


def compile_into(lib_path: Path, source: str, command: Callable[[Path, Path], list[str]], language: str,
                 error: type[Exception]) -> None:
    """Compile ``source`` with ``command(source_file, output_file)`` in a temporary directory and put
    the library at ``lib_path`` atomically (concurrent builders never see half a file); ``error``
    names a compiler that cannot run or fails. Shared by the kernel libraries and ``native_call``."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / ("kernel.c" if language == "C" else "kernel.cpp"), Path(tmp) / "kernel.so"
        src.write_text(source)
        cmd = command(src, out)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise error(f"cannot run the {language} compiler {cmd[0]!r}: {e}") from None
        if proc.returncode != 0:
            raise error(f"building a {language} kernel library failed:\n{proc.stderr[-2000:]}")
        tmp_lib = lib_path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        shutil.copyfile(out, tmp_lib)
        os.replace(tmp_lib, lib_path)


def build(source: str) -> ctypes.CDLL:
    """Compile ``source`` to a shared library (cached by content hash) and load it."""
    cc = _compiler()
    key = hashlib.sha256("\0".join([source, cc, *_FLAGS, _host_tag()]).encode()).hexdigest()[:24]
    lib_path = _cache_dir() / f"snnir_{key}.so"
    mvec = ["-lmvec"] if platform.machine() == "x86_64" and sys.platform.startswith("linux") else []
    with _lock:
        if not lib_path.exists():
            compile_into(lib_path, source, lambda src, out: [cc, *_FLAGS, str(src), "-o", str(out), *mvec, "-lm"], "C",
                         KernelBuildError)
        return ctypes.CDLL(str(lib_path))


class LazyLibrary:
    """A hand-written kernel library built on first use: ``get()`` returns the loaded ``CDLL`` with
    its entry points typed by ``declare(lib)``, or ``None`` (remembered) when it cannot be built, so
    the caller keeps torch's own op. Thread-safe. While ``torch.compile`` traces, ``get()`` is
    ``None`` too: a compiled graph cannot call a ``ctypes`` library (the caller's torch op is traced).

    Example:
        >>> lib = LazyLibrary("int snnir_answer(void) { return 42; }", lambda lib: None)
        >>> lib.get().snnir_answer() if lib.get() is not None else 42
        42
    """

    def __init__(self, source: str, declare: Callable[[ctypes.CDLL], None]) -> None:
        self.source, self.declare = source, declare
        self._lib: ctypes.CDLL | None = None
        self._failed = False
        self._lock = threading.Lock()

    def get(self) -> ctypes.CDLL | None:
        if torch.compiler.is_compiling():
            return None
        return self.load()

    def load(self) -> ctypes.CDLL | None:
        """``get()`` without the ``torch.compile`` check: for code that runs outside a traced
        graph even while one is compiled (custom ops' implementations and fake functions)."""
        if self._lib is None and not self._failed:
            with self._lock:
                if self._lib is None and not self._failed:
                    try:
                        lib = build(self.source)
                    except KernelBuildError:
                        self._failed = True
                        return None
                    self.declare(lib)
                    self._lib = lib
        return self._lib


def build_neuron(source: str) -> ctypes.CDLL:
    """``build`` for a neuron kernel from ``generate_source``, with its entry points typed."""
    lib = build(source)
    i64, ptr, integer = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.snnir_forward.argtypes = [i64, i64, i64, i64, ptr, ptr, ptr, i64, i64, ptr, ptr, ptr, ptr, integer]
    lib.snnir_forward.restype = None
    lib.snnir_backward.argtypes = [i64, i64, i64, i64, ptr, integer, ptr, ptr, ptr, i64, i64, ptr, ptr, ptr, ptr, ptr,
                                   integer]
    lib.snnir_backward.restype = integer
    return lib
