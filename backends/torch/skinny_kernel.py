"""Linear layers with few outputs (at most ``tile()``: 10 with AVX-512, 5 with AVX2): compiled kernels
where BLAS is slow.

Why: a readout such as ``Linear(784, 10)`` over a whole sequence is a GEMM ``[T*B, 784] @ [784, 10]``.
BLAS blocks for square-ish matrices; with ten output columns MKL's forward runs at half the speed
the input's reading allows (measured ``[6400, 784] -> 10``, 1 thread: 1.5-1.8 ms against 0.72 ms for
``x.sum()``), and its weight gradient does not scale to a second thread. Here:

- forward: dot products along the input, 2 rows x (up to) 10 outputs of accumulators in
  registers, each input row read once, the next rows prefetched;
- weight gradient ``g^T x``: 10 outputs x 2 vectors of input columns in registers per block of 32
  rows (each block summed from zero, then added: rounding error grows like ``R/32 + 32``, not
  ``R``; the same columns of the next block prefetched); the columns are split between threads,
  so every element is summed in one order whatever the thread count (results do not depend on
  ``torch.get_num_threads()``).

Measured (``benchmarks/bench_neurons.py`` and the kernel test harness, see README): forward 1.9-2.1x
MKL for 2-10 outputs, weight gradient at par on 1 thread and ~2x on 2. With more outputs than one
register tile MKL is faster, so ``supported`` says no and torch runs.

``linear(x, weight, bias)`` is ``F.linear`` for 2-d float32 CPU input, differentiable in all three
(the input gradient, when asked for, and the bias gradient are torch's). Results differ from BLAS
only by float32 summation order. Without a C compiler or without AVX2+FMA, torch's ``F.linear`` runs;
``ENABLED = False`` turns the kernels off.
"""

from __future__ import annotations

import ctypes

import torch
from torch.nn import functional as F

from .cpu_kernel import LazyLibrary
from .threads import kernel_threads

ENABLED = True  # set False to run torch's linear everywhere
MIN_ROWS = 64   # fewer rows (streaming, one step): BLAS's own small-matrix path is as quick

_SOURCE = r"""
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* Plain intrinsics (the library is built with -ffp-contract=off, so a*b+c would not become an FMA):
   AVX-512 keeps 2 rows x 10 outputs (forward) or 10 outputs x 2 vectors of columns (weight
   gradient) of accumulators in its 32 registers; AVX2 half of that in 16. */
#if defined(__AVX512F__)
typedef __m512 V;
#define VL 16
#define JB 10
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VSET1(x) _mm512_set1_ps(x)
#define VADD(a, b) _mm512_add_ps(a, b)
static inline V vload_n(const float* p, int n) { return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p); }
static inline void vstore_n(float* p, V v, int n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v); }
static inline float vhsum(V v) { return _mm512_reduce_add_ps(v); }
#define SNNIR_SKINNY 1
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 V;
#define VL 8
#define JB 5
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VSET1(x) _mm256_set1_ps(x)
#define VADD(a, b) _mm256_add_ps(a, b)
static inline __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline V vload_n(const float* p, int n) { return _mm256_maskload_ps(p, tail_mask(n)); }
static inline void vstore_n(float* p, V v, int n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
static inline float vhsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define SNNIR_SKINNY 1
#else
#define SNNIR_SKINNY 0
#endif

int snnir_skinny_available(void) { return SNNIR_SKINNY; }
int snnir_skinny_tile(void) {
#if SNNIR_SKINNY
    return JB;
#else
    return 0;
#endif
}

#if SNNIR_SKINNY
#define PF_AHEAD 2048  /* floats: the forward streams its rows; fetching ~8 KiB ahead beat the hardware's own */
#define RBLK 32        /* rows per weight-gradient block (see snnir_skinny_gw); measured 16-256: 32 is
                          as quick as 64-128 from cache and 1.1-1.5x quicker from DRAM (a fresh batch) */
#define KC 2           /* vectors of columns per weight-gradient tile */

/* y[r0 + i, j0 + j] (i < nr <= 2, j < NJ) = x[r0 + i, :] . w[j0 + j, :] (+ bias): dot products along
   K, 2 rows x NJ outputs of accumulators; each weight row streams from L1 once per row pair. */
#define FWD_TILE(NJ)                                                                                    \
static void fwd_tile_##NJ(int64_t r0, int nr, int64_t j0, int64_t K, const float* x, int64_t ldx,        \
                          const float* w, const float* bias, float* y, int64_t J) {                     \
    V a0[NJ], a1[NJ];                                                                                   \
    _Pragma("GCC unroll 16") for (int j = 0; j < NJ; j++) { a0[j] = VZERO(); a1[j] = VZERO(); }         \
    const float* x0 = x + r0 * ldx;                                                                     \
    const float* x1 = x + (r0 + (nr > 1)) * ldx;                                                        \
    const float* wj = w + j0 * K;                                                                       \
    const int64_t KV = K / VL * VL;                                                                     \
    for (int64_t k = 0; k < KV; k += VL) {                                                              \
        _mm_prefetch((const char*)(x0 + k + PF_AHEAD), _MM_HINT_T0);                                    \
        _mm_prefetch((const char*)(x1 + k + PF_AHEAD), _MM_HINT_T0);                                    \
        const V v0 = VLOAD(x0 + k), v1 = VLOAD(x1 + k);                                                 \
        _Pragma("GCC unroll 16") for (int j = 0; j < NJ; j++) {                                         \
            const V wv = VLOAD(wj + j * K + k);                                                         \
            a0[j] = VFMA(v0, wv, a0[j]);                                                                \
            a1[j] = VFMA(v1, wv, a1[j]);                                                                \
        }                                                                                               \
    }                                                                                                   \
    if (KV < K) {                                                                                       \
        const int n = (int)(K - KV);                                                                    \
        const V v0 = vload_n(x0 + KV, n), v1 = vload_n(x1 + KV, n);                                     \
        _Pragma("GCC unroll 16") for (int j = 0; j < NJ; j++) {                                         \
            const V wv = vload_n(wj + j * K + KV, n);                                                   \
            a0[j] = VFMA(v0, wv, a0[j]);                                                                \
            a1[j] = VFMA(v1, wv, a1[j]);                                                                \
        }                                                                                               \
    }                                                                                                   \
    for (int j = 0; j < NJ; j++) {                                                                      \
        const float b = bias ? bias[j0 + j] : 0.0f;                                                     \
        y[r0 * J + j0 + j] = vhsum(a0[j]) + b;                                                          \
        if (nr > 1) y[(r0 + 1) * J + j0 + j] = vhsum(a1[j]) + b;                                        \
    }                                                                                                   \
}

/* gw[j0 + j, k : k + nv * VL] += sum over rows r0..r1 of g[r, j0 + j] * x[r, k : ...]: NJ outputs x
   KC vectors of columns in registers, started from zero for the block; the last vector may be
   partial (tail lanes). */
#define GW_TILE(NJ)                                                                                     \
static void gw_tile_##NJ(int64_t r0, int64_t r1, int64_t j0, int64_t k, int nv, int tail, int64_t J,     \
                         int64_t K, const float* g, const float* x, int64_t ldx, float* gw) {           \
    V acc[NJ][KC];                                                                                      \
    _Pragma("GCC unroll 16") for (int j = 0; j < NJ; j++) { acc[j][0] = VZERO(); acc[j][1] = VZERO(); } \
    if (nv == KC && tail == VL) {                                                                       \
        for (int64_t r = r0; r < r1; r++) {                                                             \
            const float* xr = x + r * ldx + k;                                                          \
            const float* gr = g + r * J + j0;                                                           \
            /* the same columns one block ahead: rows lie a stride apart, which the hardware          \
               prefetchers do not follow */                                                             \
            _mm_prefetch((const char*)(xr + RBLK * ldx), _MM_HINT_T0);                                  \
            _mm_prefetch((const char*)(xr + RBLK * ldx + KC * VL - 1), _MM_HINT_T0);                    \
            const V x0 = VLOAD(xr), x1 = VLOAD(xr + VL);                                                \
            _Pragma("GCC unroll 16") for (int j = 0; j < NJ; j++) {                                     \
                const V gv = VSET1(gr[j]);                                                              \
                acc[j][0] = VFMA(gv, x0, acc[j][0]);                                                    \
                acc[j][1] = VFMA(gv, x1, acc[j][1]);                                                    \
            }                                                                                           \
        }                                                                                               \
    } else {                                                                                            \
        for (int64_t r = r0; r < r1; r++) {                                                             \
            const float* xr = x + r * ldx + k;                                                          \
            const float* gr = g + r * J + j0;                                                           \
            const V x0 = nv == 1 ? vload_n(xr, tail) : VLOAD(xr);                                       \
            const V x1 = nv == 2 ? vload_n(xr + VL, tail) : VZERO();                                    \
            _Pragma("GCC unroll 16") for (int j = 0; j < NJ; j++) {                                     \
                const V gv = VSET1(gr[j]);                                                              \
                acc[j][0] = VFMA(gv, x0, acc[j][0]);                                                    \
                acc[j][1] = VFMA(gv, x1, acc[j][1]);                                                    \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
    for (int j = 0; j < NJ; j++)                                                                        \
        for (int c = 0; c < nv; c++) {                                                                  \
            float* dst = gw + (j0 + j) * K + k + c * VL;                                                \
            const int n = c == nv - 1 ? tail : VL;                                                      \
            if (n == VL) VSTORE(dst, VADD(VLOAD(dst), acc[j][c]));                                      \
            else vstore_n(dst, VADD(vload_n(dst, n), acc[j][c]), n);                                    \
        }                                                                                               \
}

typedef void (*fwd_fn)(int64_t, int, int64_t, int64_t, const float*, int64_t, const float*, const float*,
                       float*, int64_t);
typedef void (*gw_fn)(int64_t, int64_t, int64_t, int64_t, int, int, int64_t, int64_t, const float*,
                      const float*, int64_t, float*);
FWD_TILE(1) FWD_TILE(2) FWD_TILE(3) FWD_TILE(4) FWD_TILE(5)
GW_TILE(1) GW_TILE(2) GW_TILE(3) GW_TILE(4) GW_TILE(5)
#if JB > 5
FWD_TILE(6) FWD_TILE(7) FWD_TILE(8) FWD_TILE(9) FWD_TILE(10)
GW_TILE(6) GW_TILE(7) GW_TILE(8) GW_TILE(9) GW_TILE(10)
static const fwd_fn FWD[JB + 1] = {0, fwd_tile_1, fwd_tile_2, fwd_tile_3, fwd_tile_4, fwd_tile_5, fwd_tile_6,
                                   fwd_tile_7, fwd_tile_8, fwd_tile_9, fwd_tile_10};
static const gw_fn GW[JB + 1] = {0, gw_tile_1, gw_tile_2, gw_tile_3, gw_tile_4, gw_tile_5, gw_tile_6, gw_tile_7,
                                 gw_tile_8, gw_tile_9, gw_tile_10};
#else
static const fwd_fn FWD[JB + 1] = {0, fwd_tile_1, fwd_tile_2, fwd_tile_3, fwd_tile_4, fwd_tile_5};
static const gw_fn GW[JB + 1] = {0, gw_tile_1, gw_tile_2, gw_tile_3, gw_tile_4, gw_tile_5};
#endif

/* Output tiles of near-equal width (J = 12 -> 6 + 6, not 10 + 2): the j-th of n starts here. */
static inline int64_t tile_start(int64_t J, int64_t n, int64_t t) { return J * t / n; }

/* y[R, J] = x[R, K] @ w[J, K]^T + bias; rows in pairs, split between threads. */
void snnir_skinny_fwd(int64_t R, int64_t K, int64_t J, const float* x, int64_t ldx, const float* w,
                      const float* bias, float* y, int threads) {
    const int64_t pairs = (R + 1) / 2, tiles = (J + JB - 1) / JB;
    _Pragma("omp parallel for schedule(static) num_threads(threads)")
    for (int64_t p = 0; p < pairs; p++) {
        const int64_t r0 = 2 * p;
        const int nr = R - r0 > 1 ? 2 : 1;
        for (int64_t t = 0; t < tiles; t++) {
            const int64_t j0 = tile_start(J, tiles, t), j1 = tile_start(J, tiles, t + 1);
            FWD[j1 - j0](r0, nr, j0, K, x, ldx, w, bias, y, J);
        }
    }
}

/* gw[J, K] = g[R, J]^T @ x[R, K]. The column vectors of x are split between threads, so every gw
   element is summed by one thread in one order whatever the thread count; per block of RBLK rows a
   tile is accumulated in registers from zero and then added to gw (rounding error grows like
   R / RBLK + RBLK, not R). */
void snnir_skinny_gw(int64_t R, int64_t K, int64_t J, const float* g, const float* x, int64_t ldx, float* gw,
                     int threads) {
    memset(gw, 0, sizeof(float) * (size_t)(J * K));
    const int64_t nvec = (K + VL - 1) / VL, tiles = (J + JB - 1) / JB;
    _Pragma("omp parallel num_threads(threads)")
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        const int64_t v0 = nvec * tid / nth, v1 = nvec * (tid + 1) / nth;
        for (int64_t r0 = 0; r0 < R; r0 += RBLK) {
            const int64_t r1 = R - r0 < RBLK ? R : r0 + RBLK;
            for (int64_t v = v0; v < v1; v += KC) {
                const int nv = v1 - v < KC ? (int)(v1 - v) : KC;
                const int64_t end = (v + nv) * VL;
                const int tail = end > K ? (int)(VL - (end - K)) : VL;
                for (int64_t t = 0; t < tiles; t++) {
                    const int64_t j0 = tile_start(J, tiles, t), j1 = tile_start(J, tiles, t + 1);
                    GW[j1 - j0](r0, r1, j0, v * VL, nv, tail, J, K, g, x, ldx, gw);
                }
            }
        }
    }
}
#else
void snnir_skinny_fwd(void) {}
void snnir_skinny_gw(void) {}
#endif
"""


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, integer = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.snnir_skinny_available.restype = integer
    lib.snnir_skinny_tile.restype = integer
    if lib.snnir_skinny_available():
        lib.snnir_skinny_fwd.argtypes = [i64] * 3 + [ptr, i64, ptr, ptr, ptr, integer]
        lib.snnir_skinny_fwd.restype = None
        lib.snnir_skinny_gw.argtypes = [i64] * 3 + [ptr, ptr, i64, ptr, integer]
        lib.snnir_skinny_gw.restype = None
    lib.tile = lib.snnir_skinny_tile()


_LIBRARY = LazyLibrary(_SOURCE, _declare)


def tile() -> int:
    """Most outputs the kernels take on this CPU (0: not available: no compiler, or no AVX2+FMA).

    Example:
        >>> tile() in (0, 5, 10)
        True
    """
    lib = _LIBRARY.get()
    return lib.tile if lib is not None else 0


def supported(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear`` runs the compiled kernels for this input and weight."""
    if not ENABLED or torch.compiler.is_compiling():  # first: tile() loads a library, which the compiler cannot trace
        return False
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == x.dtype and x.dim() == 2
            and x.shape[0] >= MIN_ROWS and x.stride(1) == 1 and weight.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu") and type(x) is torch.Tensor and weight.shape[0] <= tile())


def _threads(rows: int, inputs: int) -> int:
    return kernel_threads(rows * inputs, -(-rows // 2))


class _SkinnyLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[override]
        R, K = x.shape
        J = weight.shape[0]
        w = weight.detach().contiguous()
        b = bias.detach().contiguous() if bias is not None else None
        y = torch.empty(R, J, dtype=x.dtype)
        _LIBRARY.get().snnir_skinny_fwd(R, K, J, x.data_ptr(), x.stride(0), w.data_ptr(),
                                        None if b is None else b.data_ptr(), y.data_ptr(), _threads(R, K))
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
        if ctx.needs_input_grad[1]:
            R, K = x.shape
            gw = torch.empty_like(weight, memory_format=torch.contiguous_format)
            _LIBRARY.get().snnir_skinny_gw(R, K, weight.shape[0], g.data_ptr(), x.data_ptr(), x.stride(0),
                                           gw.data_ptr(), _threads(R, K))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb


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
