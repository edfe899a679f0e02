"""snnTorch 1.0 neurons as snnir.

``Leaky`` and ``Synaptic`` become ``SnnTorchLeaky``/``SnnTorchSynaptic`` neurons, whose equations
hold snnTorch's reset timing (``reset_delay``), its ``reset_mechanism`` and its firing rule
(``v > threshold``); ``RLeaky``/``RSynaptic`` wrap those in ``snn.Recurrent`` with the recurrent
connection (``Linear``, ``Conv2d`` or the one-to-one ``V``; its bias, which snnTorch adds from step 0
on, goes in front of the loop); ``Lapicque`` is its input gain
``R * (1 / (R C)) * time_step`` (``scale`` nodes) in front of ``SnnTorchLeaky`` with
``beta = 1 - time_step / (R C)``. Surrogates: ``atan`` -> ``ATan``, ``fast_sigmoid`` ->
``FastSigmoid``, ``sigmoid`` -> ``Sigmoid``, ``straight_through_estimator``/``heaviside``/
``surrogate_disable`` -> ``LeakyKReLU`` with snnTorch's slopes; ``triangular`` ->
``SnnTorchTriangular`` (snnTorch's sign-flipped gradient, kept so the model trains as it did).

Per-neuron parameters (``beta``, ``alpha``, ``threshold`` tensors) stay per neuron, and learned
ones (``learn_beta``, ``learn_threshold``, ...) stay learned (snnTorch clamps ``beta``/``alpha`` to
``[0, 1]`` on every step: a fixed value is clamped once, a learned one must lie inside).

snnTorch neurons are single-step modules (call them once per time step); constructed with
``init_hidden=True`` they return their spikes, otherwise ``(spk, mem)``, whose ``[0]`` is traced.
The recurrent ones sum ``x + V(spk)`` before the leak (snnTorch adds it after ``beta * mem + x``),
so their voltages agree to float rounding.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import snntorch
import torch
from snntorch._neurons.neurons import SpikingNeuron
from torch import nn

from snnir import neurons as models
from snnir import nn as snn
from snnir import surrogate as S
from snnir.frontends.peers import Context, Conversion, Framework, register

FRAMEWORK = Framework("snnTorch", stateful=lambda m: isinstance(m, SpikingNeuron), step_mode=lambda m:
                      "s" if isinstance(m, SpikingNeuron) else None)


def surrogate_of(fn: Any, ctx: Context) -> S.Surrogate:
    """The snnir surrogate equal to a snnTorch ``spike_grad`` (a ``snntorch.surrogate`` factory's)."""
    if getattr(fn, "__qualname__", "") == "SpikingNeuron._surrogate_bypass":  # surrogate_disable=True
        return S.LeakyKReLU(leak=0.0, k=0.0)
    factory = getattr(fn, "__qualname__", "").split(".")[0]
    if getattr(fn, "__module__", None) != "snntorch.surrogate" or factory == "":
        raise ctx.refuse("spike_grad", fn, "only snntorch.surrogate's functions are mapped")
    p = {k: float(v) for k, v in inspect.getclosurevars(fn).nonlocals.items() if isinstance(v, (int, float))}
    table = {"atan": lambda: S.ATan(alpha=p["alpha"]),
             "fast_sigmoid": lambda: S.FastSigmoid(alpha=p["slope"]),
             "sigmoid": lambda: S.Sigmoid(alpha=p["slope"]),
             "straight_through_estimator": lambda: S.LeakyKReLU(leak=1.0, k=1.0),
             "heaviside": lambda: S.LeakyKReLU(leak=0.0, k=1.0),  # gradient = the spike itself
             "triangular": lambda: S.SnnTorchTriangular(threshold=p["threshold"])}  # its sign flip kept
    if factory not in table:
        raise ctx.refuse("spike_grad", f"snntorch.surrogate.{factory}", f"snnir maps {sorted(table)}")
    return table[factory]()


def _param(m: nn.Module, name: str, ctx: Context, clamp: bool = False) -> float | torch.Tensor:
    """A neuron parameter as snnir takes it: a float, a per-neuron tensor (a buffer), or an
    ``nn.Parameter`` when snnTorch learns it (``learn_beta``, ...). ``clamp``: snnTorch clamps the
    value to ``[0, 1]`` every step; a fixed value is clamped here, a learned one must lie inside."""
    t = getattr(m, name)
    learned = isinstance(t, nn.Parameter) and t.requires_grad
    t = torch.as_tensor(t)
    if t.dtype != torch.float32:
        raise ctx.refuse(f"{name}.dtype", t.dtype, "snnTorch would compute this layer in another precision")
    value = t.detach().clamp(0, 1) if clamp else t.detach()
    if learned:
        if clamp and not torch.equal(value, t.detach()):
            raise ctx.refuse(f"learn_{name}", True, f"{name} lies outside [0, 1], where snnTorch clamps it on every "
                             "step; snnir's equation uses it as it is")
        return nn.Parameter(value.clone())
    return float(value) if value.numel() == 1 else value.clone()


def _neuron(m: SpikingNeuron, model: models.NeuronModel, ctx: Context, mechanism: str, delay: bool,
            **params: float) -> snn.Neuron:
    for flag in ("inhibition", "state_quant"):
        if getattr(m, flag):
            raise ctx.refuse(flag, getattr(m, flag), "no snnir equivalent")
    if float(m.graded_spikes_factor) != 1.0 or isinstance(m.graded_spikes_factor, nn.Parameter):
        raise ctx.refuse("graded_spikes_factor", float(m.graded_spikes_factor), "snnir neurons output 0/1 spikes")
    threshold = _param(m, "threshold", ctx)
    return snn.Neuron(model, v_threshold=threshold, reset_mechanism=mechanism, reset_delay=delay,
                      surrogate=surrogate_of(m.spike_grad, ctx), **params)


def _outputs(m: SpikingNeuron, *names: str) -> tuple[str, ...]:
    """What the module returns: its spikes alone with ``init_hidden`` (and no ``output``), else a tuple."""
    return () if m.init_hidden and not m.output else ("spk", *names)


@register(FRAMEWORK, snntorch.Leaky)
def _leaky(m: snntorch.Leaky, ctx: Context) -> Conversion:
    mechanism = {"zero": "zero_leak"}.get(m.reset_mechanism, m.reset_mechanism)  # Leaky zeroes before the leak
    neuron = _neuron(m, models.SnnTorchLeaky(), ctx, mechanism, bool(m.reset_delay),
                     beta=_param(m, "beta", ctx, clamp=True))
    return Conversion(neuron, outputs=_outputs(m, "mem"))


@register(FRAMEWORK, snntorch.Synaptic)
def _synaptic(m: snntorch.Synaptic, ctx: Context) -> Conversion:
    neuron = _neuron(m, models.SnnTorchSynaptic(), ctx, m.reset_mechanism, bool(m.reset_delay),
                     alpha=_param(m, "alpha", ctx, clamp=True), beta=_param(m, "beta", ctx, clamp=True))
    return Conversion(neuron, outputs=_outputs(m, "syn", "mem"))


def _recurrent(m: nn.Module, neuron: snn.Neuron, ctx: Context) -> nn.Module:
    """``RLeaky``/``RSynaptic``: ``neuron`` fed by ``x + V(spk[t-1])``, in a ``snn.Recurrent`` loop.

    snnTorch applies its recurrent layer to the zero spikes of step 0 too, adding its bias; the
    loop's feedback starts at 0, so the bias moves in front of the loop (``x + b + W spk``).
    """
    if not m.all_to_all:  # spk * V: a scale, or an affine with one weight per feature (and no bias)
        v = torch.as_tensor(m.V).detach()
        if v.numel() == 1:
            return snn.Recurrent(neuron, snn.Scale(float(v)))
        if v.dim() != 1:
            raise ctx.refuse("V", tuple(v.shape), "a one-to-one weight is a scalar or one value per feature")
        return snn.Recurrent(neuron, snn.Affine(v, torch.zeros(())))
    connection = copy.deepcopy(m.recurrent)
    bias, connection.bias = connection.bias, None
    loop = snn.Recurrent(neuron, connection)
    if bias is None:
        return loop
    return nn.Sequential(snn.Affine(torch.tensor(1.0), bias.detach()), loop)


@register(FRAMEWORK, snntorch.RLeaky)
def _rleaky(m: snntorch.RLeaky, ctx: Context) -> Conversion:
    neuron = _neuron(m, models.SnnTorchLeaky(), ctx, m.reset_mechanism, bool(m.reset_delay),
                     beta=_param(m, "beta", ctx, clamp=True))
    return Conversion(_recurrent(m, neuron, ctx), outputs=_outputs(m, "mem"))


@register(FRAMEWORK, snntorch.RSynaptic)
def _rsynaptic(m: snntorch.RSynaptic, ctx: Context) -> Conversion:
    neuron = _neuron(m, models.SnnTorchSynaptic(), ctx, m.reset_mechanism, bool(m.reset_delay),
                     alpha=_param(m, "alpha", ctx, clamp=True), beta=_param(m, "beta", ctx, clamp=True))
    return Conversion(_recurrent(m, neuron, ctx), outputs=_outputs(m, "syn", "mem"))


@register(FRAMEWORK, snntorch.Lapicque)
def _lapicque(m: snntorch.Lapicque, ctx: Context) -> Conversion:
    # snnTorch: mem = x * R * (1 / (R C)) * time_step + (1 - time_step / (R C)) * mem, reset delayed
    R, C, dt = (torch.as_tensor(getattr(m, k)) for k in ("R", "C", "time_step"))
    gains = [R, 1 / (R * C), dt]
    decay = 1 - dt / (R * C)
    for name, t in (("R", R), ("C", C), ("time_step", dt)):
        if t.numel() != 1:
            raise ctx.refuse(name, tuple(t.shape), "per-neuron values are not supported")
    if any(g.dtype not in (torch.float32, torch.int64) for g in gains) or decay.dtype != torch.float32:
        raise ctx.refuse("R, C, time_step dtypes", [t.dtype for t in (R, C, dt)], "snnTorch would compute in "
                         "another precision")
    # Lapicque's "zero" zeroes the charged potential, SnnTorchLeaky's "zero"; its reset is always delayed
    neuron = _neuron(m, models.SnnTorchLeaky(), ctx, m.reset_mechanism, True, beta=float(decay))
    scales = [snn.Scale(float(g)) for g in gains if float(g) != 1.0]  # x * 1 is exact: skipped
    return Conversion(nn.Sequential(*scales, neuron) if scales else neuron, outputs=_outputs(m, "mem"))
