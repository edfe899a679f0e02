"""Fake quantization with a straight-through estimator, for graphs the ``quantize`` pass marked.

The float weights stay the trainable parameters; the forward uses ``clamp(round(w / s), -q, q) * s``
(``q = 2^(bits-1) - 1``, ``s`` per tensor or per output channel as the pass computed it) and the
backward passes the gradient through unchanged (STE), so quantization-aware fine-tuning works.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


class FakeQuant(nn.Module):
    """Parametrization ``w -> clamp(round(w / scale), -q, q) * scale`` with an STE."""

    def __init__(self, scale: torch.Tensor, bits: int) -> None:
        super().__init__()
        self.register_buffer("scale", scale)
        self.q = 2 ** (bits - 1) - 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = self.scale.view(-1, *([1] * (w.dim() - 1))) if self.scale.dim() else self.scale
        return torch.clamp(_RoundSTE.apply(w / s), -self.q, self.q) * s


def apply_quant(module: nn.Module, quant: dict) -> nn.Module:
    """Attach the fake-quant parametrization described by a node's ``quant`` attribute."""
    scale = torch.tensor(quant["scale"], dtype=torch.float32)
    parametrize.register_parametrization(module, "weight", FakeQuant(scale, int(quant["bits"])))
    return module
