"""Torch modules for the tensor and element-wise ops (reshape, transpose, slice, reductions, matmul,
activations, broadcasting arithmetic, softmax, layer norm, upsampling).

Their attributes speak of per-sample axes, as the IR's: a module adds its leading axes (``[N]`` in
single-step mode, ``[T, N]`` in multi-step mode) itself. Inputs of a broadcasting op have one
per-sample rank (the graph guarantees it), so ``[lead..., *sample]`` tensors broadcast as samples do.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .base import StepModule, check_step_mode


class _PerSample(StepModule):
    """A stateless op whose attributes are per-sample axes."""

    def __init__(self, step_mode: str = "s") -> None:
        super().__init__()
        self.step_mode = check_step_mode(step_mode)

    @property
    def lead(self) -> int:
        return 2 if self.step_mode == "m" else 1

    def dim(self, axis: int) -> int:
        """The tensor dim of per-sample ``axis`` (negative axes count from the end)."""
        return axis if axis < 0 else axis + self.lead


class Reshape(_PerSample):
    """Each sample laid out as ``shape``."""

    def __init__(self, shape: tuple[int, ...], step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:self.lead], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, step_mode={self.step_mode}"


class Expand(_PerSample):
    """Each sample broadcast to ``shape`` (size-1 axes repeat; a view, no copy)."""

    def __init__(self, shape: tuple[int, ...], step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(*x.shape[:self.lead], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, step_mode={self.step_mode}"


class Transpose(_PerSample):
    """Per-sample axes permuted: output axis i is input axis ``perm[i]``."""

    def __init__(self, perm: tuple[int, ...], step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.perm = tuple(int(p) for p in perm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = self.lead
        return x.permute(*range(lead), *(p + lead for p in self.perm))

    def extra_repr(self) -> str:
        return f"perm={self.perm}, step_mode={self.step_mode}"


class Slice(_PerSample):
    """``x[start:stop:step]`` along per-sample ``axis``."""

    def __init__(self, axis: int, start: int, stop: int, step: int = 1, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.axis, self.start, self.stop, self.step = int(axis), int(start), int(stop), int(step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = [slice(None)] * x.dim()
        index[self.dim(self.axis)] = slice(self.start, self.stop, self.step)
        return x[tuple(index)]

    def extra_repr(self) -> str:
        return f"axis={self.axis}, [{self.start}:{self.stop}:{self.step}], step_mode={self.step_mode}"


class Reduce(_PerSample):
    """``mean`` or ``sum`` over per-sample ``axes``."""

    def __init__(self, kind: str, axes: tuple[int, ...], keepdim: bool = False, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        if kind not in ("mean", "sum"):
            raise ValueError(f"Reduce kind must be 'mean' or 'sum', got {kind!r}")
        self.kind, self.axes, self.keepdim = kind, tuple(int(a) for a in axes), bool(keepdim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(self.dim(a) for a in self.axes)
        fn = torch.mean if self.kind == "mean" else torch.sum
        return fn(x, dim=dims, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"{self.kind}, axes={self.axes}, keepdim={self.keepdim}, step_mode={self.step_mode}"


class MatMul(_PerSample):
    """Batched matrix product of two inputs of one rank (torch.matmul)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "erf": torch.erf, "exp": torch.exp, "sqrt": torch.sqrt,
    "silu": F.silu, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
}


class Elementwise(_PerSample):
    """An element-wise activation by name: sigmoid, tanh, erf, exp, sqrt, silu, hardswish, hardsigmoid,
    gelu (``approximate`` 'none' or 'tanh')."""

    def __init__(self, fn: str, approximate: str = "none", step_mode: str = "s") -> None:
        super().__init__(step_mode)
        if fn != "gelu" and fn not in _UNARY:
            raise ValueError(f"unknown element-wise function {fn!r}; known: gelu, {', '.join(sorted(_UNARY))}")
        self.fn, self.approximate = fn, approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fn == "gelu":
            return F.gelu(x, approximate=self.approximate)
        return _UNARY[self.fn](x)

    def extra_repr(self) -> str:
        extra = f", approximate={self.approximate!r}" if self.fn == "gelu" else ""
        return f"{self.fn}{extra}, step_mode={self.step_mode}"


_BINARY = {"mul": torch.mul, "sub": torch.sub, "div": torch.div}


class Binary(_PerSample):
    """``a * b``, ``a - b`` or ``a / b`` with size-1 axes broadcast."""

    def __init__(self, fn: str, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        if fn not in _BINARY:
            raise ValueError(f"unknown binary function {fn!r}; known: {', '.join(sorted(_BINARY))}")
        self.fn = fn

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _BINARY[self.fn](a, b)

    def extra_repr(self) -> str:
        return f"{self.fn}, step_mode={self.step_mode}"


class Softmax(_PerSample):
    """Softmax along per-sample ``axis``."""

    def __init__(self, axis: int = -1, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.axis = int(axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=self.dim(self.axis))

    def extra_repr(self) -> str:
        return f"axis={self.axis}, step_mode={self.step_mode}"


class LayerNorm(_PerSample):
    """``torch.nn.LayerNorm`` over the trailing ``normalized_shape`` axes, in either step mode."""

    def __init__(self, normalized_shape: tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.normalized_shape, self.eps = tuple(int(s) for s in normalized_shape), float(eps)
        self.weight = nn.Parameter(torch.ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape)) if elementwise_affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, step_mode={self.step_mode}"


class Upsample(_PerSample):
    """Spatial resampling to ``size`` (``[N, C, *spatial]`` per step; time folded into the batch).

    ``scale`` (one factor per spatial axis), when given, is passed to torch as ``scale_factor`` so
    the coordinate map is the one the traced model used.
    """

    def __init__(self, size: tuple[int, ...], mode: str = "nearest", align_corners: bool | None = None,
                 scale: tuple[float, ...] | None = None, step_mode: str = "s") -> None:
        super().__init__(step_mode)
        self.size, self.mode, self.align_corners = tuple(int(s) for s in size), mode, align_corners
        self.scale = None if scale is None else tuple(float(s) for s in scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        folded = x.flatten(0, 1) if self.step_mode == "m" else x
        if self.scale is not None:
            y = F.interpolate(folded, scale_factor=self.scale, mode=self.mode, align_corners=self.align_corners)
        else:
            y = F.interpolate(folded, size=self.size, mode=self.mode, align_corners=self.align_corners)
        return y.unflatten(0, x.shape[:2]) if self.step_mode == "m" else y

    def extra_repr(self) -> str:
        return (f"size={self.size}, mode={self.mode!r}, align_corners={self.align_corners}, scale={self.scale}, "
                f"step_mode={self.step_mode}")
