"""Encoders: turn a static input ``[N, ...]`` into a spike (or current) sequence ``[T, N, ...]``.

Example:
    >>> import torch
    >>> x = torch.tensor([[0.0, 0.5, 1.0]])
    >>> latency(x, T=3).squeeze(1).T.tolist()      # value 1 fires first, 0 fires last
    [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _check_T(T: int) -> int:
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T (number of time steps) must be a positive int, got {T!r}")
    return T


def _check_unit_range(x: torch.Tensor, what: str) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} input has NaN or Inf values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{what} expects values in [0, 1], got [{x.min().item():.4g}, {x.max().item():.4g}]")


def direct(x: torch.Tensor, T: int) -> torch.Tensor:
    """Repeat the analog input at every step (the first layer integrates it)."""
    return x.unsqueeze(0).expand(_check_T(T), *x.shape)


def poisson(x: torch.Tensor, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each step fires with probability ``x`` (values in [0, 1])."""
    _check_unit_range(x, "poisson encoder")
    noise = torch.rand((_check_T(T), *x.shape), generator=generator, device=x.device, dtype=x.dtype)
    return (noise < x).to(x.dtype)


def latency(x: torch.Tensor, T: int, kind: str = "linear") -> torch.Tensor:
    """One spike per element; larger values fire earlier (values in [0, 1]).

    ``linear``: ``t_f = (T - 1)(1 - x)``; ``log``: ``t_f = (T - 1) - ln(alpha x + 1)`` with
    ``alpha = exp(T - 1) - 1``, so ``x = 1`` fires at step 0 and ``x = 0`` at step ``T - 1``.
    """
    _check_unit_range(x, "latency encoder")
    T = _check_T(T)
    if kind == "linear":
        t_f = (T - 1) * (1 - x)
    elif kind == "log":
        t_f = (T - 1) - torch.log(math.expm1(T - 1) * x + 1)
    else:
        raise ValueError(f"latency kind must be 'linear' or 'log', got {kind!r}")
    t_f = t_f.round().long().clamp_(0, T - 1)
    steps = torch.arange(T, device=x.device).view(T, *([1] * x.dim()))
    return (steps == t_f.unsqueeze(0)).to(x.dtype)


def periodic(pattern: torch.Tensor, T: int) -> torch.Tensor:
    """Repeat a spike pattern ``[P, N, ...]`` periodically to ``T`` steps."""
    T = _check_T(T)
    reps = math.ceil(T / pattern.shape[0])
    return pattern.repeat(reps, *([1] * (pattern.dim() - 1)))[:T]


class _Encoder(nn.Module):
    def __init__(self, T: int) -> None:
        super().__init__()
        self.T = _check_T(T)

    def extra_repr(self) -> str:
        return f"T={self.T}"


class DirectEncoder(_Encoder):
    """Module form of ``direct``: ``[N, ...] -> [T, N, ...]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return direct(x, self.T)


class PoissonEncoder(_Encoder):
    """Module form of ``poisson``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return poisson(x, self.T)


class LatencyEncoder(_Encoder):
    """Module form of ``latency``."""

    def __init__(self, T: int, kind: str = "linear") -> None:
        super().__init__(T)
        if kind not in ("linear", "log"):
            raise ValueError(f"latency kind must be 'linear' or 'log', got {kind!r}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return latency(x, self.T, self.kind)


class PeriodicEncoder(_Encoder):
    """Module form of ``periodic``: ``[P, N, ...] -> [T, N, ...]``."""

    def forward(self, pattern: torch.Tensor) -> torch.Tensor:
        return periodic(pattern, self.T)
