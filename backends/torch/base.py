"""Step modes shared by every ``snnir.nn`` module.

``step_mode='s'``: one call is one time step, input ``[N, ...]``.
``step_mode='m'``: one call is a whole sequence, input ``[T, N, ...]`` (time first).
Stateless layers run multi-step input by folding time into batch (``[T*N, ...]``), one call.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

StepMode = Literal["s", "m"]


def check_step_mode(step_mode: str) -> StepMode:
    if step_mode not in ("s", "m"):
        raise ValueError(f"step_mode must be 's' (single step, [N, ...]) or 'm' (multi step, "
                         f"[T, N, ...]), got {step_mode!r}")
    return step_mode  # type: ignore[return-value]


class StepModule(nn.Module):
    """Mixin carrying ``step_mode``; ``snn.set_step_mode`` and ``snn.multi_step`` switch it."""

    step_mode: StepMode = "s"

    def extra_repr(self) -> str:
        base = super().extra_repr()
        return f"{base}, step_mode={self.step_mode}" if base else f"step_mode={self.step_mode}"


class FoldTime(StepModule):
    """A stateless layer: in multi-step mode ``[T, N, ...]`` is folded to ``[T*N, ...]``.

    Subclasses put ``FoldTime`` before the torch layer in their bases, so ``super().forward`` is
    the torch layer's own forward.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return super().forward(x)
        if x.dim() < 2:
            raise ValueError(f"{type(self).__name__} in multi-step mode expects [T, N, ...], got "
                             f"shape {tuple(x.shape)}")
        y = super().forward(x.flatten(0, 1))
        return y.unflatten(0, x.shape[:2])
