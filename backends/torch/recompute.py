"""``linear -> neuron`` without keeping the current for backward (``compile(..., recompute_currents=True)``).

A chain ``linear -> neuron`` computes the current ``I = x W^T + b`` (``[T, N, out]``) and hands it
to the neuron's fused kernel, whose autograd node saves ``I``: its backward re-runs the time loop
from ``I`` and the initial state. The linear's own node already keeps ``x`` and ``W``, so ``I``
can be computed again instead of kept: here the neuron is called under a saved-tensor hook that
replaces the saved current by a recipe (the layer, its ``x``, ``W``, ``b``), and the backward
computes ``I`` again with one forward product (no grad) when the neuron's backward asks for it.
Everything else is the default path's: the same linear kernel (``Linear.product``: few-output,
event-driven spike or torch's; deterministic, so ``I`` is the same bits and so are the spikes
and every gradient), the neuron's own forward and backward kernels, the linear's own backward
(``gx = gI W``, ``gW = gI^T x`` by the kernel the forward chose, ``gb``), learnable neuron
parameters and initial-state gradients as they are.

Trade: per layer one more forward product in backward for ``T * N * out`` values not kept between
forward and backward (the largest saved tensors of an MLP after its inputs). The chain runs the
default way (the current kept) where the recipe could be wrong or is not worth it: no gradient
wanted, ``torch.compile`` tracing, a linear with forward hooks (they could change ``I``), a neuron
that saves the current more than once or as a copy. The saved tensors of the neuron's node that
are not the current go to the hooks around the call (``torch.autograd.graph.save_on_cpu``, a
user's own), as without this module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .layers import Linear


def _outer_hooks() -> tuple[Any, Any] | None:
    """The saved-tensor hooks in force around this call (a private torch accessor; ``None`` if gone)."""
    top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return top(False) if top is not None else None


class _Recipe:
    """How to compute a linear layer's output again: its module (options, kernel choice), input,
    weight, bias and their versions, and the autocast state it ran under."""

    __slots__ = ("layer", "x", "weight", "bias", "versions", "autocast", "shape", "dtype", "saves", "kept")

    def __init__(self, layer: Linear, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 current: torch.Tensor) -> None:
        self.layer, self.x, self.weight, self.bias = layer, x, weight, bias
        self.versions = self._versions()
        device = x.device.type
        self.autocast = (device, torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else None
        self.shape, self.dtype = current.shape, current.dtype
        self.saves = 0  # how many saved tensors of the neuron's node are the current
        self.kept: torch.Tensor | None = None  # the current itself, where it is kept after all

    def _versions(self) -> tuple[int, ...]:
        return tuple(t._version for t in (self.x, self.weight, self.bias) if t is not None)

    def compute(self) -> torch.Tensor:
        if self.kept is not None:
            return self.kept
        if self._versions() != self.versions:
            raise RuntimeError(f"snnir recompute_currents: the input, weight or bias of linear layer {self.layer} was "
                               "modified in place between forward and backward; its output cannot be computed again "
                               "for the neuron's backward (compile without recompute_currents, or modify after "
                               "backward)")
        with torch.no_grad():
            if self.autocast is None:
                current = self.layer.product(self.x, self.weight, self.bias)
            else:
                with torch.autocast(self.autocast[0], dtype=self.autocast[1]):
                    current = self.layer.product(self.x, self.weight, self.bias)
        if current.shape != self.shape or current.dtype != self.dtype or not current.is_contiguous():
            raise RuntimeError(f"snnir recompute_currents: linear layer {self.layer} computed again gave "
                               f"{current.dtype} {tuple(current.shape)}, the forward {self.dtype} {tuple(self.shape)}")
        return current


class _Recomputed:
    """The packed form of a saved view of the current: its recipe and the view's geometry."""

    __slots__ = ("recipe", "size", "stride", "offset")

    def __init__(self, recipe: _Recipe, t: torch.Tensor) -> None:
        self.recipe, self.size, self.stride, self.offset = recipe, t.shape, t.stride(), t.storage_offset()

    def unpack(self) -> torch.Tensor:
        return self.recipe.compute().as_strided(self.size, self.stride, self.offset)


class _Outer:
    """A tensor packed by the hooks around the call (to be unpacked by them)."""

    __slots__ = ("packed", "unpack")

    def __init__(self, packed: Any, unpack: Any) -> None:
        self.packed, self.unpack = packed, unpack


def applies(linear: nn.Module, current: torch.Tensor) -> bool:
    """Whether ``linear``'s output ``current`` can be computed again instead of kept (see the module doc)."""
    return (isinstance(linear, Linear) and torch.is_grad_enabled() and current.requires_grad
            and not torch.compiler.is_compiling() and type(current) is torch.Tensor and current.is_contiguous()
            and current.storage_offset() == 0
            and current.untyped_storage().nbytes() == current.numel() * current.element_size()
            and not (linear._forward_hooks or linear._forward_pre_hooks
                     or nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks))


def linear_neuron(linear: Linear, neuron: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``neuron(linear(x))`` with the current not kept for backward (computed again there).

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> lin, lif = snn.Linear(8, 4, step_mode="m"), snn.LIF(tau=2.0, step_mode="m")
        >>> x = torch.rand(5, 3, 8, requires_grad=True)
        >>> out = linear_neuron(lin, lif, x)
        >>> lif.reset(); ref = lif(lin(x))
        >>> bool(torch.equal(out, ref))
        True
    """
    weight, bias = linear.weight, linear.bias
    current = linear.product(x, weight, bias)
    if not applies(linear, current):
        return neuron(current)
    recipe = _Recipe(linear, x, weight, bias, current)
    storage, device = current.untyped_storage().data_ptr(), current.device
    outer = _outer_hooks()

    def pack(t: torch.Tensor) -> Any:
        # the current, or a view of it (its storage is alive throughout the call: no address reuse)
        if t.device == device and t.dtype == recipe.dtype and t.untyped_storage().data_ptr() == storage:
            recipe.saves += 1
            return _Recomputed(recipe, t)
        return t if outer is None else _Outer(outer[0](t), outer[1])

    def unpack(p: Any) -> torch.Tensor:
        if isinstance(p, _Recomputed):
            return p.unpack()
        if isinstance(p, _Outer):
            return p.unpack(p.packed)
        return p

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        out = neuron(current)
    if recipe.saves > 1:
        # saved several times (a per-step neuron path): computing it once per saved view would cost a
        # product each; keep it as the default path does
        recipe.kept, recipe.x, recipe.weight, recipe.bias = current, None, None, None
    return out
