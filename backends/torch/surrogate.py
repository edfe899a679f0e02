"""The spike function: Heaviside forward, the surrogate's compiled ``g'`` backward."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch

from snnir.surrogate import Surrogate

from .codegen import compile_expr


@cache
def _derivative_fn(cls: type[Surrogate]) -> Callable[..., torch.Tensor]:
    return compile_expr(cls.derivative_expr(), ("x", *cls.params))


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
        return grad * _derivative_fn(type(s))(x, **s.values), None


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
    fn = _primitive_fn(type(surrogate))
    return fn(x, **surrogate.values)


@cache
def _primitive_fn(cls: type[Surrogate]) -> Callable[..., torch.Tensor]:
    return compile_expr(cls.primitive_expr(), ("x", *cls.params))
