"""Whole-network helpers: reset state, switch step mode, run a sequence."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .base import StepModule, check_step_mode


def reset(net: nn.Module) -> None:
    """Reset the state of every stateful module in ``net`` (neurons, dropout masks).

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> lif = snn.LIF(); _ = lif(torch.ones(2, 3)); snn.reset(lif); lif.v is None
        True
    """
    for m in net.modules():
        if isinstance(m, StepModule) and callable(getattr(m, "reset", None)):
            m.reset()


def set_step_mode(net: nn.Module, step_mode: str) -> nn.Module:
    """Set ``step_mode`` ('s' or 'm') on every snnir module in ``net``; returns ``net``."""
    step_mode = check_step_mode(step_mode)
    for m in net.modules():
        if isinstance(m, StepModule):
            m.step_mode = step_mode
    return net


@contextmanager
def step_mode(net: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Temporarily set ``net``'s step mode (restored on exit)."""
    saved = {m: m.step_mode for m in net.modules() if isinstance(m, StepModule)}
    set_step_mode(net, mode)
    try:
        yield net
    finally:
        for m, s in saved.items():
            m.step_mode = s


# Torch layers that accept any leading axes, so [T, N, ...] passes through them unchanged.
_SHAPE_AGNOSTIC = (nn.ReLU, nn.Identity, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.GELU)


def _foldable(net: nn.Module) -> bool:
    if isinstance(net, StepModule) or isinstance(net, _SHAPE_AGNOSTIC):
        return True
    if type(net) in (nn.Sequential, nn.ModuleList) or type(net).forward is nn.Sequential.forward:
        return all(_foldable(m) for m in net.children())
    return False


def multi_step(net: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Run ``net`` over a whole sequence ``x_seq`` (``[T, N, ...]``), returning ``[T, N, ...]``.

    A network whose snnir modules are all in multi-step mode is called once (its forward is
    written for ``[T, N, ...]``). A ``Sequential`` of snnir modules is switched to multi-step mode
    for the call (time folded into batch for stateless layers, one time loop per neuron layer).
    Any other module is called once per step in single-step mode. State is kept: call
    ``reset(net)`` between sequences.

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> net = torch.nn.Sequential(snn.Linear(4, 2), snn.LIF())
        >>> snn.multi_step(net, torch.rand(5, 3, 4)).shape
        torch.Size([5, 3, 2])
    """
    if x_seq.dim() < 2:
        raise ValueError(f"multi_step expects [T, N, ...] input, got shape {tuple(x_seq.shape)}")
    modes = {m.step_mode for m in net.modules() if isinstance(m, StepModule)}
    if modes == {"m"}:
        return net(x_seq)
    if _foldable(net):
        with step_mode(net, "m"):
            return net(x_seq)
    with step_mode(net, "s"):
        return torch.stack([net(x) for x in x_seq.unbind(0)])
