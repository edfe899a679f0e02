"""Fused CPU kernel for plasticity rules: the C99 loops around the lowered rule blocks.

The bodies (trace updates and factors, the synaptic step, the bounded weight update) are printed by
``snnir.lowering`` (C99 dialect) from ``lower_rule``; this module writes the loops around them and
builds the library with the neuron kernels' builder (``cpu_kernel.build``: cached by source hash,
``-ffp-contract=off`` so elementwise results equal the torch reference operation for operation).

One call runs all ``T`` recorded steps. Layout (the canonical convolution layout of
``plasticity.Geometry``): pre spikes ``[T, B, C, H, W]`` (already padded), post spikes ``[T, B, J,
Ho, Wo]``, the weight as ``[J, I]`` with ``I = C/G * KH * KW``; a linear synapse is the 1x1 case
(``H = 1``, ``W`` = positions). Per step:

1. the pre block over every pre element (traces in place, pre factors into ``a_buf``), the post
   block likewise (``b_buf``);
2. per output row ``j`` (OpenMP over rows): each pairing ``pair_k[i] = sum over positions of
   b_k[j, pos] * a_k[window(pos) + i]`` into a per-thread row (positions where the post factor is
   zero are skipped: spikes are sparse), summed over the batch unless the rule is batched, in
   which case the synaptic block runs per sample and its ``dw`` is summed; then the apply block
   writes ``w`` (when ``apply``) and ``delta`` accumulates ``dw``.

Summation order over positions and samples differs from torch's matrix products, so pairings agree
with the reference to rounding (the tests bound it), everything else exactly.
"""

from __future__ import annotations

import ctypes
from functools import cache

from snnir.lowering import CDialect, c_lines, prelude
from snnir.lowering.plasticity import LoweredRule

from .cpu_kernel import KernelBuildError, build

# below this much work per phase, one thread (a parallel region costs more than it saves)
_PARALLEL_MIN = 1 << 15
GEOMETRY_FIELDS = ("T", "B", "C", "H", "W", "J", "Ho", "Wo", "KH", "KW", "SH", "SW", "DH", "DW", "G")


def _indent(lines: list[str], depth: int) -> str:
    return "\n".join(" " * (4 * depth) + line for line in lines)


def pre_factors(lr: LoweredRule) -> list[str]:
    """Names of the pre factors stored in ``a_buf`` (in buffer order)."""
    return list(dict.fromkeys(p.pre for p in lr.pairings if isinstance(p.pre, str)))


def post_factors(lr: LoweredRule) -> list[str]:
    return list(dict.fromkeys(p.post for p in lr.pairings if isinstance(p.post, str)))


def generate_source(lr: LoweredRule, dtype: str) -> str:
    """C source of ``snnir_plasticity`` for rule ``lr`` and ``dtype`` ('float' or 'double')."""
    d = CDialect("c99", dtype)
    a_names, b_names = pre_factors(lr), post_factors(lr)
    uniforms = [f"const scalar_t {n} = (scalar_t)prm[{i}];" for i, n in enumerate(lr.uniforms)]
    uniforms += [f"(void){n};" for n in lr.uniforms]

    def side(block, traces: tuple[str, ...], spike: str, size: str, state: str, buf: str, factors: list[str]):
        body = [f"const scalar_t {spike} = {spike}_t[n_];"] if spike in block.inputs else []
        body += [f"scalar_t s_{k} = {state}[{i} * {size} + n_];" for i, k in enumerate(traces)]
        body += c_lines(block, d, {f"s_{k}" for k in traces})
        body += [f"{state}[{i} * {size} + n_] = s_{k};" for i, k in enumerate(traces)]
        body += [f"{buf}[{i} * {size} + n_] = {n};" for i, n in enumerate(factors)]
        return body

    pre_body = side(lr.pre, lr.pre_traces, "pre", "NPRE", "pre_state", "a_buf", a_names)
    post_body = side(lr.post, lr.post_traces, "post", "NPOST", "post_state", "b_buf", b_names)

    def pairing(k: int) -> list[str]:
        p = lr.pairings[k]
        lines = [f"scalar_t* P{k}_ = P_ + {k} * I;"]
        if isinstance(p.post, str):
            bv = f"b_buf[{b_names.index(p.post)} * NPOST + ((b_ * J + j_) * Ho + oy_) * Wo + ox_]"
        else:
            bv = d.literal(float(p.post))
        loop = ["for (int64_t oy_ = 0; oy_ < Ho; ++oy_) {", "    for (int64_t ox_ = 0; ox_ < Wo; ++ox_) {",
                f"        const scalar_t bv_ = {bv};"]
        if isinstance(p.post, str):
            loop.append("        if (bv_ == 0) continue;")
        if isinstance(p.pre, str):
            a = a_names.index(p.pre)
            loop += [f"        const scalar_t* ar_ = a_buf + {a} * NPRE + ((b_ * C + g_ * CG) * H + oy_ * SH) * W "
                     "+ ox_ * SW;",
                     "        for (int64_t c_ = 0; c_ < CG; ++c_)",
                     "            for (int64_t ky_ = 0; ky_ < KH; ++ky_)",
                     "                for (int64_t kx_ = 0; kx_ < KW; ++kx_)",
                     f"                    P{k}_[(c_ * KH + ky_) * KW + kx_] += bv_ * ar_[(c_ * H + ky_ * DH) * W "
                     "+ kx_ * DW];",
                     "    }", "}"]
            return lines + loop
        lines.append(f"scalar_t sum{k}_ = 0;")
        loop += [f"        sum{k}_ += bv_;", "    }", "}"]
        return lines + loop + [f"for (int64_t i_ = 0; i_ < I; ++i_) P{k}_[i_] += {d.literal(float(p.pre))} * sum{k}_;"]

    npair = len(lr.pairings)
    zero = [f"for (int64_t i_ = 0; i_ < {max(npair, 1)} * I; ++i_) P_[i_] = 0;"]
    pairs = [line for k in range(npair) for line in pairing(k)]
    S = lr.synapse_states
    syn = ["const scalar_t w = wr_[i_];"]
    syn += [f"const scalar_t pair_{k} = P_[{k} * I + i_];" for k in range(npair)]
    syn += [f"scalar_t s_{k} = syn_state[(({i} * B + b_) * J + j_) * I + i_];" for i, k in enumerate(S)]
    syn += c_lines(lr.synapse, d, {f"s_{k}" for k in S})
    syn += [f"syn_state[(({i} * B + b_) * J + j_) * I + i_] = s_{k};" for i, k in enumerate(S)]
    syn.append("acc_[i_] += dw;" if lr.batched else "acc_[i_] = dw;")
    mods = [f"const scalar_t m_{m} = mods[(t_ * {len(lr.modulators)} + {i}) * B + b_]; (void)m_{m};"
            for i, m in enumerate(lr.modulators)]
    apply = ["scalar_t w = wr_[i_];", "const scalar_t dw = acc_[i_];"]
    apply += c_lines(lr.apply, d, {"w"})
    apply += ["if (apply) wr_[i_] = w;", "delta[j_ * I + i_] += dw;"]
    simd = "#pragma omp simd"
    if lr.batched:
        rows = ["for (int64_t i_ = 0; i_ < I; ++i_) acc_[i_] = 0;", "for (int64_t b_ = 0; b_ < B; ++b_) {",
                *("    " + x for x in zero + pairs + mods), f"    {simd}", "    for (int64_t i_ = 0; i_ < I; ++i_) {",
                *("        " + x for x in syn), "    }", "}"]
    else:
        rows = [*zero, "for (int64_t b_ = 0; b_ < B; ++b_) {", *("    " + x for x in pairs), "}",
                "const int64_t b_ = 0; (void)b_;", simd, "for (int64_t i_ = 0; i_ < I; ++i_) {",
                *("    " + x for x in syn), "}"]
    rows += [simd, "for (int64_t i_ = 0; i_ < I; ++i_) {", *("    " + x for x in apply), "}"]
    geometry = "; ".join(f"const int64_t {n} = geo[{i}]" for i, n in enumerate(GEOMETRY_FIELDS)) + ";"
    return f"""// generated by snnir from the equations of plasticity rule {lr.rule}; do not edit
// uniforms: {', '.join(lr.uniforms) or '-'}; pairings: {npair}; batched: {int(lr.batched)}
{prelude(d)}
#include <omp.h>

void snnir_plasticity(const int64_t* geo, const scalar_t* pre_seq, const scalar_t* post_seq, scalar_t* pre_state,
                      scalar_t* post_state, scalar_t* syn_state, scalar_t* weight, scalar_t* delta,
                      const scalar_t* mods, scalar_t* a_buf, scalar_t* b_buf, scalar_t* work, const double* prm,
                      int apply, int nthreads) {{
    {geometry}
    (void)KH; (void)KW; (void)SH; (void)SW; (void)DH; (void)DW; (void)syn_state; (void)mods; (void)a_buf; (void)b_buf;
    const int64_t NPRE = B * C * H * W, NPOST = B * J * Ho * Wo, CG = C / G, JG = J / G, I = CG * KH * KW;
    (void)CG; (void)NPOST;
    const scalar_t n_samples = (scalar_t)B; (void)n_samples;
{_indent(uniforms, 1)}
    for (int64_t t_ = 0; t_ < T; ++t_) {{
        const scalar_t* pre_t = pre_seq + t_ * NPRE; (void)pre_t;
        const scalar_t* post_t = post_seq + t_ * NPOST; (void)post_t;
        #pragma omp parallel for simd num_threads(nthreads) schedule(static) if(parallel: NPRE > {_PARALLEL_MIN})
        for (int64_t n_ = 0; n_ < NPRE; ++n_) {{
{_indent(pre_body, 3)}
        }}
        #pragma omp parallel for simd num_threads(nthreads) schedule(static) if(parallel: NPOST > {_PARALLEL_MIN})
        for (int64_t n_ = 0; n_ < NPOST; ++n_) {{
{_indent(post_body, 3)}
        }}
        #pragma omp parallel for num_threads(nthreads) schedule(static) if(J * I * B * Ho * Wo > {_PARALLEL_MIN})
        for (int64_t j_ = 0; j_ < J; ++j_) {{
            const int64_t g_ = j_ / JG; (void)g_;
            scalar_t* P_ = work + (int64_t)omp_get_thread_num() * ({max(npair, 1)} + 1) * I;
            scalar_t* acc_ = P_ + {max(npair, 1)} * I;
            scalar_t* wr_ = weight + j_ * I;
{_indent(rows, 3)}
        }}
    }}
}}
"""


@cache
def _library(source: str) -> ctypes.CDLL:
    lib = build(source)
    ptr = ctypes.c_void_p
    lib.snnir_plasticity.argtypes = [ptr] * 13 + [ctypes.c_int, ctypes.c_int]
    lib.snnir_plasticity.restype = None
    return lib


def library(lr: LoweredRule, dtype: str) -> ctypes.CDLL:
    """The built kernel of ``lr`` for ``dtype`` (``KernelBuildError`` without a C compiler)."""
    return _library(generate_source(lr, dtype))


__all__ = ["GEOMETRY_FIELDS", "KernelBuildError", "generate_source", "library", "post_factors", "pre_factors"]
