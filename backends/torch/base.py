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


_AXES = {1: "F", 2: "C, L", 3: "C, H, W"}


def check_time_axis(module: StepModule, x: torch.Tensor) -> None:
    """Refuse an input whose rank does not fit ``module.sample_ranks`` (the per-sample ranks of a
    layer such as a conv) in the module's step mode, saying whether the time axis is missing or
    extra: a conv would otherwise fail inside torch, or a pool take time for batch."""
    ranks = getattr(module, "sample_ranks", ())
    multi = module.step_mode == "m"
    lead = 2 if multi else 1
    if not ranks or x.dim() - lead in ranks:
        return
    layouts = " or ".join(f"[{'T, ' if multi else ''}N, {_AXES.get(r, '...')}]" for r in ranks)
    msg = (f"{type(module).__name__} (step_mode={module.step_mode!r}) expects {layouts}, got shape "
           f"{list(x.shape)}")
    if multi and x.dim() - 1 in ranks:
        msg += ": the time axis is missing. Pass [T, N, ...], or use step_mode='s' (snn.set_step_mode) for one step"
    elif not multi and x.dim() - 2 in ranks:
        msg += ": this is a sequence. Use step_mode='m' (snn.set_step_mode) to run [T, N, ...] in one call"
    raise ValueError(msg)


class FoldTime(StepModule):
    """A stateless layer: in multi-step mode ``[T, N, ...]`` is folded to ``[T*N, ...]``.

    Subclasses put ``FoldTime`` before the torch layer in their bases, so ``super().forward`` is
    the torch layer's own forward. ``sample_ranks`` (e.g. ``(3,)`` for a 2-d conv's ``(C, H, W)``)
    lets ``check_time_axis`` name a missing or extra time axis.
    """

    sample_ranks: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_time_axis(self, x)
        if self.step_mode == "s":
            return super().forward(x)
        if x.dim() < 2:
            raise ValueError(f"{type(self).__name__} in multi-step mode expects [T, N, ...], got "
                             f"shape {tuple(x.shape)}")
        y = super().forward(x.flatten(0, 1))
        return y.unflatten(0, x.shape[:2])
