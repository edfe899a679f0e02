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

from . import buffers
from .cpu_kernel import LazyLibrary
from .custom_ops import define_once
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

/* BatchNorm's training backward over the same P x C x inner layout (x and g alike): pass one sums
   g and g * (x - mean) per channel (each contiguous run in T, the runs in float64, per-thread
   accumulators); pass two writes
   gx = (g - sum / n - (x - mean) * k) * invstd * w, k = dot * invstd^2 / n, in T with ATen's
   operation order. coef: mean, invstd, w per channel (already rounded to T by the caller). */
#define DEFINE_BWD(T, SUFFIX)                                                                          \
int snnir_bn_backward_##SUFFIX(int64_t P, int64_t C, int64_t inner, const T* x, const T* g,               \
                               const T* mean, const T* invstd, const T* w, T* gx, double* sum,            \
                               double* dot, int threads) {                                            \
    double* acc_all = (double*)calloc((size_t)(2 * C * threads), sizeof(double));                    \
    T* coef = (T*)malloc((size_t)(3 * C) * sizeof(T));                                               \
    if (!acc_all || !coef) { free(acc_all); free(coef); return 1; }                                  \
    _Pragma("omp parallel num_threads(threads)")                                                     \
    {                                                                                                \
        double* acc = acc_all + 2 * C * omp_get_thread_num();                                        \
        double* acc2 = acc + C;                                                                      \
        _Pragma("omp for schedule(static)")                                                          \
        for (int64_t p = 0; p < P; p++) {                                                            \
            const T* xr = x + p * C * inner;                                                         \
            const T* gr = g + p * C * inner;                                                         \
            if (inner == 1) {                                                                        \
                _Pragma("omp simd")                                                                  \
                for (int64_t c = 0; c < C; c++) {                                                    \
                    const double d = (double)gr[c];                                                  \
                    acc[c] += d; acc2[c] += ((double)xr[c] - (double)mean[c]) * d;                   \
                }                                                                                    \
            } else {                                                                                 \
                for (int64_t c = 0; c < C; c++) {                                                    \
                    const T* xc = xr + c * inner;                                                    \
                    const T* gc = gr + c * inner;                                                    \
                    const T m = mean[c];                                                             \
                    T s = 0, s2 = 0; /* one run in T (as ATen sums), the runs in float64 */          \
                    _Pragma("omp simd reduction(+:s,s2)")                                            \
                    for (int64_t i = 0; i < inner; i++) {                                            \
                        const T d = gc[i];                                                           \
                        s += d; s2 += (xc[i] - m) * d;                                               \
                    }                                                                                \
                    acc[c] += (double)s; acc2[c] += (double)s2;                                      \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    const double n = (double)P * (double)inner;                                                      \
    for (int64_t c = 0; c < C; c++) {                                                                \
        double s = 0, s2 = 0;                                                                        \
        for (int t = 0; t < threads; t++) { s += acc_all[2 * C * t + c]; s2 += acc_all[2 * C * t + C + c]; } \
        sum[c] = s; dot[c] = s2;                                                                     \
        const T is = invstd[c];                                                                      \
        coef[c] = (T)s2 * is * is / (T)n; /* k, in ATen's order */                                   \
        coef[C + c] = (T)s / (T)n;         /* the mean gradient */                                   \
        coef[2 * C + c] = w ? w[c] : (T)1;                                                           \
    }                                                                                                \
    free(acc_all);                                                                                   \
    if (gx) {                                                                                        \
        _Pragma("omp parallel for schedule(static) num_threads(threads)")                            \
        for (int64_t p = 0; p < P; p++) {                                                            \
            const T* xr = x + p * C * inner;                                                         \
            const T* gr = g + p * C * inner;                                                         \
            T* out = gx + p * C * inner;                                                             \
            if (inner == 1) {                                                                        \
                _Pragma("omp simd")                                                                  \
                for (int64_t c = 0; c < C; c++)                                                      \
                    out[c] = (gr[c] - coef[C + c] - (xr[c] - mean[c]) * coef[c]) * invstd[c] * coef[2 * C + c]; \
            } else {                                                                                 \
                for (int64_t c = 0; c < C; c++) {                                                    \
                    const T m = mean[c], k = coef[c], gm = coef[C + c], is = invstd[c], wc = coef[2 * C + c]; \
                    const T* xc = xr + c * inner;                                                    \
                    const T* gc = gr + c * inner;                                                    \
                    T* oc = out + c * inner;                                                         \
                    _Pragma("omp simd")                                                              \
                    for (int64_t i = 0; i < inner; i++) oc[i] = (gc[i] - gm - (xc[i] - m) * k) * is * wc; \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    free(coef);                                                                                      \
    return 0;                                                                                        \
}

DEFINE_BWD(float, f32)
DEFINE_BWD(double, f64)
"""

_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16", torch.float16: "f16"}
_BWD_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for suffix in _SUFFIX.values():
        fn = getattr(lib, f"snnir_channel_stats_{suffix}", None)
        if fn is not None:
            fn.argtypes = [i64, i64, i64, ptr, ptr, ptr, ptr, ctypes.c_int]
            fn.restype = ctypes.c_int
    for suffix in _BWD_SUFFIX.values():
        fn = getattr(lib, f"snnir_bn_backward_{suffix}")
        fn.argtypes = [i64, i64, i64] + [ptr] * 8 + [ctypes.c_int]
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


def batch_norm_backward(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, mean: torch.Tensor,
                        invstd: torch.Tensor, mask: list[bool]
                        ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None] | None:
    """BatchNorm's training-mode backward with the batch statistics ``mean``/``invstd`` (what
    ``aten::native_batch_norm_backward(g, x, weight, None, None, mean, invstd, True, eps, mask)``
    returns), or ``None`` where the kernel does not apply (then the caller runs ATen's).

    Why: the input gradient is as large as the layer's activations, and ATen allocates it afresh on
    every call, which on this CPU faults its pages in again each step (about as long as computing
    it); here it comes from the kernel-output pool (``buffers``). The sums are taken in float64
    (ATen: float32 for float32 inputs), the elementwise pass in ATen's operation order.

    Example:
        >>> import torch
        >>> x, g = torch.randn(8, 3, 5, 5), torch.randn(8, 3, 5, 5)
        >>> w, mean = torch.rand(3) + 0.5, x.mean(dim=(0, 2, 3))
        >>> invstd = x.var(dim=(0, 2, 3), unbiased=False).add(1e-5).rsqrt()
        >>> gx, gw, gb = batch_norm_backward(g, x, w, mean, invstd, [True, True, True])
        >>> ref = torch.ops.aten.native_batch_norm_backward(g, x, w, None, None, mean, invstd, True, 1e-5,
        ...                                                 [True, True, True])
        >>> all(torch.allclose(a, b, atol=1e-5) for a, b in zip((gx, gw, gb), ref))
        True
    """
    dtype = x.dtype
    if (x.device.type != "cpu" or dtype not in _BWD_SUFFIX or g.dtype != dtype or g.shape != x.shape
            or g.stride() != x.stride() or mean.dtype != dtype or invstd.dtype != dtype
            or (weight is not None and weight.dtype != dtype) or x.dim() < 2 or x.numel() == 0):
        return None
    order = sorted(range(x.dim()), key=lambda d: (-x.stride(d), d))
    if not x.permute(order).is_contiguous() or order[0] != 0:
        return None
    lib = _library()
    if lib is None:
        return None
    C = x.shape[1]
    inner = math.prod(x.shape[d] for d in order[order.index(1) + 1:])
    P = x.numel() // (C * inner)
    gx = None
    if mask[0]:
        inv = [0] * len(order)
        for i, d in enumerate(order):
            inv[d] = i
        gx = buffers.empty(tuple(x.shape[d] for d in order), dtype).permute(inv)
    w = weight.detach().contiguous() if weight is not None else None
    mean, invstd = mean.contiguous(), invstd.contiguous()
    total, dot = torch.empty(C, dtype=torch.float64), torch.empty(C, dtype=torch.float64)
    threads = kernel_threads(x.numel(), P)
    if getattr(lib, f"snnir_bn_backward_{_BWD_SUFFIX[dtype]}")(
            P, C, inner, x.data_ptr(), g.data_ptr(), mean.data_ptr(), invstd.data_ptr(),
            None if w is None else w.data_ptr(), None if gx is None else gx.data_ptr(),
            total.data_ptr(), dot.data_ptr(), threads):
        raise MemoryError("batch_norm_backward: could not allocate the per-thread sums")
    wdtype = weight.dtype if weight is not None else dtype
    gw = (dot * invstd.double()).to(wdtype) if mask[1] else None
    gb = total.to(wdtype) if mask[2] else None
    return gx, gw, gb


# --- the kernels as custom ops, for torch.compile ---------------------------------------------------------
# A compiled graph cannot call a ctypes library, so while torch.compile traces, ``fused_bn`` calls
# these ops instead: one opaque node each (no graph break), which runs the kernels above at run time.


def _channel_stats_op(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return channel_stats(x)


def _channel_stats_fake(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.new_empty(x.shape[1], dtype=torch.float64), x.new_empty(x.shape[1], dtype=torch.float64)


def training_backward(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, mean: torch.Tensor,
                      invstd: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                      training: bool, eps: float, mask: list[bool]
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """BatchNorm's backward as ``aten::native_batch_norm_backward`` computes it, by the kernel
    (``batch_norm_backward``) where that applies; ``g`` in any layout."""
    if g.stride() != x.stride():  # the same layout for both, as both kernels read them
        g = torch.empty_like(x).copy_(g)
    out = batch_norm_backward(g, x, weight, mean, invstd, mask) if training else None
    if out is None:
        out = torch.ops.aten.native_batch_norm_backward(g, x, weight, running_mean, running_var, mean, invstd,
                                                        training, eps, mask)
    return out


def _backward_op(g, x, weight, mean, invstd, running_mean, running_var, training, eps, mask):
    gx, gw, gb = training_backward(g, x, weight, mean, invstd, running_mean, running_var, training, eps, mask)
    if gx is None:
        gx = x.new_empty(0)
    elif gx.stride() != x.stride():  # the fake's layout (x's), which the compiled graph asserts
        gx = torch.empty_like(x).copy_(gx)
    empty = mean.new_empty(0) if weight is None else weight.new_empty(0)
    return gx, empty if gw is None else gw, empty if gb is None else gb


def _backward_fake(g, x, weight, mean, invstd, running_mean, running_var, training, eps, mask):
    like = mean if weight is None else weight
    return (torch.empty_like(x) if mask[0] else x.new_empty(0),
            torch.empty_like(like) if mask[1] else like.new_empty(0),
            torch.empty_like(like) if mask[2] else like.new_empty(0))


def update_running_stats(running_mean: torch.Tensor, running_var: torch.Tensor, mean: torch.Tensor,
                         var: torch.Tensor, momentum: float | None, count: torch.Tensor, n: int) -> None:
    """``torch.nn.BatchNorm``'s update of the running statistics from a batch's ``mean`` and biased
    ``var`` over ``n`` values per channel (the running variance is the unbiased one); ``momentum``
    ``None``: the cumulative average over ``count`` (``num_batches_tracked``, already incremented)."""
    if momentum is None:
        count = int(count)
        factor = 1.0 / count if count else 0.0
    else:
        factor = momentum
    running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
    running_var.mul_(1 - factor).add_((var * (n / max(n - 1, 1))).to(running_var.dtype), alpha=factor)


def _update_fake(running_mean, running_var, mean, var, momentum, count, n) -> None:
    return None


def _define_ops(lib: torch.library.Library) -> None:
    lib.define("channel_stats(Tensor x) -> (Tensor, Tensor)")
    lib.define("batch_norm_backward(Tensor g, Tensor x, Tensor? weight, Tensor mean, Tensor invstd, "
               "Tensor? running_mean, Tensor? running_var, bool training, float eps, bool[3] mask) "
               "-> (Tensor, Tensor, Tensor)")
    # a mutating op: the update runs as the eager one does (Inductor would fuse it into other roundings)
    lib.define("update_running_stats(Tensor(a!) running_mean, Tensor(b!) running_var, Tensor mean, Tensor var, "
               "float? momentum, Tensor count, int n) -> ()")
    lib.impl("update_running_stats", update_running_stats, "CompositeExplicitAutograd")
    torch.library.register_fake("snnir::update_running_stats", _update_fake, lib=lib)
    lib.impl("channel_stats", _channel_stats_op, "CompositeExplicitAutograd")
    lib.impl("batch_norm_backward", _backward_op, "CompositeExplicitAutograd")
    torch.library.register_fake("snnir::channel_stats", _channel_stats_fake, lib=lib)
    torch.library.register_fake("snnir::batch_norm_backward", _backward_fake, lib=lib)


define_once("batchnorm", _define_ops)
