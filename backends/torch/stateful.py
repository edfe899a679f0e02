"""Stateful non-spiking modules: ``SynapseFilter`` (exponential trace), ``Delay``, ``TimeReduce``,
``Recurrent``."""

from __future__ import annotations

import torch
from torch import nn

from .base import StepModule, check_step_mode
from .functional import set_step_mode


class SynapseFilter(StepModule):
    """Exponential synaptic trace: ``i[t] = i[t-1] - i[t-1] / tau + x[t]``, output ``i[t]``.

    Example:
        >>> import torch
        >>> f = SynapseFilter(tau=2.0, step_mode="m")
        >>> f(torch.tensor([[1.0], [0.0], [0.0]])).flatten().tolist()
        [1.0, 0.5, 0.25]
    """

    def __init__(self, tau: float, step_mode: str = "s") -> None:
        super().__init__()
        if not tau >= 1.0:
            raise ValueError(f"SynapseFilter tau must be >= 1, got {tau}")
        self.tau = float(tau)
        self.step_mode = check_step_mode(step_mode)
        self.register_buffer("i", None, persistent=False)

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        i = torch.zeros_like(x) if self.i is None else self.i
        self.i = i - i / self.tau + x
        return self.i

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.single_step(x)
        return torch.stack([self.single_step(xt) for xt in x.unbind(0)])

    def reset(self) -> None:
        self.i = None

    def extra_repr(self) -> str:
        return f"tau={self.tau}, step_mode={self.step_mode}"


class Delay(StepModule):
    """``y[t] = x[t - steps]`` (zeros for the first ``steps`` steps).

    Example:
        >>> import torch
        >>> Delay(2, step_mode="m")(torch.arange(1.0, 5.0).view(4, 1)).flatten().tolist()
        [0.0, 0.0, 1.0, 2.0]
    """

    def __init__(self, steps: int, step_mode: str = "s") -> None:
        super().__init__()
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"Delay steps must be an int >= 1, got {steps!r}")
        self.steps = steps
        self.step_mode = check_step_mode(step_mode)
        self.register_buffer("buffer", None, persistent=False)

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        if self.buffer is None:
            self.buffer = torch.zeros(self.steps, *x.shape, dtype=x.dtype, device=x.device)
        out = self.buffer[0]
        self.buffer = torch.cat([self.buffer[1:], x.unsqueeze(0)])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.single_step(x)
        if self.buffer is None:
            self.buffer = torch.zeros(self.steps, *x.shape[1:], dtype=x.dtype, device=x.device)
        full = torch.cat([self.buffer, x])
        self.buffer = full[-self.steps:]
        return full[: x.shape[0]]

    def reset(self) -> None:
        self.buffer = None

    def extra_repr(self) -> str:
        return f"steps={self.steps}, step_mode={self.step_mode}"


class TimeReduce(StepModule):
    """The mean (or sum) over the time steps seen so far: ``s[t] = s[t-1] + x[t]``, output
    ``s[t] / (t + 1)`` (``mode="mean"``) or ``s[t]`` (``"sum"``); the IR's ``time_reduce``.

    At the last step of a sequence this is ``x.mean(0)`` (``x.sum(0)``) of the whole sequence: the
    sum runs in time order and the mean divides it by the step count, as torch's ``mean`` does. A
    sequence fed in several calls continues the running value until ``reset()``.

    Example:
        >>> import torch
        >>> r = TimeReduce("mean", step_mode="m")
        >>> r(torch.tensor([[1.0], [3.0], [5.0]])).flatten().tolist()
        [1.0, 2.0, 3.0]
    """

    def __init__(self, mode: str = "mean", step_mode: str = "s") -> None:
        super().__init__()
        if mode not in ("mean", "sum"):
            raise ValueError(f"TimeReduce mode must be 'mean' or 'sum', got {mode!r}")
        self.mode = mode
        self.step_mode = check_step_mode(step_mode)
        self.register_buffer("sum", None, persistent=False)
        self.count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x if self.step_mode == "m" else x.unsqueeze(0)
        if self.sum is not None and self.sum.shape != seq.shape[1:]:
            raise RuntimeError(f"TimeReduce holds a running sum of shape {list(self.sum.shape)}, got steps of shape "
                               f"{list(seq.shape[1:])}; call reset() before a new sequence")
        # the running sum in time order (a scan): its last step is the sequential sum torch's mean takes
        sums = torch.cumsum(seq if self.sum is None else torch.cat([self.sum.unsqueeze(0), seq]), 0)
        sums = sums if self.sum is None else sums[1:]
        steps = seq.shape[0]
        self.sum = sums[-1]
        if self.mode == "mean":
            counts = torch.arange(self.count + 1, self.count + steps + 1, dtype=seq.dtype, device=seq.device)
            sums = sums / counts.view(steps, *([1] * (seq.dim() - 1)))
        self.count += steps
        return sums if self.step_mode == "m" else sums[0]

    def reset(self) -> None:
        self.sum = None
        self.count = 0

    def extra_repr(self) -> str:
        return f"mode={self.mode}, step_mode={self.step_mode}"


class Recurrent(StepModule):
    """Feed ``module``'s output at t-1 back into its input at t: ``y[t] = module(x[t] + c(y[t-1]))``.

    ``connection`` is the feedback path: ``None`` for element-wise feedback (identity), or a
    module such as ``snn.Linear(n, n)`` for a linear recurrent layer. ``y[-1] = 0``. The wrapped
    modules run step by step (in either step mode of the wrapper); tracing turns the wrapper into
    a graph cycle that the ``schedule`` pass runs step by step.

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> rnn = snn.Recurrent(snn.LIF(), snn.Linear(4, 4), step_mode="m")
        >>> rnn(torch.rand(10, 2, 4)).shape
        torch.Size([10, 2, 4])
    """

    def __init__(self, module: nn.Module, connection: nn.Module | None = None, step_mode: str = "s") -> None:
        super().__init__()
        self.module = set_step_mode(module, "s")
        self.connection = set_step_mode(connection, "s") if connection is not None else None
        self.step_mode = check_step_mode(step_mode)
        self.register_buffer("y", None, persistent=False)

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        if self.y is not None:
            x = x + (self.connection(self.y) if self.connection is not None else self.y)
        self.y = self.module(x)
        return self.y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the wrapper's own mode decides the input layout; the inner modules always step singly
        set_step_mode(self.module, "s")
        if self.connection is not None:
            set_step_mode(self.connection, "s")
        if self.step_mode == "s":
            return self.single_step(x)
        return torch.stack([self.single_step(xt) for xt in x.unbind(0)])

    def reset(self) -> None:
        self.y = None
