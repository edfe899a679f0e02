"""The CUDA loop template: grid-stride kernels around the lowered per-step body.

The per-step forward and backward (charge, fire, reset; the adjoint with the surrogate
derivative) are printed by ``snnir.lowering.device_functions`` as ``__host__ __device__``
functions. This module writes only what goes around them, for one configuration and storage type:

- ``<name>_forward``: one thread per neuron (grid-stride over ``N`` = batch x neurons), the state
  in registers for all ``T`` steps; each thread loads ``FORWARD_CHUNK`` inputs ahead of computing
  them (the loads do not depend on the state, so they are in flight together). Writes the spikes,
  the final state and, when asked, the voltage after each step.
- ``<name>_backward``: backpropagation through time with recomputation. Pass 1 re-runs the forward
  from the initial state and stores the state at the start of every chunk of ``BACKWARD_CHUNK``
  steps (``[chunks - 1, S, N]``, a sixteenth of the sequence per state); pass 2 walks the chunks
  in reverse: it recomputes the chunk's charged values into registers from its checkpoint and runs
  the adjoint backwards over them. Nothing of size ``T x N`` is stored by the forward, which
  (as on the CPU) saves only its input and initial state; the backward reads the input twice.

The per-neuron work is itself a ``__host__ __device__`` function (``<name>_forward_neuron``,
``<name>_backward_neuron``) that the kernels call per neuron, so the very same template builds as
host code: with ``SNNIR_HOST_ONLY`` defined the kernels are left out and ``<name>_host_forward``
/ ``<name>_host_backward`` loop over the neurons on the CPU instead (the tests run them there).

Arithmetic and storage: ``storage_t`` is the tensors' type in memory (``float``, ``double``,
``__half``, ``__nv_bfloat16``); the step runs in ``scalar_t`` = ``float`` (``double`` for float64
tensors), the printed body of the C dialect for that type. A float16/bfloat16 kernel widens each
input as it loads it, keeps the state in float32 registers through all ``T`` steps of a call and
rounds only what it stores (spikes, which are 0 or 1 either way, voltages, the final state,
gradients): its spikes are those of the float32 kernel on the same 16-bit input, and its backward
runs in float32 too (no 16-bit overflow inside the surrogate derivative, gradients through time
accumulated in float32). Between calls the state is stored in the tensors' dtype. (The per-step
torch path on 16-bit tensors rounds after every operation instead, so the two differ by 16-bit
roundings.) Uniforms (parameters and the values computed from them once per call, in float64)
arrive as ``double`` kernel arguments; per-neuron ones as ``scalar_t`` rows of ``arrays[A, M]``
(neuron ``n`` reads column ``n % M``). Backward checkpoints are stored in ``scalar_t``, so the
recomputed forward is the forward; learnable-parameter gradients accumulate per neuron in
``scalar_t``.
"""

from __future__ import annotations

from snnir.lowering import CDialect, LoweredStep, device_functions, prelude

FORWARD_CHUNK = 8    # input loads in flight per thread in the forward
BACKWARD_CHUNK = 16  # steps recomputed into registers per checkpoint in the backward
BLOCK = 256          # threads per block (the launch bounds)

# torch dtype name -> (type in memory, C dialect the step is computed in)
DTYPES = {"float32": ("float", "float"), "float64": ("double", "double"), "float16": ("__half", "float"),
          "bfloat16": ("__nv_bfloat16", "float")}


def dialect(dtype: str) -> tuple[str, CDialect]:
    """``(storage type, CUDA dialect of the step)`` for a dtype name (``float32``, ``float16``,
    ``bfloat16``, ``float64``)."""
    try:
        storage, compute = DTYPES[dtype]
    except KeyError:
        raise ValueError(f"CUDA kernels are generated for {sorted(DTYPES)}, got dtype {dtype!r}") from None
    return storage, CDialect("cuda", compute)


def headers(body: str, storage: str) -> list[str]:
    """The includes ``body`` needs: the 16-bit types' headers, math constants where a NaN/Inf
    literal appears. A float32 kernel without such literals needs none (NVRTC compiles it as is)."""
    out = []
    if "CUDART_" in body:
        out.append("#include <math_constants.h>")
    if storage == "__half":
        out.append("#include <cuda_fp16.h>")
    if storage == "__nv_bfloat16":
        out.append("#include <cuda_bf16.h>")
    return out


def _lines(*parts: list[str] | str, depth: int = 1) -> list[str]:
    out: list[str] = []
    for part in parts:
        out += [part] if isinstance(part, str) else part
    return ["    " * depth + line if line else line for line in out]


def generate_source(step: LoweredStep, dtype: str = "float32", per_neuron: frozenset[str] = frozenset(),
                    name: str = "snnir", includes: bool = True) -> str:
    """CUDA C++ of the forward and backward kernels of ``step`` for ``dtype``.

    ``per_neuron``: the uniforms read per neuron from ``arrays`` (the rest are kernel arguments);
    ``name`` prefixes every global symbol (several configurations can share one translation unit);
    ``includes=False`` leaves the ``#include`` lines out (see ``headers``) for such a unit.

    Kernel entry points (``extern "C"``; ``U`` = ``len(step.uniforms)`` trailing ``double``
    arguments ``u0 .. u{U-1}``, 0 for a per-neuron uniform)::

        <name>_forward(long long T, long long N, long long M, const storage_t* x[T, N],
                       storage_t* spikes[T, N], storage_t* state[S, N] (in: initial, out: final),
                       storage_t* v_seq[T, N] or NULL, const scalar_t* arrays[A, M], double u...)
        <name>_backward(long long T, long long N, long long M, const storage_t* grad_spikes[T, N]
                        (or one value when grad_is_scalar), long long grad_is_scalar,
                        const storage_t* grad_state[S, N] or NULL, const storage_t* x[T, N],
                        const storage_t* state0[S, N], storage_t* grad_x[T, N],
                        storage_t* grad_state0[S, N], scalar_t* grad_learn[L, N],
                        scalar_t* ckpt[chunks - 1, S, N], const scalar_t* arrays[A, M], double u...)
    """
    storage, d = dialect(dtype)
    unknown = set(per_neuron) - set(step.uniforms)
    if unknown:
        raise ValueError(f"{step.model}: per-neuron uniforms {sorted(unknown)} are not among {list(step.uniforms)}")
    S, K, U, L = len(step.states), len(step.kept), len(step.uniforms), len(step.learnable)
    K1, U1, L1 = max(K, 1), max(U, 1), max(L, 1)
    V = step.states.index("v")
    FC, BC = FORWARD_CHUNK, BACKWARD_CHUNK
    arrays = [n for n in step.uniforms if n in per_neuron]
    body = device_functions(step, d, f"{name}_step")

    load_u = []
    for i, n in enumerate(step.uniforms):
        source = f"arrays[{arrays.index(n)} * M + m]" if n in per_neuron else f"prm[{i}]"
        load_u.append(f"u[{i}] = (opmath_t){source};  // {n}{' (per neuron)' if n in per_neuron else ''}")
    neuron_index = "n % M" if arrays else "0"

    def per_state(template: str) -> list[str]:
        return [template.format(i=i) for i in range(S)]

    common = "long long T, long long N, long long M"
    fwd_ptrs = ("const storage_t* __restrict__ x, storage_t* __restrict__ spikes, storage_t* __restrict__ state, "
                "storage_t* __restrict__ v_seq, const scalar_t* __restrict__ arrays")
    bwd_ptrs = ("const storage_t* __restrict__ grad_spikes, long long grad_is_scalar, "
                "const storage_t* __restrict__ grad_state, const storage_t* __restrict__ x, "
                "const storage_t* __restrict__ state0, storage_t* __restrict__ grad_x, "
                "storage_t* __restrict__ grad_state0, opmath_t* __restrict__ grad_learn, "
                "scalar_t* __restrict__ ckpt, const scalar_t* __restrict__ arrays")
    fwd_args = "T, N, M, x, spikes, state, v_seq, arrays"
    bwd_args = ("T, N, M, grad_spikes, grad_is_scalar, grad_state, x, state0, grad_x, grad_state0, grad_learn, "
                "ckpt, arrays")
    q = "__host__ __device__ __forceinline__"
    zero = f"(scalar_t){d.literal(0.0)}"

    forward_neuron = [
        f"{q} void {name}_forward_neuron(long long n, {common}, {fwd_ptrs}, const double* prm) {{",
        *_lines(f"opmath_t u[{U1}];", f"{name}_uniforms(u, prm, arrays, {neuron_index}, M);",
                f"scalar_t s[{S}];", per_state("s[{i}] = (scalar_t)state[{i} * N + n];"), f"scalar_t h[{K1}];",
                f"for (long long t0 = 0; t0 < T; t0 += {FC}) {{",
                _lines(f"scalar_t xb[{FC}];", "#pragma unroll", f"for (int j = 0; j < {FC}; ++j)",
                       "    if (t0 + j < T) xb[j] = (scalar_t)x[(t0 + j) * N + n];", "#pragma unroll",
                       f"for (int j = 0; j < {FC}; ++j) {{",
                       _lines("if (t0 + j >= T) break;", "const long long i = (t0 + j) * N + n;",
                              f"spikes[i] = (storage_t){name}_step_forward(xb[j], s, h, u);",
                              f"if (v_seq) v_seq[i] = (storage_t)s[{V}];"),
                       "}"),
                "}", per_state("state[{i} * N + n] = (storage_t)s[{i}];")),
        "}"]

    backward_neuron = [
        f"{q} void {name}_backward_neuron(long long n, {common}, {bwd_ptrs}, const double* prm) {{",
        *_lines(
            f"opmath_t u[{U1}];", f"{name}_uniforms(u, prm, arrays, {neuron_index}, M);",
            f"const long long chunks = (T + {BC - 1}) / {BC};",
            f"scalar_t s[{S}];", per_state("s[{i}] = (scalar_t)state0[{i} * N + n];"), f"scalar_t h[{K1}];",
            "// pass 1: the forward again, keeping the state at the start of every chunk but the first",
            "for (long long c = 0; c + 1 < chunks; ++c) {",
            _lines(f"const long long t0 = c * {BC};", f"scalar_t xb[{BC}];", "#pragma unroll",
                   f"for (int j = 0; j < {BC}; ++j) xb[j] = (scalar_t)x[(t0 + j) * N + n];", "#pragma unroll",
                   f"for (int j = 0; j < {BC}; ++j) (void){name}_step_forward(xb[j], s, h, u);",
                   per_state(f"ckpt[(c * {S} + {{i}}) * N + n] = s[{{i}}];")),
            "}",
            f"scalar_t g[{S}];", per_state(f"g[{{i}}] = grad_state ? (scalar_t)grad_state[{{i}} * N + n] : {zero};"),
            f"opmath_t gp[{L1}];", f"for (int l = 0; l < {L1}; ++l) gp[l] = (opmath_t)0;",
            "// pass 2: per chunk, last first: recompute its charged values, then the adjoint backwards",
            "for (long long c = chunks - 1; c >= 0; --c) {",
            _lines(f"const long long t0 = c * {BC};", f"const long long len = T - t0 < {BC} ? T - t0 : {BC};",
                   f"scalar_t sc[{S}];",
                   per_state(f"sc[{{i}}] = c == 0 ? (scalar_t)state0[{{i}} * N + n] "
                             f": ckpt[((c - 1) * {S} + {{i}}) * N + n];"),
                   per_state("s[{i}] = sc[{i}];"),
                   f"scalar_t xb[{BC}];", f"scalar_t hb[{BC}][{K1}];", "#pragma unroll",
                   f"for (int j = 0; j < {BC}; ++j) {{",
                   _lines("if (j >= len) break;", "xb[j] = (scalar_t)x[(t0 + j) * N + n];",
                          f"(void){name}_step_forward(xb[j], s, hb[j], u);"),
                   "}", "#pragma unroll", f"for (int j = {BC - 1}; j >= 0; --j) {{",
                   _lines("if (j >= len) continue;", "const long long i = (t0 + j) * N + n;",
                          "const scalar_t gs = (scalar_t)(grad_is_scalar ? grad_spikes[0] : grad_spikes[i]);",
                          f"grad_x[i] = (storage_t){name}_step_backward(xb[j], gs, hb[j], hb[j > 0 ? j - 1 : 0], sc, "
                          "j == 0, g, u, gp);"),
                   "}"),
            "}",
            per_state("grad_state0[{i} * N + n] = (storage_t)g[{i}];"),
            [f"grad_learn[{i} * N + n] = gp[{i}];" for i in range(L)]),
        "}"]

    u_params = "".join(f", double u{i}" for i in range(U))
    u_values = ", ".join(f"u{i}" for i in range(U)) or "0.0"
    grid_loop = "for (long long n = blockIdx.x * (long long)blockDim.x + threadIdx.x; n < N; " \
                "n += (long long)gridDim.x * blockDim.x)"
    kernels = [
        "#ifndef SNNIR_HOST_ONLY",
        f'extern "C" __global__ void __launch_bounds__({BLOCK}) {name}_forward({common}, {fwd_ptrs}{u_params}) {{',
        *_lines(f"const double prm[{U1}] = {{{u_values}}};", grid_loop,
                f"    {name}_forward_neuron(n, {fwd_args}, prm);"),
        "}", "",
        f'extern "C" __global__ void __launch_bounds__({BLOCK}) {name}_backward({common}, {bwd_ptrs}{u_params}) {{',
        *_lines(f"const double prm[{U1}] = {{{u_values}}};", grid_loop,
                f"    {name}_backward_neuron(n, {bwd_args}, prm);"),
        "}",
        "#else  // the same per-neuron functions, looped over the neurons on the host",
        f'extern "C" void {name}_host_forward({common}, {fwd_ptrs}, const double* prm) {{',
        f"    for (long long n = 0; n < N; ++n) {name}_forward_neuron(n, {fwd_args}, prm);", "}",
        f'extern "C" void {name}_host_backward({common}, {bwd_ptrs}, const double* prm) {{',
        f"    for (long long n = 0; n < N; ++n) {name}_backward_neuron(n, {bwd_args}, prm);", "}",
        "#endif"]

    uniforms = [f"{q} void {name}_uniforms(opmath_t* u, const double* prm, const scalar_t* arrays, long long m, "
                "long long M) {", "    (void)u; (void)prm; (void)arrays; (void)m; (void)M;", *_lines(load_u), "}"]
    summary = ", ".join(f"{n}{'[M]' if n in per_neuron else ''}" for n in step.uniforms) or "-"
    text = "\n".join([
        f"// generated by snnir from the equations of {step.model} ({storage} in memory, {d.scalar_t} "
        "arithmetic and state); do not edit",
        f"// states {', '.join(step.states)}; kept for the backward {', '.join(step.kept) or '-'}; "
        f"learnable {', '.join(step.learnable) or '-'}",
        f"// uniforms {summary}",
        *(headers(body, storage) if includes else []),
        prelude(d, with_includes=False), f"typedef {storage} storage_t;", "", body, *uniforms, "",
        *forward_neuron, "", *backward_neuron, "", *kernels, ""])
    return text


__all__ = ["BACKWARD_CHUNK", "BLOCK", "DTYPES", "FORWARD_CHUNK", "dialect", "generate_source", "headers"]
