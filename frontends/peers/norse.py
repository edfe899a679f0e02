"""Norse 1.1 cells as snnir.

``LIFCell`` -> ``NorseLIF``, ``LIFBoxCell`` -> ``NorseLIFBox``, ``IAFCell`` -> ``NorseIAF`` neurons;
``LICell``/``LIBoxCell`` -> ``integrator`` nodes (no firing; the output is ``v``) of ``NorseLIF``/
``NorseLIBox``; ``SequentialState`` -> its modules in sequence (the traced model returns what the
last one outputs, without Norse's state list). The models take Norse's ``dt * tau_inv`` products,
computed here as Norse computes them (float32), so each step does Norse's float operations; they
fire at ``v > v_th`` as Norse does. Per-neuron parameter tensors stay per neuron. Surrogates:
``method="super"`` is ``SuperSpike(alpha=1)`` (Norse's ``super_fn`` ignores ``alpha``),
``"heaviside"`` passes no gradient (``LeakyKReLU(0, 0)``).
Cells are single-step modules returning ``(z, state)``; ``[0]`` (the spikes) is traced. The
sequence modules ``LIF``, ``IAF`` and ``LI`` (whole ``[T, N, ...]`` sequences per call) map the same way.
"""

from __future__ import annotations

from typing import Any

import norse.torch as norse
import torch
from norse.torch.functional.reset import reset_subtract, reset_value
from norse.torch.module.snn import SNN, SNNCell, SNNRecurrentCell
from torch import nn

from snnir import neurons as models
from snnir import nn as snn
from snnir import surrogate as S
from snnir.frontends.peers import Context, Conversion, Framework, register

_STATEFUL = (SNNCell, SNN, SNNRecurrentCell)
FRAMEWORK = Framework("Norse", stateful=lambda m: isinstance(m, _STATEFUL),
                      step_mode=lambda m: "s" if isinstance(m, SNNCell) else "m" if isinstance(m, SNN) else None)


def _value(p: Any, name: str, ctx: Context) -> torch.Tensor:
    t = torch.as_tensor(getattr(p, name))
    if t.dtype != torch.float32:
        raise ctx.refuse(f"p.{name}.dtype", t.dtype, "Norse would compute this cell in another precision")
    return t.detach()  # (IAFCell's initial_state marks p.v_reset requires_grad)


def _number(t: torch.Tensor) -> float | torch.Tensor:
    """One value per layer as a float; per-neuron values stay a tensor (broadcast like Norse's)."""
    return float(t) if t.numel() == 1 else t.clone()


def _rate(m: SNNCell | SNN, p: Any, name: str, ctx: Context) -> float | torch.Tensor:
    """``dt * p.<name>`` as Norse computes it every step (a float32 product)."""
    return _number(m.dt * _value(p, name, ctx))


def _surrogate(p: Any, ctx: Context) -> S.Surrogate:
    if p.method == "super":
        return S.SuperSpike(alpha=1.0)  # norse.torch.functional.superspike divides by (|x| + 1)^2, no alpha
    if p.method == "heaviside":
        return S.LeakyKReLU(leak=0.0, k=0.0)
    raise ctx.refuse("p.method", p.method, "snnir maps Norse's 'super' and 'heaviside' thresholds")


def _firing(m: SNNCell, ctx: Context) -> dict[str, Any]:
    p = m.p
    return {"v_threshold": _number(_value(p, "v_th", ctx)), "v_reset": _number(_value(p, "v_reset", ctx)),
            "surrogate": _surrogate(p, ctx)}


@register(FRAMEWORK, norse.LIFCell, norse.LIF)
def _lif(m: norse.LIFCell, ctx: Context) -> Conversion:
    p = m.p
    return Conversion(snn.Neuron(models.NorseLIF(), a_mem=_rate(m, p, "tau_mem_inv", ctx),
                                 a_syn=_rate(m, p, "tau_syn_inv", ctx), v_leak=_number(_value(p, "v_leak", ctx)),
                                 **_firing(m, ctx)), outputs=("z", "state"))


@register(FRAMEWORK, norse.LIFBoxCell)
def _lif_box(m: norse.LIFBoxCell, ctx: Context) -> Conversion:
    p = m.p
    firing = _firing(m, ctx)
    if p.reset_method is reset_subtract:
        firing["v_reset"] = None  # (1 - z) v + z (v - v_th): snnir's soft reset
    elif p.reset_method is not reset_value:
        raise ctx.refuse("p.reset_method", p.reset_method, "snnir maps Norse's reset_value and reset_subtract")
    return Conversion(snn.Neuron(models.NorseLIFBox(), a_mem=_rate(m, p, "tau_mem_inv", ctx),
                                 v_leak=_number(_value(p, "v_leak", ctx)), **firing), outputs=("z", "state"))


@register(FRAMEWORK, norse.IAFCell, norse.IAF)
def _iaf(m: norse.IAFCell, ctx: Context) -> Conversion:
    return Conversion(snn.Neuron(models.NorseIAF(), **_firing(m, ctx)), outputs=("z", "state"))


def _integrator(model: str, values: dict[str, float | torch.Tensor]) -> Conversion:
    """An ``integrator`` node: per-layer values are attributes, per-neuron ones arrays (params)."""
    attrs = {"model": model, **{k: v for k, v in values.items() if not torch.is_tensor(v)}}
    params = {k: v.numpy() for k, v in values.items() if torch.is_tensor(v)}
    return Conversion(ops=[("integrator", attrs, params)], outputs=("v", "state"))


@register(FRAMEWORK, norse.LICell, norse.LI)
def _li(m: norse.LICell, ctx: Context) -> Conversion:
    p = m.p
    return _integrator("NorseLIF", {"a_mem": _rate(m, p, "tau_mem_inv", ctx), "a_syn": _rate(m, p, "tau_syn_inv", ctx),
                                    "v_leak": _number(_value(p, "v_leak", ctx))})


@register(FRAMEWORK, norse.LIBoxCell)
def _li_box(m: norse.LIBoxCell, ctx: Context) -> Conversion:
    p = m.p
    return _integrator("NorseLIBox", {"a_mem": _rate(m, p, "tau_mem_inv", ctx),
                                      "v_leak": _number(_value(p, "v_leak", ctx))})


class _Chain(nn.Sequential):
    """``SequentialState`` without its state list: a stateful module's first output feeds the next."""

    def __init__(self, modules: list[nn.Module], stateful: list[bool]) -> None:
        super().__init__(*modules)
        self.stateful = list(stateful)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module, stateful in zip(self, self.stateful):
            x = module(x)[0] if stateful else module(x)
        return x


@register(FRAMEWORK, norse.SequentialState)
def _sequential(m: norse.SequentialState, ctx: Context) -> Conversion:
    if m.return_hidden:
        raise ctx.refuse("return_hidden", True, "the traced model returns the last module's output only")
    return Conversion(_Chain(list(m), m.stateful_layers), outputs=("out", "state"))
