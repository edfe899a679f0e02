"""A compiled CPU max pooling (2-d) with one-byte argmax indices, for ``snnir.nn.MaxPool2d``.

Why: in a conv SNN the pooled tensors are the largest of the network (``[T*N, C, H, W]``), and
torch's CPU ``max_pool2d`` keeps an int64 index per output and zero-fills the whole input gradient
before scattering into it. Here the forward keeps the position inside the window as one byte
(8x less index memory), and the backward writes each input-gradient plane once (zeroed and
scattered while the plane is in cache). The result is torch's exactly: the first maximum in
window order wins, NaN propagates, padding is never selected, so gradients go to the same inputs.

Built once per dtype with the fused-kernel toolchain (``cpu_kernel.build``); without a compiler
the layer keeps using torch's ``max_pool2d``.
"""

from __future__ import annotations

import ctypes

import torch

from . import buffers
from .cpu_kernel import LazyLibrary
from .custom_ops import define_once
from .threads import kernel_threads

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

#define DEFINE(T, SUFFIX)                                                                              \
static void window_row_##SUFFIX(const T* xp, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh,    \
                                int64_t sw, int64_t ph, int64_t pw, int64_t oy, int64_t ox, T* y, uint8_t* id) { \
    int64_t y0 = oy * sh - ph, ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + kh > H ? H - y0 : kh;                     \
    int64_t x0 = ox * sw - pw, kx0 = x0 < 0 ? -x0 : 0, kx1 = x0 + kw > W ? W - x0 : kw;                     \
    T m = -INFINITY;                                                                                    \
    int64_t best = ky0 * kw + kx0; /* torch: the first valid position */                                \
    for (int64_t ky = ky0; ky < ky1; ky++)                                                              \
        for (int64_t kx = kx0; kx < kx1; kx++) {                                                        \
            T v = xp[(y0 + ky) * W + x0 + kx];                                                          \
            if (v > m || isnan(v)) { m = v; best = ky * kw + kx; }                                      \
        }                                                                                               \
    *y = m;                                                                                             \
    *id = (uint8_t)best;                                                                                \
}                                                                                                       \
void snnir_maxpool2d_fwd_##SUFFIX(int64_t P, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh,    \
                                  int64_t sw, int64_t ph, int64_t pw, int64_t Ho, int64_t Wo,            \
                                  const T* x, T* y, uint8_t* idx, int threads) {                         \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                                   \
    for (int64_t p = 0; p < P; p++) {                                                                   \
        const T* xp = x + p * H * W;                                                                    \
        T* yp = y + p * Ho * Wo;                                                                        \
        uint8_t* ip = idx + p * Ho * Wo;                                                                \
        for (int64_t oy = 0; oy < Ho; oy++) {                                                           \
            int64_t y0 = oy * sh - ph;                                                                  \
            if (ph || pw || y0 < 0 || y0 + kh > H) { /* windows that may touch padding */               \
                for (int64_t ox = 0; ox < Wo; ox++)                                                     \
                    window_row_##SUFFIX(xp, H, W, kh, kw, sh, sw, ph, pw, oy, ox, yp + oy * Wo + ox,     \
                                        ip + oy * Wo + ox);                                             \
                continue;                                                                               \
            }                                                                                           \
            if (kh == 2 && kw == 2 && sw == 2) { /* the common 2x2 / stride 2 window, straight-line */ \
                const T* r0 = xp + y0 * W;                                                              \
                const T* r1 = r0 + W;                                                                   \
                T* yr = yp + oy * Wo;                                                                   \
                uint8_t* ir = ip + oy * Wo;                                                             \
                _Pragma("omp simd")                                                                     \
                for (int64_t ox = 0; ox < Wo; ox++) {                                                   \
                    T a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];           \
                    T m = a; /* same as starting from -inf: a wins unless a is -inf (then index 0 too) */ \
                    int k = 0;                                                                          \
                    int tb = (b > m) | (b != b); m = tb ? b : m; k = tb ? 1 : k;                        \
                    int tc = (c > m) | (c != c); m = tc ? c : m; k = tc ? 2 : k;                        \
                    int td = (d > m) | (d != d); m = td ? d : m; k = td ? 3 : k;                        \
                    yr[ox] = m;                                                                         \
                    ir[ox] = (uint8_t)k;                                                                \
                }                                                                                       \
                continue;                                                                               \
            }                                                                                           \
            for (int64_t ox = 0; ox < Wo; ox++) { /* interior windows of any size */                   \
                const T* w0 = xp + y0 * W + ox * sw;                                                    \
                T m = -INFINITY;                                                                        \
                int64_t best = 0;                                                                       \
                for (int64_t ky = 0; ky < kh; ky++)                                                     \
                    for (int64_t kx = 0; kx < kw; kx++) {                                               \
                        T v = w0[ky * W + kx];                                                          \
                        if (v > m || isnan(v)) { m = v; best = ky * kw + kx; }                          \
                    }                                                                                   \
                yp[oy * Wo + ox] = m;                                                                   \
                ip[oy * Wo + ox] = (uint8_t)best;                                                       \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
}                                                                                                       \
void snnir_maxpool2d_bwd_##SUFFIX(int64_t P, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh,    \
                                  int64_t sw, int64_t ph, int64_t pw, int64_t Ho, int64_t Wo,            \
                                  const T* gy, const uint8_t* idx, T* gx, int threads) {                 \
    int64_t offset[256]; /* window position -> offset in the plane, so no division per element */     \
    for (int64_t k = 0; k < kh * kw; k++) offset[k] = (k / kw) * W + k % kw;                            \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                                   \
    for (int64_t p = 0; p < P; p++) {                                                                   \
        T* gp = gx + p * H * W;                                                                         \
        const T* gyp = gy + p * Ho * Wo;                                                                \
        const uint8_t* ip = idx + p * Ho * Wo;                                                          \
        memset(gp, 0, sizeof(T) * H * W); /* one plane: zeroed and scattered while in cache */         \
        for (int64_t oy = 0; oy < Ho; oy++)                                                             \
            for (int64_t ox = 0; ox < Wo; ox++)                                                         \
                gp[(oy * sh - ph) * W + (ox * sw - pw) + offset[ip[oy * Wo + ox]]] += gyp[oy * Wo + ox]; \
    }                                                                                                   \
}

DEFINE(float, f32)
DEFINE(double, f64)
"""

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for suffix in _SUFFIX.values():
        getattr(lib, f"snnir_maxpool2d_fwd_{suffix}").argtypes = [i64] * 11 + [ptr] * 3 + [ctypes.c_int]
        getattr(lib, f"snnir_maxpool2d_bwd_{suffix}").argtypes = [i64] * 11 + [ptr] * 3 + [ctypes.c_int]


_LIBRARY = LazyLibrary(_SOURCE, _declare)
_library = _LIBRARY.get


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def supported(x: torch.Tensor, kernel_size, stride, padding, dilation, ceil_mode: bool,
              return_indices: bool) -> bool:
    """Whether ``max_pool2d`` computes this pooling (else torch's ``max_pool2d`` does): the
    compiled kernel; while ``torch.compile`` traces, the custom op ``snnir::max_pool2d``, which
    runs that kernel or, where it does not apply (layout, dtype), torch's eager one."""
    if (x.device.type != "cpu" or x.dim() not in (3, 4) or ceil_mode or return_indices
            or _pair(dilation) != (1, 1)):
        return False
    kh, kw = _pair(kernel_size)
    ph, pw = _pair(padding)
    if not (kh * kw <= 256 and 2 * ph <= kh and 2 * pw <= kw):
        return False
    if torch.compiler.is_compiling():
        return True
    return _kernel_applies(x)


def _kernel_applies(x: torch.Tensor) -> bool:
    """Whether the compiled kernel takes ``x`` (geometry checked by ``supported``)."""
    return x.dtype in _SUFFIX and x.is_contiguous() and _LIBRARY.load() is not None


def _geometry(x: torch.Tensor, kernel, stride, padding) -> tuple[int, ...]:
    """The kernels' ``(P, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo)`` for ``x`` (``[..., H, W]``)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    H, W = x.shape[-2:]
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    P = x.numel() // (H * W) if x.numel() else 0
    return (P, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo)


def _forward_kernel(x: torch.Tensor, geometry: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled ``y`` and one-byte indices of contiguous ``x`` (pooled buffers)."""
    P, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo = geometry
    y = buffers.empty((*x.shape[:-2], Ho, Wo), x.dtype)
    idx = buffers.empty((*x.shape[:-2], Ho, Wo), torch.uint8)
    if P and Ho > 0 and Wo > 0:
        getattr(_LIBRARY.load(), f"snnir_maxpool2d_fwd_{_SUFFIX[x.dtype]}")(
            *geometry, x.data_ptr(), y.data_ptr(), idx.data_ptr(), kernel_threads(x.numel(), P))
    return y, idx


def _backward_kernel(gy: torch.Tensor, idx: torch.Tensor, in_shape, geometry: tuple[int, ...]) -> torch.Tensor:
    """The input gradient (contiguous, pooled buffer) from ``gy`` and the forward's indices."""
    gy = gy.contiguous()
    gx = buffers.empty(tuple(in_shape), gy.dtype)
    P = geometry[0]
    if P:
        getattr(_LIBRARY.load(), f"snnir_maxpool2d_bwd_{_SUFFIX[gy.dtype]}")(
            *geometry, gy.data_ptr(), idx.data_ptr(), gx.data_ptr(), kernel_threads(gx.numel(), P))
    return gx


class _MaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, stride, padding):  # noqa: D102
        x = x.contiguous()
        ctx.geometry = _geometry(x, kernel, stride, padding)
        y, idx = _forward_kernel(x, ctx.geometry)
        ctx.save_for_backward(idx)
        ctx.in_shape = x.shape
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):  # noqa: D102
        (idx,) = ctx.saved_tensors
        return _backward_kernel(gy, idx, ctx.in_shape, ctx.geometry), None, None, None


class _TracedMaxPool2d(torch.autograd.Function):
    """The autograd of ``snnir::max_pool2d`` (what ``torch.compile`` traces): saves the input and
    the indices; the backward is ``snnir::max_pool2d_backward``."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):  # noqa: D102
        y, idx = torch.ops.snnir.max_pool2d(x, kernel, stride, padding)
        ctx.save_for_backward(x, idx)
        ctx.geometry = (kernel, stride, padding)
        return y

    @staticmethod
    def backward(ctx, gy):  # noqa: D102
        x, idx = ctx.saved_tensors
        return torch.ops.snnir.max_pool2d_backward(gy, x, idx, *ctx.geometry), None, None, None


def _out_format(x: torch.Tensor) -> torch.memory_format:
    """The layout of both ops' outputs (as ATen's pooling chooses it for its input)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _pool_op(x, kernel, stride, padding):
    if _kernel_applies(x):
        return _forward_kernel(x, _geometry(x, kernel, stride, padding))
    y, idx = torch.ops.aten.max_pool2d_with_indices(x, kernel, stride, padding)
    fmt = _out_format(x)
    return y.contiguous(memory_format=fmt), idx.contiguous(memory_format=fmt)


def _pool_backward_op(gy, x, idx, kernel, stride, padding):
    if idx.dtype == torch.uint8:
        gx = _backward_kernel(gy, idx, x.shape, _geometry(x, kernel, stride, padding))
    else:
        gx = torch.ops.aten.max_pool2d_with_indices_backward(gy, x, kernel, stride, padding, [1, 1], False, idx)
    return gx.contiguous(memory_format=_out_format(x))


def _out_shape(x, kernel, stride, padding) -> tuple[int, ...]:
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    H, W = x.shape[-2:]
    return (*x.shape[:-2], (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)


def _pool_fake(x, kernel, stride, padding):
    shape, fmt = _out_shape(x, kernel, stride, padding), _out_format(x)
    idx_dtype = torch.uint8 if _kernel_applies(x) else torch.int64
    return (x.new_empty(shape).contiguous(memory_format=fmt),
            x.new_empty(shape, dtype=idx_dtype).contiguous(memory_format=fmt))


def _pool_backward_fake(gy, x, idx, kernel, stride, padding):
    return x.new_empty(x.shape, dtype=gy.dtype).contiguous(memory_format=_out_format(x))


def max_pool2d(x: torch.Tensor, kernel_size, stride=None, padding=0) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size, stride, padding)`` by the compiled kernel (see ``supported``).

    Example:
        >>> import torch
        >>> from torch.nn import functional as F
        >>> from snnir.backends.torch.pool_kernel import max_pool2d
        >>> x = torch.rand(4, 3, 9, 9, requires_grad=True)
        >>> torch.equal(max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
        True
    """
    stride = kernel_size if stride is None or stride == [] or stride == () else stride
    args = (_pair(kernel_size), _pair(stride), _pair(padding))
    if torch.compiler.is_compiling() or type(x) is not torch.Tensor:  # one opaque op for the compiler
        return _TracedMaxPool2d.apply(x, *args)
    return _MaxPool2d.apply(x, *args)


def _define_ops(lib: torch.library.Library) -> None:
    lib.define("max_pool2d(Tensor x, int[2] kernel, int[2] stride, int[2] padding) -> (Tensor, Tensor)")
    lib.define("max_pool2d_backward(Tensor grad, Tensor x, Tensor indices, int[2] kernel, int[2] stride, "
               "int[2] padding) -> Tensor")
    lib.impl("max_pool2d", _pool_op, "CompositeExplicitAutograd")
    lib.impl("max_pool2d_backward", _pool_backward_op, "CompositeExplicitAutograd")
    torch.library.register_fake("snnir::max_pool2d", _pool_fake, lib=lib)
    torch.library.register_fake("snnir::max_pool2d_backward", _pool_backward_fake, lib=lib)


define_once("pool", _define_ops)
