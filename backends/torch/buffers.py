"""A small caching allocator for the large outputs of snnir's CPU kernels.

Why: glibc hands blocks of more than a few MiB back to the OS when they are freed, so a training
step that allocates the same ``[T, N, ...]`` outputs every iteration faults every page of them in
again (4 KiB at a time, about 9 ms per 32 MiB on this machine, more than computing them). This
pool keeps the buffers of the fused neuron and pooling kernels mapped and hands a buffer out again
once no tensor uses it any more, the way PyTorch's CUDA caching allocator does on the GPU. Only
snnir's own kernel outputs go through it; every other allocation is untouched.

A buffer is free when nothing but the pool refers to it (its Python reference count); views,
``.numpy()`` arrays and autograd's saved tensors all keep it in use. The pool holds at most
``max_bytes`` (default 2 GiB, ``SNNIR_BUFFER_POOL_MB`` to change, 0 to disable) and ``release()``
drops every free buffer.

Example:
    >>> import torch
    >>> from snnir.backends.torch.buffers import empty, release
    >>> a = empty((1024, 1024), torch.float32)     # 4 MiB: from the pool
    >>> ptr = a.data_ptr(); del a
    >>> b = empty((512, 2048), torch.float32)      # same size: the same memory, already mapped
    >>> b.data_ptr() == ptr
    True
    >>> release()                                  # b still holds its buffer; the rest is freed
"""

from __future__ import annotations

import math
import os
import sys
import threading

import numpy as np
import torch

from .custom_ops import define_once

MIN_BYTES = 1 << 20  # smaller blocks stay on glibc's heap, which keeps them mapped anyway


# glibc serves a block from fresh mmap pages (faulted in on first touch) when it is larger than its
# mmap threshold, which starts at 128 KiB and rises, up to 32 MiB, each time such a block is freed,
# so a torch program soon keeps blocks of up to 32 MiB on its heap, mapped. Pooled buffers are
# never freed, so in a process where snnir's kernels produce most of the large tensors glibc would
# not adapt, and torch's own large outputs (convolutions, oneDNN's reorders) would fault in every
# step. The pool's first buffer therefore frees one untouched block just under the limit: glibc's
# own adaptation, once (no effect where MALLOC_MMAP_THRESHOLD_ or mallopt fixed the threshold).
_GLIBC_DYNAMIC_MAX = 32 << 20
_adapted = False


def _adapt_glibc_mmap_threshold() -> None:
    global _adapted
    if not _adapted and sys.platform.startswith("linux"):
        block = torch.empty(_GLIBC_DYNAMIC_MAX - (64 << 10), dtype=torch.uint8)  # untouched: no page faulted in
        del block
    _adapted = True


def _limit() -> int:
    try:
        return int(float(os.environ.get("SNNIR_BUFFER_POOL_MB", "2048")) * (1 << 20))
    except ValueError:
        return 2048 << 20


class BufferPool:
    """Large, reusable CPU buffers keyed by their size in bytes (see the module doc)."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = _limit() if max_bytes is None else max_bytes
        self._buffers: dict[int, list[np.ndarray]] = {}
        self._held = 0
        self._lock = threading.Lock()

    @staticmethod
    def _free_indices(same: list[np.ndarray]) -> list[int]:
        # a free buffer is referenced by the pool's list and getrefcount's argument only
        return [i for i in range(len(same)) if sys.getrefcount(same[i]) == 2]

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialized contiguous CPU tensor, from a free pooled buffer when one fits exactly."""
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES or self.max_bytes <= 0:
            return torch.empty(shape, dtype=dtype)
        with self._lock:
            same = self._buffers.setdefault(nbytes, [])
            free = self._free_indices(same)
            buf = same[free[0]] if free else None
            if buf is None:
                if self._held + nbytes > self.max_bytes:
                    self._drop_free()
                if self._held + nbytes > self.max_bytes:
                    return torch.empty(shape, dtype=dtype)  # the pool is full of live buffers
                _adapt_glibc_mmap_threshold()
                buf = np.empty(nbytes, np.uint8)
                same.append(buf)
                self._held += nbytes
            return torch.from_numpy(buf).view(dtype).view(shape)

    def _drop_free(self) -> None:
        for nbytes, same in self._buffers.items():
            for i in reversed(self._free_indices(same)):
                del same[i]
                self._held -= nbytes

    def release(self) -> None:
        """Free every buffer no tensor uses (they go back to the OS)."""
        with self._lock:
            self._drop_free()

    @property
    def held_bytes(self) -> int:
        """Bytes the pool keeps mapped, in use or not."""
        return self._held


POOL = BufferPool()


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """``POOL.empty``: a kernel output buffer (see the module doc)."""
    n = dtype.itemsize
    for s in shape:
        n *= s
    if n < MIN_BYTES:  # small: glibc's heap (no pool bookkeeping)
        return torch.empty(shape, dtype=dtype)
    return POOL.empty(tuple(int(s) for s in shape), dtype)


def release() -> None:
    """``POOL.release()``: return the free pooled buffers to the OS."""
    POOL.release()


class _PooledAdd(torch.autograd.Function):
    """``a + b`` written into a pooled buffer; the gradient passes to both inputs, as ``AddBackward``."""

    @staticmethod
    def forward(ctx, a, b):  # type: ignore[override]
        return torch.add(a, b, out=empty_like(a))

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g, g


def _dense_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The axes of ``t`` in memory order (outermost first) if ``t`` is dense in that order."""
    order = tuple(sorted(range(t.dim()), key=lambda d: (-t.stride(d), d)))
    return order if t.permute(order).is_contiguous() else None


def empty_like(t: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(t)`` for a dense ``t`` (any axis order: contiguous, channels-last, ...),
    from the pool when large: the same shape and strides."""
    order = _dense_order(t)
    if order is None:
        return torch.empty_like(t)
    inv = [0] * len(order)
    for i, d in enumerate(order):
        inv[d] = i
    return empty(tuple(t.shape[d] for d in order), t.dtype).permute(inv)


def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b``, the sum in a pooled buffer when it is large (a residual connection's sum is as
    large as the layer's activations: fresh pages every step otherwise), laid out as the inputs.
    Same values as ``a + b`` (the same kernel); anything but two dense CPU tensors of one shape,
    layout and floating dtype, or below ``MIN_BYTES``, is plain ``a + b``. Under ``torch.compile``
    the sum is the custom op ``snnir::pooled_add`` (Inductor would choose its own layout for the
    sum, and then copy it into the one the next convolution wants, in fresh pages).

    Example:
        >>> import torch
        >>> a, b = torch.rand(512, 1024, requires_grad=True), torch.rand(512, 1024)
        >>> s = add(a, b)
        >>> torch.equal(s, a + b)
        True
        >>> s.sum().backward(); bool((a.grad == 1).all())
        True
    """
    if (a.device.type != "cpu" or b.device.type != "cpu" or a.shape != b.shape or a.dtype != b.dtype
            or not a.is_floating_point() or a.numel() * a.dtype.itemsize < MIN_BYTES or POOL.max_bytes <= 0
            or a.stride() != b.stride() or _dense_order(a) is None):
        return a + b
    if torch.compiler.is_compiling() or type(a) is not torch.Tensor or type(b) is not torch.Tensor:
        return _TracedAdd.apply(a, b)
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return _PooledAdd.apply(a, b)
    return torch.add(a, b, out=empty_like(a))


class _TracedAdd(torch.autograd.Function):
    """``snnir::pooled_add`` with ``AddBackward``'s gradient (what ``torch.compile`` traces)."""

    @staticmethod
    def forward(ctx, a, b):  # type: ignore[override]
        return torch.ops.snnir.pooled_add(a, b)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g, g


def _pooled_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.add(a, b, out=empty_like(a))


def _pooled_add_fake(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(a)


def _define_ops(lib: torch.library.Library) -> None:
    lib.define("pooled_add(Tensor a, Tensor b) -> Tensor")
    lib.impl("pooled_add", _pooled_add, "CompositeExplicitAutograd")
    torch.library.register_fake("snnir::pooled_add", _pooled_add_fake, lib=lib)


define_once("buffer", _define_ops)
