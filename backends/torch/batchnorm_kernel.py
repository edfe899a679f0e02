"""Per-channel batch statistics for a BatchNorm run inside a neuron pass (``fused_bn``).

One read of the input in its own memory layout (contiguous ``[N, C, *]``, channels-last, any dense
permutation), summing in float64 around a per-channel shift (the channel's first value, which
keeps ``E[x^2] - E[x]^2`` from cancelling), for float32/float64 and the 16-bit types alike: a
bfloat16 input gets float32 statistics, as torch's BatchNorm gives it with float32 parameters.

Built once with the fused-kernel toolchain (``cpu_kernel.build``); ``channel_stats`` falls back to
``torch.var_mean`` without a compiler.
"""

from __future__ import annotations

import ctypes
import math

import torch

from .cpu_kernel import LazyLibrary
from .threads import kernel_threads

_SOURCE = r"""
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

typedef union { uint32_t u; float f; } bits_;
static inline double load_bf16(uint16_t v) { bits_ c; c.u = (uint32_t)v << 16; return (double)c.f; }
#define LOAD_PLAIN(v) ((double)(v))

/* x: P x C x inner in memory (inner = 1 for channels-last); sum and sumsq of (x - shift[c]) per
   channel, over P * inner values each. */
#define DEFINE(T, SUFFIX, LOAD)                                                                      \
int snnir_channel_stats_##SUFFIX(int64_t P, int64_t C, int64_t inner, const T* x, double* shift,         \
                                 double* sum, double* sumsq, int threads) {                          \
    double* acc_all = (double*)calloc((size_t)(2 * C * threads), sizeof(double));                    \
    if (!acc_all) return 1;                                                                          \
    for (int64_t c = 0; c < C; c++) shift[c] = LOAD(x[c * inner]);                                   \
    _Pragma("omp parallel num_threads(threads)")                                                     \
    {                                                                                                \
        double* acc = acc_all + 2 * C * omp_get_thread_num();                                        \
        double* acc2 = acc + C;                                                                      \
        _Pragma("omp for schedule(static)")                                                          \
        for (int64_t p = 0; p < P; p++) {                                                            \
            const T* row = x + p * C * inner;                                                        \
            if (inner == 1) {                                                                        \
                _Pragma("omp simd")                                                                  \
                for (int64_t c = 0; c < C; c++) {                                                    \
                    const double d = LOAD(row[c]) - shift[c];                                        \
                    acc[c] += d; acc2[c] += d * d;                                                   \
                }                                                                                    \
            } else {                                                                                 \
                for (int64_t c = 0; c < C; c++) {                                                    \
                    const T* run = row + c * inner;                                                  \
                    const double k = shift[c];                                                       \
                    double s = 0, s2 = 0;                                                            \
                    _Pragma("omp simd reduction(+:s,s2)")                                            \
                    for (int64_t i = 0; i < inner; i++) {                                            \
                        const double d = LOAD(run[i]) - k;                                           \
                        s += d; s2 += d * d;                                                         \
                    }                                                                                \
                    acc[c] += s; acc2[c] += s2;                                                      \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    for (int64_t c = 0; c < C; c++) {                                                                \
        double s = 0, s2 = 0;                                                                        \
        for (int t = 0; t < threads; t++) { s += acc_all[2 * C * t + c]; s2 += acc_all[2 * C * t + C + c]; } \
        sum[c] = s; sumsq[c] = s2;                                                                   \
    }                                                                                                \
    free(acc_all);                                                                                   \
    return 0;                                                                                        \
}

DEFINE(float, f32, LOAD_PLAIN)
DEFINE(double, f64, LOAD_PLAIN)
DEFINE(uint16_t, bf16, load_bf16)
#ifdef __FLT16_MAX__
DEFINE(_Float16, f16, LOAD_PLAIN)
#endif
"""

_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16", torch.float16: "f16"}
def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for suffix in _SUFFIX.values():
        fn = getattr(lib, f"snnir_channel_stats_{suffix}", None)
        if fn is not None:
            fn.argtypes = [i64, i64, i64, ptr, ptr, ptr, ptr, ctypes.c_int]
            fn.restype = ctypes.c_int


_LIBRARY = LazyLibrary(_SOURCE, _declare)
_library = _LIBRARY.get


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance (float64, ``[C]``) of ``x`` (``[N, C, *]``) over all axes but 1.

    Example:
        >>> import torch
        >>> x = torch.randn(8, 3, 5, 5).contiguous(memory_format=torch.channels_last)
        >>> mean, var = channel_stats(x)
        >>> torch.allclose(var, x.double().var(dim=(0, 2, 3), unbiased=False))
        True
    """
    C = x.shape[1]
    n = x.numel() // C if C else 0
    order = sorted(range(x.dim()), key=lambda d: (-x.stride(d), d))
    lib = _library() if x.device.type == "cpu" and x.dtype in _SUFFIX and n else None
    fn = getattr(lib, f"snnir_channel_stats_{_SUFFIX[x.dtype]}", None) if lib is not None else None
    if fn is None or not x.permute(order).is_contiguous():
        var, mean = torch.var_mean(x.double(), dim=[d for d in range(x.dim()) if d != 1], correction=0)
        return mean, var
    inner = math.prod(x.shape[d] for d in order[order.index(1) + 1:])  # the axes after C in memory
    P = x.numel() // (C * inner)
    threads = kernel_threads(x.numel(), P)
    shift, total, squares = (torch.empty(C, dtype=torch.float64) for _ in range(3))
    if fn(P, C, inner, x.data_ptr(), shift.data_ptr(), total.data_ptr(), squares.data_ptr(), threads):
        raise MemoryError("channel_stats: could not allocate the per-thread sums")
    d = total / n
    return shift + d, (squares / n - d * d).clamp_min_(0.0)
