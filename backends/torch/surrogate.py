"""The spike function: Heaviside forward, the surrogate's ``g'`` (printed from the lowering) backward."""

from __future__ import annotations

from functools import cache
from typing import Any

import sympy as sp
import torch

from snnir.lowering import lower_expression
from snnir.surrogate import Surrogate

from .lowered import Prologue, step_function


class _Compiled:
    """A surrogate expression of ``x`` and the parameters: uniforms once per parameter set, then torch ops."""

    def __init__(self, expr: sp.Expr, cls: type[Surrogate]) -> None:
        prologue, self.uniforms, self.body = lower_expression(expr, ("x", *cls.params), ("x",),
                                                              f"surrogate {cls.__name__}")
        self.prologue = Prologue(prologue, self.uniforms)
        self._values: dict[tuple, list[Any]] = {}

    def __call__(self, x: torch.Tensor, values: dict[str, float]) -> torch.Tensor:
        key = tuple(values.items())
        u = self._values.get(key)
        if u is None:
            if len(self._values) > 256:
                self._values.clear()
            u = self.prologue(values)
            u = self._values[key] = [u[n] for n in self.uniforms]
        fn = step_function(self.body, x.dtype, ("x", *self.uniforms), "surrogate")
        return fn(x, *u)[0]


@cache
def _derivative_fn(cls: type[Surrogate]) -> _Compiled:
    return _Compiled(cls.derivative_expr(), cls)


@cache
def _primitive_fn(cls: type[Surrogate]) -> _Compiled:
    return _Compiled(cls.primitive_expr(), cls)


class _SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        s = ctx.surrogate
        return grad * _derivative_fn(type(s))(x, s.values), None


def spike(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """``H(x)`` (1 where ``x >= 0``) whose gradient is ``surrogate``'s ``g'(x)``.

    Example:
        >>> import torch
        >>> from snnir.surrogate import ATan
        >>> x = torch.tensor([-1.0, 0.0, 0.5], requires_grad=True)
        >>> s = spike(x, ATan(alpha=2.0)); s.sum().backward()
        >>> s.tolist(), round(x.grad[1].item(), 4)
        ([0.0, 1.0, 1.0], 1.0)
    """
    return _SpikeFunction.apply(x, surrogate)


def primitive(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """The surrogate's smooth step ``g(x)`` (a differentiable, non-spiking relaxation)."""
    return _primitive_fn(type(surrogate))(x, surrogate.values)


__all__ = ["primitive", "spike"]
