"""Stateless layers with single- and multi-step modes, and the small ops the graph needs.

Multi-step input ``[T, N, ...]`` is folded into ``[T*N, ...]`` so each layer is one call over the
whole sequence. Dropout keeps one mask for every time step of a sequence.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import buffers, pool_kernel, skinny_kernel, spike_linear
from .base import FoldTime, StepModule, check_step_mode, check_time_axis


def _init_step(module: StepModule, step_mode: str) -> None:
    module.step_mode = check_step_mode(step_mode)


def _folded(torch_layer: type[nn.Module]) -> type[nn.Module]:
    """``torch_layer`` with a ``step_mode`` argument, folding time into batch in multi-step mode."""

    def __init__(self, *args: Any, step_mode: str = "s", **kwargs: Any) -> None:
        torch_layer.__init__(self, *args, **kwargs)
        _init_step(self, step_mode)

    doc = (f"``torch.nn.{torch_layer.__name__}`` with ``step_mode``: in ``'m'`` mode ``[T, N, ...]`` "
           "is folded into ``[T*N, ...]``; other arguments are torch's.")
    return type(torch_layer.__name__, (FoldTime, torch_layer),
                {"__init__": __init__, "__doc__": doc, "__module__": __name__})


class Linear(_folded(nn.Linear)):
    """``torch.nn.Linear`` with ``step_mode`` (``[T, N, ...]`` folded into ``[T*N, ...]`` in ``'m'``
    mode). With few outputs (a readout: at most ``skinny_kernel.tile()``, 10 with AVX-512) and
    many rows, float32 CPU inputs run snnir's few-output kernels (``skinny_kernel``: ~2x MKL's
    forward there, and a weight gradient that uses both threads); otherwise torch's linear.

    ``spike_input = True`` (set by the torch lowering where the input is a neuron's output) lets
    a layer with more outputs skip the zeros of a sparse input (``spike_linear``: at most
    ``MAX_DENSITY`` nonzero, counted per call; float32/float64 CPU). Either way only the float
    summation order differs from torch's.
    """

    spike_input = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.product(x, self.weight, self.bias)

    def product(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``forward`` with the given ``weight`` and ``bias``: the same kernel choice, so a value
        computed again from the tensors a forward used (``recompute``) is the same bits."""
        if x.dim() == 2 and x.shape[0] < skinny_kernel.MIN_ROWS:  # a few rows (streaming): BLAS, straight away
            return F.linear(x, weight, bias) if self.step_mode == "s" else self._dense(x, weight, bias)
        if x.dim() >= (3 if self.step_mode == "m" else 2) and x.shape[-1] == self.in_features:
            rows = x.reshape(-1, x.shape[-1])
            if skinny_kernel.supported(rows, weight):
                return skinny_kernel.linear(rows, weight, bias).view(*x.shape[:-1], self.out_features)
            if (self.spike_input and self.out_features >= spike_linear.MIN_OUTPUTS
                    and not torch.is_autocast_enabled(x.device.type)):
                density = spike_linear.event_density(rows, weight)
                if density is not None:
                    y = spike_linear.linear(rows, weight, bias, density)
                    return y.view(*x.shape[:-1], self.out_features)
        return self._dense(x, weight, bias)

    def _dense(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """torch's linear, time folded into batch in ``'m'`` mode (``FoldTime``'s checks and errors)."""
        if self.step_mode == "s":
            return F.linear(x, weight, bias)
        if x.dim() < 2:
            return super().forward(x)  # FoldTime's error for a missing time axis
        return F.linear(x.flatten(0, 1), weight, bias).unflatten(0, x.shape[:2])


Conv1d = _folded(nn.Conv1d)


class Conv2d(_folded(nn.Conv2d)):
    """``torch.nn.Conv2d`` with ``step_mode`` (``[T, N, ...]`` folded into ``[T*N, ...]`` in ``'m'``
    mode). ``channels_last_on_cpu = True`` (set by ``snnir.compile``'s automatic layout) runs a CPU
    input channels-last, oneDNN's native layout (a contiguous NCHW input is reordered inside every
    call, forward and backward, and the next layers get channels-last activations, which snnir's
    BatchNorm, neuron and pooling kernels read as they are). The weight is left as it is: oneDNN
    reorders it anyway, and its gradient keeps the parameter's layout.
    """

    channels_last_on_cpu = False

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # traced too: Inductor runs CPU convolutions channels-last anyway, and the custom ops after
        # them (BatchNorm statistics, neurons, pooling) are traced with the strides they will get
        if (self.channels_last_on_cpu and input.dim() == 4 and input.device.type == "cpu"
                and onednn_enabled()):
            input = input.contiguous(memory_format=torch.channels_last)
        return super()._conv_forward(input, weight, bias)


@torch._dynamo.assume_constant_result  # traced: a constant of the graph (dynamo skips torch.backends)
def onednn_enabled() -> bool:
    """Whether torch runs CPU convolutions with oneDNN (mkldnn) here, the library whose
    channels-last kernels the automatic layout is for."""
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


BatchNorm1d = _folded(nn.BatchNorm1d)
BatchNorm2d = _folded(nn.BatchNorm2d)
MaxPool1d = _folded(nn.MaxPool1d)


class MaxPool2d(_folded(nn.MaxPool2d)):
    """``torch.nn.MaxPool2d`` with ``step_mode`` (``[T, N, ...]`` folded into ``[T*N, ...]`` in
    ``'m'`` mode), computed by snnir's compiled CPU kernel where it applies (float32/float64 CPU
    tensors, no dilation, no ``ceil_mode``/``return_indices``): same outputs and gradients as
    torch's, with one-byte indices (see ``pool_kernel``); otherwise by torch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_time_axis(self, x)
        folded = x.flatten(0, 1) if self.step_mode == "m" and x.dim() == 5 else x
        if not pool_kernel.supported(folded, self.kernel_size, self.stride, self.padding, self.dilation,
                                     self.ceil_mode, self.return_indices):
            return super().forward(x)
        y = pool_kernel.max_pool2d(folded, self.kernel_size, self.stride, self.padding)
        return y.unflatten(0, x.shape[:2]) if folded is not x else y


AvgPool1d = _folded(nn.AvgPool1d)
AvgPool2d = _folded(nn.AvgPool2d)
AdaptiveAvgPool1d = _folded(nn.AdaptiveAvgPool1d)
AdaptiveAvgPool2d = _folded(nn.AdaptiveAvgPool2d)
Flatten = _folded(nn.Flatten)
ReLU = _folded(nn.ReLU)
# per-sample ranks of the layers whose input layout is fixed: (C, L) or (C, H, W), BatchNorm1d (F) or (C, L)
for _layer, _ranks in [(Conv1d, (2,)), (Conv2d, (3,)), (BatchNorm1d, (1, 2)), (BatchNorm2d, (3,)),
                       (MaxPool1d, (2,)), (MaxPool2d, (3,)), (AvgPool1d, (2,)), (AvgPool2d, (3,)),
                       (AdaptiveAvgPool1d, (2,)), (AdaptiveAvgPool2d, (3,))]:
    _layer.sample_ranks = _ranks


class Dropout(StepModule):
    """Dropout whose mask is drawn once per sequence and shared by all time steps.

    ``channelwise=True`` (``Dropout2d``) drops whole channels. In single-step mode the mask is
    drawn at the first step after ``reset()``.

    In multi-step mode the mask is also kept across calls until ``reset()``, so a sequence fed in
    several blocks of time steps sees one mask.

    Example:
        >>> import torch
        >>> d = Dropout(0.5, step_mode="m"); _ = torch.manual_seed(0)
        >>> y = d(torch.ones(4, 2, 8))
        >>> bool((y == y[0]).all())    # same mask at every step
        True
    """

    channelwise = False

    def __init__(self, p: float = 0.5, step_mode: str = "s") -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        _init_step(self, step_mode)
        self.register_buffer("mask", None, persistent=False)

    def _draw(self, like: torch.Tensor) -> torch.Tensor:
        shape = like.shape[:2] + (1,) * (like.dim() - 2) if self.channelwise else like.shape
        keep = torch.rand(shape, device=like.device) >= self.p
        return keep.to(like.dtype) / (1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        step = x[0] if self.step_mode == "m" else x
        if self.mask is None or self.mask.shape[0] != step.shape[0]:
            self.mask = self._draw(step)
        return x * (self.mask.unsqueeze(0) if self.step_mode == "m" else self.mask)

    def reset(self) -> None:
        self.mask = None

    def extra_repr(self) -> str:
        return f"p={self.p}, step_mode={self.step_mode}"


class Dropout2d(Dropout):
    """``Dropout`` over whole channels (input ``[N, C, H, W]``), one mask per sequence."""

    channelwise = True


class Scale(StepModule):
    """``y = factor * x`` (the graph's ``scale`` op; ``x * 0.5`` in a traced model)."""

    def __init__(self, factor: float, step_mode: str = "s") -> None:
        super().__init__()
        self.factor = float(factor)
        _init_step(self, step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}, step_mode={self.step_mode}"


class Add(StepModule):
    """Element-wise sum of its inputs (residual connections)."""

    def __init__(self, step_mode: str = "s") -> None:
        super().__init__()
        _init_step(self, step_mode)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = buffers.add(out, x)
        return out


class Cat(StepModule):
    """Concatenation along per-sample ``axis`` (0 = channels), in either step mode."""

    def __init__(self, axis: int, step_mode: str = "s") -> None:
        super().__init__()
        self.axis = int(axis)
        _init_step(self, step_mode)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis + (2 if self.step_mode == "m" else 1))

    def extra_repr(self) -> str:
        return f"axis={self.axis}, step_mode={self.step_mode}"


class Affine(StepModule):
    """``y = x * weight + bias``, scalars or one value per channel (the per-sample axis 0)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, step_mode: str = "s") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float32).clone())
        self.bias = nn.Parameter(torch.as_tensor(bias, dtype=torch.float32).clone())
        _init_step(self, step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = 2 if self.step_mode == "m" else 1
        shape = (-1,) + (1,) * (x.dim() - lead - 1)
        w = self.weight.view(shape) if self.weight.dim() else self.weight
        b = self.bias.view(shape) if self.bias.dim() else self.bias
        return x * w + b


class Constant(StepModule):
    """A per-sample constant, broadcast to the batch (and time) of ``like``."""

    def __init__(self, value: torch.Tensor, step_mode: str = "s") -> None:
        super().__init__()
        self.register_buffer("value", torch.as_tensor(value, dtype=torch.float32).clone())  # as Affine's params
        _init_step(self, step_mode)

    def forward(self, like: torch.Tensor) -> torch.Tensor:
        lead = like.shape[:2] if self.step_mode == "m" else like.shape[:1]
        return self.value.expand(*lead, *self.value.shape)


class Clip(StepModule):
    """``y = clamp(x, min, max)`` (ReLU6 is ``Clip(0, 6)``)."""

    def __init__(self, min: float | None = None, max: float | None = None, step_mode: str = "s") -> None:
        super().__init__()
        self.min, self.max = min, max
        _init_step(self, step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.min is None and self.max is None:  # both sides open: the identity (torch.clamp refuses it)
            return x
        return torch.clamp(x, self.min, self.max)

    def extra_repr(self) -> str:
        return f"min={self.min}, max={self.max}, step_mode={self.step_mode}"


class SpikingMaxPool2d(StepModule):
    """Max pooling for spike trains: per window, the spike of the input with the highest spike
    count so far (Rueckauer et al. 2017; ties go to the first input of the window).

    Example:
        >>> import torch
        >>> pool = SpikingMaxPool2d(2, step_mode="m")
        >>> x = torch.tensor([[1., 0., 1., 0.], [1., 1., 0., 0.], [0., 1., 1., 0.]]).view(3, 1, 1, 2, 2)
        >>> pool(x).flatten().tolist()   # counts after each step: [1,0,1,0], [2,1,1,0], [2,2,2,0]
        [1.0, 1.0, 0.0]
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, step_mode: str = "s"):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        _init_step(self, step_mode)
        self.register_buffer("count", None, persistent=False)

    def _gate(self, count: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        _, idx = F.max_pool2d(count, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                              return_indices=True)
        return x.flatten(-2).gather(-1, idx.flatten(-2)).view_as(idx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            self.count = x.detach() if self.count is None else self.count + x.detach()
            return self._gate(self.count, x)
        counts = torch.cumsum(x.detach(), 0) + (self.count if self.count is not None else 0)
        self.count = counts[-1]
        return self._gate(counts.flatten(0, 1), x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def reset(self) -> None:
        self.count = None
