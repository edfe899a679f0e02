"""Linear layers with few outputs (``out_features <= 64``): compiled kernels where BLAS is slow.

Why: a readout such as ``Linear(784, 10)`` over a whole sequence is a GEMM ``[T*B, 784] @ [784, 10]``.
BLAS libraries block for square-ish matrices; with ten output columns MKL reaches ~50 GFLOP/s on
this machine, and reading the input dominates. Here every output row is computed in registers
while the input row streams through once: the forward keeps ``rows x outputs`` accumulators and
broadcasts each input value against a column of the (transposed) weight; the weight gradient keeps
a private ``[out, in]`` block per thread (L1/L2 resident) and adds a few input rows to it per pass.

``linear(x, weight, bias)`` is ``F.linear`` for 2-d float32 CPU input (any number of rows),
differentiable in all three (the input gradient, when asked for, is one small GEMM by torch).
Results differ from BLAS only by summation order (float32 ulps). Without a C compiler, torch's
``F.linear`` runs.
"""

from __future__ import annotations

import ctypes

import torch
from torch.nn import functional as F

from .cpu_kernel import LazyLibrary
from .threads import kernel_threads

MAX_OUT = 64  # up to four vectors of 16 accumulators per row
_SOURCE = r"""
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* GCC/clang vector extensions: one AVX-512 register, two AVX2 ones, ... whatever the CPU has. */
typedef float vf __attribute__((vector_size(64)));
typedef float vf_u __attribute__((vector_size(64), aligned(4)));
#define VL 16

/* Rows r0..r0+nr of y[R, J] = x[R, K] @ wt[K, L * VL] (+ bias): RB rows x L vectors of accumulators
   stay in registers while the rows of x stream through once. Sums run in blocks of KB inputs added
   to a running total (rounding error grows like K / KB + KB, not K: as accurate as blocked BLAS). */
#define KB 32
#define FWD_BLOCK(L, RB)                                                                              \
static void fwd_l##L(int64_t r0, int64_t nr, int64_t K, int64_t J, const float* x, int64_t ldx,        \
                     const float* wt, const float* bias, float* y) {                                  \
    vf a[RB][L], s[RB][L];                                                                            \
    const float* xr[RB];                                                                              \
    _Pragma("GCC unroll 16")                                                                          \
    for (int i = 0; i < RB; i++) {                                                                    \
        xr[i] = x + (r0 + (i < nr ? i : 0)) * ldx;                                                    \
        _Pragma("GCC unroll 4")                                                                       \
        for (int l = 0; l < L; l++) s[i][l] = (vf){0};                                                \
    }                                                                                                 \
    for (int64_t k0 = 0; k0 < K; k0 += KB) {                                                          \
        const int64_t k1 = K - k0 < KB ? K : k0 + KB;                                                 \
        _Pragma("GCC unroll 16")                                                                      \
        for (int i = 0; i < RB; i++)                                                                  \
            _Pragma("GCC unroll 4")                                                                   \
            for (int l = 0; l < L; l++) a[i][l] = (vf){0};                                            \
        for (int64_t k = k0; k < k1; k++) {                                                           \
            _Pragma("GCC unroll 4")                                                                   \
            for (int l = 0; l < L; l++) {                                                             \
                const vf w = *(const vf_u*)(wt + (k * L + l) * VL);                                   \
                _Pragma("GCC unroll 16")                                                              \
                for (int i = 0; i < RB; i++) a[i][l] += xr[i][k] * w;                                 \
            }                                                                                         \
        }                                                                                             \
        _Pragma("GCC unroll 16")                                                                      \
        for (int i = 0; i < RB; i++)                                                                  \
            _Pragma("GCC unroll 4")                                                                   \
            for (int l = 0; l < L; l++) s[i][l] += a[i][l];                                           \
    }                                                                                                 \
    for (int64_t i = 0; i < nr; i++)                                                                  \
        for (int64_t j = 0; j < J; j++)                                                               \
            y[(r0 + i) * J + j] = s[i][j / VL][j % VL] + (bias ? bias[j] : 0.0f);                     \
}
FWD_BLOCK(1, 8)
FWD_BLOCK(2, 5)
FWD_BLOCK(3, 3)
FWD_BLOCK(4, 3)

void snnir_skinny_fwd(int64_t R, int64_t K, int64_t J, const float* x, int64_t ldx, const float* wt,
                      const float* bias, float* y, int threads) {
    const int64_t L = (J + VL - 1) / VL;
    const int64_t RB = L == 1 ? 8 : L == 2 ? 5 : 3;
    _Pragma("omp parallel for schedule(static) num_threads(threads)")
    for (int64_t r0 = 0; r0 < R; r0 += RB) {
        const int64_t nr = R - r0 < RB ? R - r0 : RB;
        if (L == 1) fwd_l1(r0, nr, K, J, x, ldx, wt, bias, y);
        else if (L == 2) fwd_l2(r0, nr, K, J, x, ldx, wt, bias, y);
        else if (L == 3) fwd_l3(r0, nr, K, J, x, ldx, wt, bias, y);
        else fwd_l4(r0, nr, K, J, x, ldx, wt, bias, y);
    }
}

/* gw[J, K] = g[R, J]^T @ x[R, K], gb[J] = sum of g's rows. Each thread takes a contiguous range of
   rows; RG rows of x are held in registers per 16 columns while every output row's block sum passes
   through once; every RBLK rows the block sums are added to the thread's total (rounding error
   grows like R / RBLK + RBLK rather than R; the bias sums are kept in double), and the threads' totals
   are added at the end. */
#define RG 8
#define RBLK 256
int snnir_skinny_gw(int64_t R, int64_t K, int64_t J, const float* g, const float* x, int64_t ldx, float* gw,
                    float* gb, int threads) {
    const int64_t per = 2 * (J * K + J);
    float* ws = (float*)calloc((size_t)(threads * per), sizeof(float));
    if (!ws) return 1;
    const int64_t KV = K / VL * VL;
    _Pragma("omp parallel num_threads(threads)")
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        float* total = ws + (int64_t)tid * per;
        float* acc = total + (J * K + J);
        double sb[64] = {0};  /* the bias gradient: J sums of R values, cheap to keep in double */
        const int64_t chunk = ((R + RG - 1) / RG + nth - 1) / nth * RG;
        const int64_t lo = tid * chunk, hi = lo + chunk < R ? lo + chunk : R;
        for (int64_t r0 = lo; r0 < hi; r0 += RG) {
            const int64_t nr = hi - r0 < RG ? hi - r0 : RG;
            float gr[64][RG];
            const float* xr[RG];
            for (int64_t i = 0; i < RG; i++) {
                const int64_t r = r0 + (i < nr ? i : 0);
                xr[i] = x + r * ldx;
                for (int64_t j = 0; j < J; j++) gr[j][i] = i < nr ? g[r * J + j] : 0.0f;
            }
            for (int64_t j = 0; j < J; j++)
                for (int i = 0; i < RG; i++) sb[j] += gr[j][i];
            for (int64_t k = 0; k < KV; k += VL) {
                vf xv[RG];
                _Pragma("GCC unroll 8")
                for (int i = 0; i < RG; i++) xv[i] = *(const vf_u*)(xr[i] + k);
                for (int64_t j = 0; j < J; j++) {
                    vf a = *(vf_u*)(acc + j * K + k);
                    _Pragma("GCC unroll 8")
                    for (int i = 0; i < RG; i++) a += gr[j][i] * xv[i];
                    *(vf_u*)(acc + j * K + k) = a;
                }
            }
            for (int64_t k = KV; k < K; k++)
                for (int64_t j = 0; j < J; j++)
                    for (int i = 0; i < RG; i++) acc[j * K + k] += gr[j][i] * xr[i][k];
            if ((r0 - lo) % RBLK == RBLK - RG || r0 + RG >= hi) {  /* fold the block into the total */
                for (int64_t i = 0; i < J * K; i++) { total[i] += acc[i]; acc[i] = 0; }
            }
        }
        for (int64_t j = 0; j < J; j++) total[J * K + j] = (float)sb[j];
    }
    for (int64_t t = 1; t < threads; t++) {
        const float* part = ws + t * per;
        for (int64_t i = 0; i < J * K + J; i++) ws[i] += part[i];
    }
    memcpy(gw, ws, sizeof(float) * (size_t)(J * K));
    if (gb) memcpy(gb, ws + J * K, sizeof(float) * (size_t)J);
    free(ws);
    return 0;
}
"""

def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, integer = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.snnir_skinny_fwd.argtypes = [i64] * 3 + [ptr, i64, ptr, ptr, ptr, integer]
    lib.snnir_skinny_fwd.restype = None
    lib.snnir_skinny_gw.argtypes = [i64] * 3 + [ptr, ptr, i64, ptr, ptr, integer]
    lib.snnir_skinny_gw.restype = integer


_LIBRARY = LazyLibrary(_SOURCE, _declare)
_library = _LIBRARY.get


def supported(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear`` runs the compiled kernels for this input and weight."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == x.dtype and x.dim() == 2
            and weight.shape[0] <= MAX_OUT and x.shape[0] >= 64 and x.stride(1) == 1
            and not torch.compiler.is_compiling() and type(x) is torch.Tensor and _library() is not None)


def _transposed(weight: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``weight.T`` padded with zero columns to whole vectors of 16: ``[K, lanes * 16]``."""
    J, K = weight.shape
    lanes = -(-J // 16)
    wt = weight.new_zeros(K, lanes * 16)
    wt[:, :J] = weight.detach().t()
    return wt, lanes


class _SkinnyLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        R, K = x.shape
        J = weight.shape[0]
        wt, lanes = _transposed(weight)
        y = torch.empty(R, J, dtype=x.dtype)
        b = bias.detach().contiguous() if bias is not None else None
        _library().snnir_skinny_fwd(R, K, J, x.data_ptr(), x.stride(0), wt.data_ptr(),
                                    None if b is None else b.data_ptr(), y.data_ptr(),
                                    kernel_threads(R * K, -(-R // 8)))
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        g = g.contiguous()
        gx = g @ weight if ctx.needs_input_grad[0] else None
        gw = gb = None
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            R, K = x.shape
            J = weight.shape[0]
            gw = torch.empty(J, K, dtype=x.dtype)
            gb = torch.empty(J, dtype=x.dtype)
            if _library().snnir_skinny_gw(R, K, J, g.data_ptr(), x.data_ptr(), x.stride(0), gw.data_ptr(),
                                          gb.data_ptr(), kernel_threads(R * K, -(-R // 8))):
                raise MemoryError("skinny linear: could not allocate the per-thread weight gradients")
        return gx, gw if ctx.needs_input_grad[1] else None, gb if ctx.has_bias and ctx.needs_input_grad[2] else None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` by the compiled kernels where ``supported``, else by torch.

    Example:
        >>> import torch
        >>> x, w, b = torch.rand(1000, 300), torch.randn(10, 300), torch.randn(10)
        >>> torch.allclose(linear(x, w, b), torch.nn.functional.linear(x, w, b), atol=1e-5)
        True
    """
    if not supported(x, weight):
        return F.linear(x, weight, bias)
    return _SkinnyLinear.apply(x, weight, bias)
