"""Memory layouts of neuron sequences: kernels run over storage order, so no layout is copied.

A fused neuron kernel treats its input as ``[T, N]`` rows in memory order. A sequence
``[T, B, *sample]`` in any dense layout with time outermost (contiguous, channels-last -- what a
channels-last convolution returns, unflattened to ``[T, B, C, H, W]`` -- or any permutation of the
axes) is such a set of rows once its axes are permuted into memory order: ``x.permute(order)`` is
contiguous, a view. The kernel's outputs are viewed back through the inverse permutation, so
spikes keep the input's layout, and autograd maps gradients through the same views. Per-neuron
parameters are laid out in the same order (``sample_order``).

Example:
    >>> import torch
    >>> x = torch.rand(8, 3, 4, 5).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 4))
    >>> storage_order(x)           # [T, B, C, H, W] stored as T, B, H, W, C
    (0, 1, 3, 4, 2)
    >>> sample_order(storage_order(x))   # C, H, W per sample, stored as H, W, C
    (1, 2, 0)
"""

from __future__ import annotations

import torch


def storage_order(x: torch.Tensor, batch_first: bool = False) -> tuple[int, ...] | None:
    """The permutation that puts ``x``'s axes in memory order, time (axis 0) first; ``None`` when
    ``x`` is contiguous or when no permutation makes it dense (callers then copy it).
    ``batch_first``: also require axis 1 (the batch) to come right after time, so that one
    sample's neurons are contiguous (needed by per-neuron parameters)."""
    if x.is_contiguous():
        return None
    rest = sorted(range(1, x.dim()), key=lambda d: (-x.stride(d), d))
    order = (0, *rest)
    if not x.permute(order).is_contiguous():
        return None
    if batch_first and x.dim() > 1 and x.shape[1] > 1 and order[1] != 1:
        return None
    return order


def sample_order(order: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The per-sample part of ``order`` (axes 2..; the batch axis removed), as axes of one sample."""
    if order is None:
        return None
    return tuple(d - 2 for d in order if d >= 2)


def inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(order)
    for i, d in enumerate(order):
        inv[d] = i
    return tuple(inv)
