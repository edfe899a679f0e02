"""BatchNorm -> neuron as one pass: the normalization applied inside the neuron kernel.

``y = bn(x)`` is, per channel, ``y = x * a + b`` with ``a = weight / sqrt(var + eps)`` and
``b = bias - mean * a`` (batch statistics while training, running ones in evaluation). Here the
statistics come from one read of ``x`` (``batchnorm_kernel.channel_stats``), ``a`` and ``b`` go to
the neuron's kernel as two per-neuron input rows (a configuration with ``input_affine``), and
``y`` is never written: the forward reads ``x`` once more and writes spikes. The backward kernel
recomputes ``y`` the same way and returns ``dL/dy``, which BatchNorm's backward turns into the
gradients of ``x``, ``weight`` and ``bias`` (``batchnorm_kernel.batch_norm_backward`` in training,
whose ``dL/dx`` comes from the kernel-output pool instead of fresh pages every step;
``aten::native_batch_norm_backward`` otherwise).
Only ``x`` is kept for the backward, where the unfused pair keeps both ``x`` and ``y``.

Running statistics, ``num_batches_tracked`` and ``momentum=None`` (cumulative average) follow
``torch.nn.BatchNorm*d`` exactly. Statistics are summed in float64 (torch: a float32/float64 mix
of its own order), so ``y`` can differ from torch's in the last bit and a neuron exactly at its
threshold may fire differently. 16-bit inputs (autocast) get float32 statistics and a float32 ``y``,
never rounded to 16 bits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .batchnorm_kernel import channel_stats, training_backward, update_running_stats
from .fused import compute_dtype, cpu_kernel_available


class _BatchNormOutput(torch.autograd.Function):
    """Stands for ``bn(x)`` without computing it: the forward returns ``x`` itself (a view),
    which only the affine neuron kernel reads (it applies ``x * a + b``); the backward receives
    ``dL/dy`` from that kernel and returns BatchNorm's gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd, running_mean, running_var, training, eps):  # type: ignore[override]
        ctx.save_for_backward(x, weight, mean, invstd, running_mean, running_var)
        ctx.training, ctx.eps, ctx.has_bias = training, eps, bias is not None
        return x.view_as(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # type: ignore[override]
        x, weight, mean, invstd, running_mean, running_var = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1],
                ctx.has_bias and ctx.needs_input_grad[2]]
        x4, g4 = x.flatten(0, 1), g.flatten(0, 1)
        if _traced(g4):  # one opaque op, which runs the same kernel
            gx, gw, gb = torch.ops.snnir.batch_norm_backward(g4, x4, weight, mean, invstd, running_mean,
                                                             running_var, ctx.training, ctx.eps, mask)
            gx, gw, gb = (gx if mask[0] else None), (gw if mask[1] else None), (gb if mask[2] else None)
        else:
            gx, gw, gb = training_backward(g4, x4, weight, mean, invstd, running_mean, running_var, ctx.training,
                                           ctx.eps, mask)
        return (gx.view_as(x) if gx is not None else None), gw, gb, None, None, None, None, None, None


_NO_COUNT = torch.zeros((), dtype=torch.long)  # momentum=None without num_batches_tracked: torch's factor 0


def _traced(t: torch.Tensor) -> bool:
    """Whether ``t`` is being traced (``torch.compile``): the kernels then run as custom ops."""
    return torch.compiler.is_compiling() or type(t) is not torch.Tensor


def applies(bn: nn.Module, neuron: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``batchnorm_neuron`` runs this pair (else the modules run one after the other)."""
    from .neuron import Neuron

    if not isinstance(neuron, Neuron) or not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return False
    if bn.step_mode != "m" or neuron.step_mode != "m" or x.dim() < 3 or x.device.type != "cpu":
        return False
    if _hooked(bn) or _hooked(neuron) or not neuron.fused or neuron._fused_key(x) is None:
        return False
    return cpu_kernel_available(neuron._config_key(input_affine=True), x.dtype)


def _hooked(m: nn.Module) -> bool:
    """Hooks (monitors) must see each module called on its own."""
    return bool(m._forward_hooks or m._forward_pre_hooks or nn.modules.module._global_forward_hooks
                or nn.modules.module._global_forward_pre_hooks)


def batchnorm_neuron(bn: nn.modules.batchnorm._BatchNorm, neuron: Any, x: torch.Tensor) -> torch.Tensor:
    """``neuron(bn(x))`` for multi-step ``x`` (``[T, N, C, ...]``) in one neuron pass (see the module doc;
    check ``applies`` first).

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> bn, lif = snn.BatchNorm2d(4, step_mode="m"), snn.LIF(step_mode="m")
        >>> x = torch.randn(3, 2, 4, 5, 5) * 2
        >>> fused = batchnorm_neuron(bn, lif, x)
        >>> bn2, lif2 = snn.BatchNorm2d(4, step_mode="m"), snn.LIF(step_mode="m")
        >>> bool((fused == lif2(bn2(x))).float().mean() > 0.999)
        True
    """
    training = bn.training or bn.running_mean is None
    traced = _traced(x)
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    weight = bn.weight
    dtype = weight.dtype if weight is not None else compute_dtype(x.dtype)  # the statistics' dtype
    with torch.no_grad():
        if training:
            x4 = x.flatten(0, 1)
            mean64, var64 = torch.ops.snnir.channel_stats(x4) if traced else channel_stats(x4)
            if bn.training and bn.running_mean is not None:
                n = x4.numel() // x4.shape[1]
                count = bn.num_batches_tracked if bn.num_batches_tracked is not None else _NO_COUNT
                update = torch.ops.snnir.update_running_stats if traced else update_running_stats
                update(bn.running_mean, bn.running_var, mean64, var64, bn.momentum, count, n)
            mean, invstd = mean64.to(dtype), (var64 + bn.eps).rsqrt().to(dtype)
        else:
            mean = bn.running_mean.to(dtype, copy=True)  # not the buffer itself (dynamo: one tensor, two inputs)
            invstd = (bn.running_var.double() + bn.eps).rsqrt().to(dtype)
        scale = invstd * weight.detach() if weight is not None else invstd
        shift = (bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)) - mean * scale
    running = (None, None) if training else (bn.running_mean, bn.running_var)
    y = _BatchNormOutput.apply(x, weight, bn.bias, mean, invstd, *running, training, bn.eps)
    params = neuron._param_env(x)
    return neuron._run_fused(neuron._config_key(input_affine=True), y, params, affine=(scale, shift))
