"""Linear layers fed by spikes: event-driven kernels that skip the zeros of the input.

Why: every hidden linear layer of an SNN reads the spikes of the neuron layer before it, and at
typical firing rates (1-20%) most of its input is zero. A dense GEMM multiplies those zeros; here
the forward adds, per input row, the weight columns of its active inputs only,

    y[r, :] = bias + sum over k with x[r, k] != 0 of x[r, k] * W[:, k]

and the weight gradient is accumulated from the same events,

    dW[:, k] = sum over r with x[r, k] != 0 of x[r, k] * dy[r, :]

(``dx = dy @ W`` stays a dense GEMM: the input gradient is dense). Skipping exact zeros gives the
dense result up to summation order for any input, so correctness never depends on the input
being binary; what the spikes tell is only that the path is worth trying. Work falls with the
density ``d``: ``R * K * d * J`` multiply-adds instead of ``R * K * J``, but each one loads a
weight row (forward) or updates a row of the gradient (backward) where BLAS reuses registers, so
the event path wins only at low density. Measured (``benchmarks/bench_spike_mlp.py --kernels``,
one thread, 1600 rows, ms, event vs GEMM at 1 / 5 / 10 / 20 / 30% nonzero): 512 -> 512 forward
0.9 / 1.6 / 2.2 / 3.8 / 5.1 against 4.0-4.2, weight gradient 1.7 / 2.4 / 3.4 / 5.6 / 8.1 against
4.3; 784 -> 512 forward 1.8 / 2.7 / 4.1 / 7.1 / 9.6 against 6.3-7.0, weight gradient 2.8 / 4.2 /
6.1 / 10.2 / 15.6 against 6.4.
Hence ``MAX_DENSITY`` (forward) and ``MAX_DENSITY_GW`` (weight gradient; above it a GEMM).
Each kernel call is one OpenMP region with no inner barrier (a barrier costs a scheduler slice
when other processes keep the cores busy, see ``threads``).

``linear(x, weight, bias)`` is ``F.linear`` for 2-d float32/float64 CPU input, differentiable in
all three; ``event_density`` tells whether it would take the event path (it counts the
nonzeros: one read of the input). Sums of more than ``BLOCK`` terms are added block by block to a
running total (rounding error grows like n / BLOCK + BLOCK rather than n, as in blocked BLAS).
Without a C compiler, torch's ``F.linear`` runs.
"""

from __future__ import annotations

import ctypes

import torch
from torch.nn import functional as F

from .cpu_kernel import LazyLibrary
from .threads import kernel_threads

MAX_DENSITY = 0.15     # nonzero fraction of the input below which the event forward is faster (measured)
MAX_DENSITY_GW = 0.08  # the same for the event weight gradient
MIN_ROWS = 64       # fewer rows (streaming): BLAS is as fast and the density count is pure overhead
MIN_OUTPUTS = 65    # fewer outputs: a readout, where the dense few-output kernel or BLAS is as fast
BLOCK = 256

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <omp.h>

#define JT 4      /* vectors of accumulators per pass over the events */
#define BLOCK 256 /* events per block sum */
#define RB 32     /* rows per block */
#define RBLK 256  /* rows per block sum of the weight gradient */

/* sums[JT * VL] = sum over e < n of val[e] * base[idx[e] * ld + j0 + j] for the nv full vectors at
   j0 (nv <= JT), block by block. */
#define DEFINE(T, SUF)                                                                                \
typedef T vec_##SUF __attribute__((vector_size(64)));                                                 \
typedef T vecu_##SUF __attribute__((vector_size(64), aligned(sizeof(T))));                            \
enum { VL_##SUF = 64 / sizeof(T) };                                                                   \
static inline __attribute__((always_inline)) void sum_events_##SUF(                                 \
        int64_t n, const int32_t* idx, const T* val, const T* base, int64_t ld, int64_t j0, int nv,  \
        T* sums) {                                                                                \
    vec_##SUF total[JT], acc[JT];                                                                     \
    for (int l = 0; l < JT; l++) total[l] = acc[l] = (vec_##SUF){0};                                  \
    for (int64_t e0 = 0; e0 < n; e0 += BLOCK) {                                                       \
        const int64_t e1 = n - e0 < BLOCK ? n : e0 + BLOCK;                                           \
        if (nv == JT) {                                                                               \
            for (int64_t e = e0; e < e1; e++) {                                                       \
                const T* row = base + (int64_t)idx[e] * ld + j0;                                      \
                const T v = val[e];                                                                   \
                _Pragma("GCC unroll 4")                                                               \
                for (int l = 0; l < JT; l++) acc[l] += v * *(const vecu_##SUF*)(row + l * VL_##SUF);  \
            }                                                                                         \
        } else {                                                                                      \
            for (int64_t e = e0; e < e1; e++) {                                                       \
                const T* row = base + (int64_t)idx[e] * ld + j0;                                      \
                const T v = val[e];                                                                   \
                for (int l = 0; l < nv; l++) acc[l] += v * *(const vecu_##SUF*)(row + l * VL_##SUF);  \
            }                                                                                         \
        }                                                                                             \
        for (int l = 0; l < JT; l++) { total[l] += acc[l]; acc[l] = (vec_##SUF){0}; }                 \
    }                                                                                                 \
    for (int l = 0; l < JT; l++) *(vecu_##SUF*)(sums + l * VL_##SUF) = total[l];                      \
}                                                                                                     \
/* the same for one scalar column j (the tail of J past its last full vector) */                      \
static T sum_events_tail_##SUF(int64_t n, const int32_t* idx, const T* val, const T* base, int64_t ld,\
                               int64_t j) {                                                           \
    T total = 0;                                                                                      \
    for (int64_t e0 = 0; e0 < n; e0 += BLOCK) {                                                       \
        const int64_t e1 = n - e0 < BLOCK ? n : e0 + BLOCK;                                           \
        T acc = 0;                                                                                    \
        for (int64_t e = e0; e < e1; e++) acc += val[e] * base[(int64_t)idx[e] * ld + j];             \
        total += acc;                                                                                 \
    }                                                                                                 \
    return total;                                                                                     \
}                                                                                                     \
/* the events of one row of x: indices and values of its nonzeros (branch-free); returns their count */ \
static inline int64_t row_events_##SUF(const T* xr, int64_t K, int32_t* ri, T* rv) {                 \
    int64_t n = 0;                                                                                    \
    for (int64_t k = 0; k < K; k++) { ri[n] = (int32_t)k; rv[n] = xr[k]; n += xr[k] != 0; }          \
    return n;                                                                                         \
}                                                                                                     \
/* y[R, J] = x[R, K] @ wt[K, J] (+ bias), skipping zeros of x; rows of x are ldx apart. Blocks of RB   \
   rows: their events are gathered once, then each tile of JT vectors of wt (L2-resident) serves     \
   every row of the block. */                                                                        \
int snnir_spike_fwd_##SUF(int64_t R, int64_t K, int64_t J, const T* x, int64_t ldx, const T* wt,     \
                          const T* bias, T* y, int threads) {                                         \
    int failed = 0;                                                                                   \
    const int64_t JV = J / VL_##SUF * VL_##SUF;                                                       \
    _Pragma("omp parallel num_threads(threads) reduction(|:failed)")                                  \
    {                                                                                                 \
        int32_t* idx = (int32_t*)malloc(sizeof(int32_t) * (size_t)(K * RB));                          \
        T* val = (T*)malloc(sizeof(T) * (size_t)(K * RB));                                            \
        T sums[JT * VL_##SUF];                                                                        \
        int64_t count[RB];                                                                            \
        if (!idx || !val) failed = 1;                                                                 \
        else {                                                                                        \
            _Pragma("omp for schedule(static)")                                                       \
            for (int64_t r0 = 0; r0 < R; r0 += RB) {                                                  \
                const int64_t nr = R - r0 < RB ? R - r0 : RB;                                         \
                for (int64_t i = 0; i < nr; i++)                                                      \
                    count[i] = row_events_##SUF(x + (r0 + i) * ldx, K, idx + i * K, val + i * K);     \
                for (int64_t j0 = 0; j0 < JV; j0 += JT * VL_##SUF) {                                  \
                    const int nv = (JV - j0) / VL_##SUF < JT ? (int)((JV - j0) / VL_##SUF) : JT;      \
                    for (int64_t i = 0; i < nr; i++) {                                                \
                        T* yr = y + (r0 + i) * J;                                                     \
                        sum_events_##SUF(count[i], idx + i * K, val + i * K, wt, J, j0, nv, sums);    \
                        for (int64_t j = 0; j < nv * VL_##SUF; j++)                                   \
                            yr[j0 + j] = sums[j] + (bias ? bias[j0 + j] : (T)0);                      \
                    }                                                                                 \
                }                                                                                     \
                for (int64_t i = 0; i < nr; i++)                                                      \
                    for (int64_t j = JV; j < J; j++)                                                  \
                        y[(r0 + i) * J + j] = sum_events_tail_##SUF(count[i], idx + i * K, val + i * K, \
                                                                    wt, J, j) + (bias ? bias[j] : (T)0); \
            }                                                                                         \
        }                                                                                             \
        free(idx); free(val);                                                                         \
    }                                                                                                 \
    return failed;                                                                                    \
}                                                                                                     \
/* gw[J, K] = g[R, J]^T @ x[R, K] from the row events: each thread owns tiles of JT vectors of     \
   columns of g, and per row adds v * g[r, tile] to the rows k of its block of dW^T (L2-resident) \
   for the row's events; every RBLK rows the block is added to the thread's total. */                \
int snnir_spike_gw_##SUF(int64_t R, int64_t K, int64_t J, const T* g, const T* x, int64_t ldx,  \
                              T* gw, int threads) {                                                   \
    const int64_t TW = JT * VL_##SUF, ntiles = (J + TW - 1) / TW;                                     \
    int failed = 0;                                                                                   \
    _Pragma("omp parallel num_threads(threads) reduction(|:failed)")                                  \
    {                                                                                                 \
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();                            \
        const int64_t mine = tid < ntiles ? (ntiles - tid + nth - 1) / nth : 0;                       \
        int32_t* idx = (int32_t*)malloc(sizeof(int32_t) * (size_t)(K * RB));                          \
        T* val = (T*)malloc(sizeof(T) * (size_t)(K * RB));                                            \
        char* raw = (char*)malloc(sizeof(vec_##SUF) * (size_t)(2 * mine * K * JT + 1) + 63);          \
        vec_##SUF* total = (vec_##SUF*)(((uintptr_t)raw + 63) & ~(uintptr_t)63);  /* c99: no aligned_alloc */ \
        int64_t count[RB];                                                                            \
        if (!idx || !val || !raw) failed = 1;                                                         \
        else if (mine) {                                                                              \
            vec_##SUF* acc = total + mine * K * JT;                                                   \
            for (int64_t i = 0; i < 2 * mine * K * JT; i++) total[i] = (vec_##SUF){0};                \
            for (int64_t r0 = 0; r0 < R; r0 += RB) {                                                  \
                const int64_t nr = R - r0 < RB ? R - r0 : RB;                                         \
                for (int64_t i = 0; i < nr; i++)                                                      \
                    count[i] = row_events_##SUF(x + (r0 + i) * ldx, K, idx + i * K, val + i * K);     \
                for (int64_t m = 0; m < mine; m++) {                                                  \
                    const int64_t j0 = (tid + m * nth) * TW;                                          \
                    vec_##SUF* a = acc + m * K * JT;                                                  \
                    for (int64_t i = 0; i < nr; i++) {                                                \
                        vec_##SUF gv[JT];                                                             \
                        const T* gr = g + (r0 + i) * J + j0;                                          \
                        if (j0 + TW <= J) {                                                           \
                            for (int l = 0; l < JT; l++) gv[l] = *(const vecu_##SUF*)(gr + l * VL_##SUF); \
                        } else {                                                                      \
                            T* gs = (T*)gv;                                                           \
                            for (int64_t j = 0; j < TW; j++) gs[j] = j0 + j < J ? gr[j] : (T)0;       \
                        }                                                                             \
                        const int32_t* ri = idx + i * K; const T* rv = val + i * K;                   \
                        for (int64_t e = 0; e < count[i]; e++) {                                      \
                            vec_##SUF* ak = a + (int64_t)ri[e] * JT;                                  \
                            const T v = rv[e];                                                        \
                            _Pragma("GCC unroll 4")                                                   \
                            for (int l = 0; l < JT; l++) ak[l] += v * gv[l];                          \
                        }                                                                             \
                    }                                                                                 \
                }                                                                                     \
                if ((r0 / RB + 1) % (RBLK / RB) == 0 || r0 + RB >= R)                                 \
                    for (int64_t i = 0; i < mine * K * JT; i++) { total[i] += acc[i]; acc[i] = (vec_##SUF){0}; } \
            }                                                                                         \
            for (int64_t m = 0; m < mine; m++) {                                                      \
                const int64_t j0 = (tid + m * nth) * TW;                                              \
                const T* t = (const T*)(total + m * K * JT);                                          \
                for (int64_t j = j0; j < J && j < j0 + TW; j++)                                       \
                    for (int64_t k = 0; k < K; k++) gw[j * K + k] = t[k * TW + (j - j0)];             \
            }                                                                                         \
        }                                                                                             \
        free(idx); free(val); free(raw);                                                              \
    }                                                                                                 \
    return failed;                                                                                    \
}                                                                                                     \
/* the number of nonzeros of x[R, K] (rows ldx apart) */                                              \
int64_t snnir_count_nonzero_##SUF(int64_t R, int64_t K, const T* x, int64_t ldx, int threads) {       \
    int64_t n = 0;                                                                                    \
    _Pragma("omp parallel for schedule(static) num_threads(threads) reduction(+:n)")                  \
    for (int64_t r = 0; r < R; r++) {                                                                 \
        const T* xr = x + r * ldx;                                                                    \
        int64_t c = 0;                                                                                \
        for (int64_t k = 0; k < K; k++) c += xr[k] != 0;                                              \
        n += c;                                                                                       \
    }                                                                                                 \
    return n;                                                                                         \
}
DEFINE(float, f32)
DEFINE(double, f64)
"""

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, integer = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for suffix in _SUFFIX.values():
        fwd, gw = getattr(lib, f"snnir_spike_fwd_{suffix}"), getattr(lib, f"snnir_spike_gw_{suffix}")
        fwd.argtypes = [i64] * 3 + [ptr, i64, ptr, ptr, ptr, integer]
        gw.argtypes = [i64] * 3 + [ptr, ptr, i64, ptr, integer]
        fwd.restype = gw.restype = integer
        count = getattr(lib, f"snnir_count_nonzero_{suffix}")
        count.argtypes = [i64, i64, ptr, i64, integer]
        count.restype = i64


_LIBRARY = LazyLibrary(_SOURCE, _declare)
_library = _LIBRARY.get


def supported(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the event kernels can run this input and weight (any density)."""
    return (x.device.type == "cpu" and x.dtype in _SUFFIX and weight.dtype == x.dtype and x.dim() == 2
            and x.stride(1) == 1 and x.shape[0] < 2**31 and x.shape[1] < 2**31 and weight.device.type == "cpu"
            and not torch.compiler.is_compiling() and type(x) is torch.Tensor and _library() is not None)


def event_density(x: torch.Tensor, weight: torch.Tensor, max_density: float = MAX_DENSITY) -> float | None:
    """The nonzero fraction of 2-d ``x`` if the event path should run it: ``supported``, at least
    ``MIN_ROWS`` rows, and at most ``max_density`` nonzero (counted here: one read of ``x``); else
    ``None``."""
    if x.dim() != 2 or x.shape[0] < MIN_ROWS or not supported(x, weight) or x.numel() == 0:
        return None
    density = nonzero(x) / x.numel()
    return density if density <= max_density else None


def nonzero(x: torch.Tensor) -> int:
    """The number of nonzeros of a ``supported`` 2-d ``x`` (``torch.count_nonzero`` took 0.5-3 ms
    for 800k spikes here, this 0.1 ms)."""
    R, K = x.shape
    fn = getattr(_library(), f"snnir_count_nonzero_{_SUFFIX[x.dtype]}")
    return int(fn(R, K, x.data_ptr(), x.stride(0), kernel_threads(R * K, R)))


class _SpikeLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, density):  # type: ignore[override]
        R, K = x.shape
        J = weight.shape[0]
        wt = weight.detach().t().contiguous()
        y = torch.empty(R, J, dtype=x.dtype)
        b = bias.detach().contiguous() if bias is not None else None
        fwd = getattr(_library(), f"snnir_spike_fwd_{_SUFFIX[x.dtype]}")
        if fwd(R, K, J, x.data_ptr(), x.stride(0), wt.data_ptr(), None if b is None else b.data_ptr(), y.data_ptr(),
               kernel_threads(R * K, -(-R // 32))):  # blocks of 32 rows
            raise MemoryError("spike linear: could not allocate the per-thread event lists")
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.density = bias is not None, density
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        g = g.contiguous()
        gx = g @ weight if ctx.needs_input_grad[0] else None
        gw = gb = None
        if ctx.needs_input_grad[1] and ctx.density > MAX_DENSITY_GW:
            gw = g.t() @ x
        elif ctx.needs_input_grad[1]:
            R, K = x.shape
            J = weight.shape[0]
            gw = torch.empty(J, K, dtype=x.dtype)
            fn = getattr(_library(), f"snnir_spike_gw_{_SUFFIX[x.dtype]}")
            tiles = -(-J // (256 // x.element_size()))  # threads own tiles of 4 vectors of 64 bytes
            if fn(R, K, J, g.data_ptr(), x.data_ptr(), x.stride(0), gw.data_ptr(), kernel_threads(R * K, tiles)):
                raise MemoryError("spike linear: could not allocate the per-thread event lists")
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb, None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           density: float = 0.0) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for 2-d ``x`` by the event kernels where ``supported`` (at any
    density: check ``event_density`` to take them only where they are faster), else by torch.
    ``density``: the nonzero fraction of ``x`` if known; above ``MAX_DENSITY_GW`` the weight
    gradient is a dense GEMM.

    Example:
        >>> import torch
        >>> x = (torch.rand(200, 300) < 0.05).float()
        >>> w, b = torch.randn(40, 300), torch.randn(40)
        >>> torch.allclose(linear(x, w, b), torch.nn.functional.linear(x, w, b), atol=1e-5)
        True
    """
    if not supported(x, weight):
        return F.linear(x, weight, bias)
    return _SpikeLinear.apply(x, weight, bias, float(density))
