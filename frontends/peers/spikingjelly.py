"""SpikingJelly 2.0 (``spikingjelly.activation_based``) modules as snnir.

Neurons become ``snnir.nn`` neurons with the same equations (SpikingJelly fires at
``v >= v_threshold``, as snnir does): ``IFNode``/``SimpleIFNode`` -> ``IF``, ``LIFNode`` -> ``LIF``,
``ParametricLIFNode`` -> ``ParametricLIF`` (its ``w``), ``QIFNode`` -> ``QIF``, ``EIFNode`` -> ``EIF``,
``IzhikevichNode`` -> ``AdaptiveQIF``, ``CUBALIFNode`` -> ``CubaLIFDecay``, with ``v_reset``
(``None``: soft reset), ``decay_input``, ``detach_reset``, the step mode and the surrogate (same
name and ``alpha`` convention in ``snnir.surrogate``; ``DeterministicPass`` is ``LeakyKReLU(1, 1)``).

Layers: the ``layer.*`` step-mode wrappers map as the torch layers they subclass (multi-step mode
folds time into batch, which is what a graph node does); ``layer.Flatten`` -> ``snn.Flatten``;
``layer.Dropout``/``Dropout2d`` -> ``snn.Dropout``/``Dropout2d`` (one mask per sequence, as in
SpikingJelly); ``SeqToANNContainer``, ``MultiStepContainer`` and ``StepModeContainer`` -> their
children in sequence; ``VotingLayer`` -> ``reshape`` + ``avgpool1d`` + ``flatten``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import torch
from spikingjelly.activation_based import base, layer, neuron
from spikingjelly.activation_based import surrogate as sj_surrogate
from torch import nn

from snnir import neurons as models
from snnir import nn as snn
from snnir import surrogate as S
from snnir.frontends.peers import Context, Conversion, Framework, register
from snnir.ops.registry import registered_ops


def _step_mode(m: nn.Module) -> str | None:
    if isinstance(m, base.MultiStepModule):
        return "m"
    if isinstance(m, base.SingleStepModule):
        return "s"
    if isinstance(m, base.StepModule):
        return getattr(m, "_step_mode", None)
    return None


_CONTAINERS = (layer.SeqToANNContainer, layer.MultiStepContainer, layer.StepModeContainer)
FRAMEWORK = Framework("SpikingJelly", stateful=lambda m: isinstance(m, base.MemoryModule), step_mode=_step_mode,
                      containers=_CONTAINERS)

# SpikingJelly surrogates whose snnir namesake has the same formula and parameters
_SAME_SURROGATE = ("ATan", "Sigmoid", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign", "SuperSpike", "Erf",
                   "NonzeroSignLogAbs", "PiecewiseLeakyReLU", "S2NN", "QPseudoSpike", "LeakyKReLU", "Rect")


def surrogate_of(fn: Any, ctx: Context) -> S.Surrogate:
    """The snnir surrogate equal to a SpikingJelly ``surrogate_function`` (forward and backward)."""
    name = type(fn).__name__
    if type(fn).__module__ != sj_surrogate.__name__:
        raise ctx.refuse("surrogate_function", fn, "only SpikingJelly's own surrogate classes are mapped")
    if not getattr(fn, "spiking", True):
        raise ctx.refuse("surrogate_function.spiking", False, "the neuron would output the smooth primitive, "
                         "not spikes")
    if isinstance(fn, sj_surrogate.DeterministicPass):
        return S.LeakyKReLU(leak=1.0, k=1.0)
    if name not in _SAME_SURROGATE:
        raise ctx.refuse("surrogate_function", fn, f"snnir has no {name}; use one of {list(_SAME_SURROGATE)}")
    return getattr(S, name)(**{k: float(v) for k, v in fn._sg_params.items()})


def _common(m: nn.Module, ctx: Context) -> dict[str, Any]:
    """The arguments every snnir neuron takes, read from a SpikingJelly neuron."""
    if getattr(m, "_neuron_precision", None) is not None:
        raise ctx.refuse("neuron precision", m._neuron_precision, "snnir neurons compute in the input's dtype")
    return {"v_threshold": float(m.v_threshold), "v_reset": None if m.v_reset is None else float(m.v_reset),
            "surrogate": surrogate_of(m.surrogate_function, ctx), "detach_reset": bool(m.detach_reset),
            "step_mode": m.step_mode}


@register(FRAMEWORK, neuron.IFNode)
def _if(m: neuron.IFNode, ctx: Context) -> Conversion:
    return Conversion(snn.IF(**_common(m, ctx)))


@register(FRAMEWORK, neuron.SimpleIFNode)
def _simple_if(m: neuron.SimpleIFNode, ctx: Context) -> Conversion:
    if m.v_reset not in (None, 0.0):  # SimpleBaseNode starts at v = 0, not at v_reset
        raise ctx.refuse("v_reset", m.v_reset, "SimpleIFNode starts at v = 0 while resetting to v_reset; snnir "
                         "neurons start at v_reset. Use IFNode")
    return Conversion(snn.IF(**_common(m, ctx)))


@register(FRAMEWORK, neuron.LIFNode)
def _lif(m: neuron.LIFNode, ctx: Context) -> Conversion:
    return Conversion(snn.LIF(tau=float(m.tau), decay_input=bool(m.decay_input), **_common(m, ctx)))


@register(FRAMEWORK, neuron.ParametricLIFNode)
def _plif(m: neuron.ParametricLIFNode, ctx: Context) -> Conversion:
    if m.w.numel() != 1:
        raise ctx.refuse("w", tuple(m.w.shape), "snnir's ParametricLIF has one time constant per layer")
    out = snn.ParametricLIF(decay_input=bool(m.decay_input), **_common(m, ctx))
    with torch.no_grad():
        out.w.copy_(m.w.reshape(()))
    return Conversion(out)


@register(FRAMEWORK, neuron.QIFNode)
def _qif(m: neuron.QIFNode, ctx: Context) -> Conversion:
    return Conversion(snn.QIF(tau=float(m.tau), v_c=float(m.v_c), a0=float(m.a0), v_rest=float(m.v_rest),
                              **_common(m, ctx)))


@register(FRAMEWORK, neuron.EIFNode)
def _eif(m: neuron.EIFNode, ctx: Context) -> Conversion:
    return Conversion(snn.EIF(tau=float(m.tau), delta_T=float(m.delta_T), theta_rh=float(m.theta_rh),
                              v_rest=float(m.v_rest), **_common(m, ctx)))


@register(FRAMEWORK, neuron.IzhikevichNode)
def _izhikevich(m: neuron.IzhikevichNode, ctx: Context) -> Conversion:
    if m.detach_reset and m.b != 0.0:
        raise ctx.refuse("detach_reset", True, "SpikingJelly detaches the voltage reset but not the adaptation jump "
                         "b * spike; snnir's detach_reset detaches both")
    params = {k: float(getattr(m, k)) for k in ("tau", "v_c", "a0", "v_rest", "tau_w", "a", "b", "w_rest")}
    return Conversion(snn.Neuron(models.AdaptiveQIF(), **params, **_common(m, ctx)))


@register(FRAMEWORK, neuron.CUBALIFNode)
def _cuba(m: neuron.CUBALIFNode, ctx: Context) -> Conversion:
    return Conversion(snn.Neuron(models.CubaLIFDecay(), c_decay=float(m.c_decay), v_decay=float(m.v_decay),
                                 **_common(m, ctx)))


_TORCH_LAYERS = [getattr(layer, n) for n in layer.stateless_wrapper.__all__ if not n.startswith("WS")]
_TORCH_LAYERS += [layer.BatchNorm1d, layer.BatchNorm2d, layer.BatchNorm3d]


@register(FRAMEWORK, *[c for c in _TORCH_LAYERS if c is not layer.Flatten])
def _torch_layer(m: nn.Module, ctx: Context) -> Conversion:
    # the torch layer it subclasses; its multi-step mode folds time into batch, as a graph node does
    return Conversion(torch_class=next(c for c in type(m).__mro__ if c.__module__.startswith("torch.nn")))


@register(FRAMEWORK, layer.Flatten)
def _flatten(m: layer.Flatten, ctx: Context) -> Conversion:
    # in either step mode its dims count from the batch axis, like snn.Flatten's
    return Conversion(snn.Flatten(m.start_dim, m.end_dim, step_mode=m.step_mode))


@register(FRAMEWORK, layer.Dropout, layer.Dropout2d)
def _dropout(m: layer.Dropout, ctx: Context) -> Conversion:
    cls = snn.Dropout2d if isinstance(m, layer.Dropout2d) else snn.Dropout
    return Conversion(cls(m.p, step_mode=m.step_mode))


@register(FRAMEWORK, *_CONTAINERS)
def _container(m: nn.Sequential, ctx: Context) -> Conversion:
    return Conversion(nn.Sequential(*m), single_step=True)


@register(FRAMEWORK, layer.VotingLayer)
def _voting(m: layer.VotingLayer, ctx: Context) -> Conversion:
    (shape,) = ctx.input_shapes
    if len(shape) != 1:
        raise ctx.error(f"VotingLayer expects [N, features] per step, got per-sample shape {shape}")
    if "reshape" not in registered_ops():
        raise ctx.error("VotingLayer needs the 'reshape' op, which this snnir build lacks")
    k = int(m.voting_size)
    pool = {"kernel_size": k, "stride": k, "padding": 0, "ceil_mode": False, "count_include_pad": True}
    return Conversion(ops=[("reshape", {"shape": (1, shape[0])}, {}), ("avgpool1d", pool, {}),
                           ("flatten", {"start": 0, "end": -1}, {})])


def import_zoo_module(name: str) -> types.ModuleType:
    """``spikingjelly.activation_based.model.<name>`` (``spiking_resnet``, ``sew_resnet``,
    ``spiking_vgg``, ...), importable without torchvision.

    Those modules import torchvision only for ``load_state_dict_from_url`` (pretrained weights).
    Where torchvision is missing, a stand-in module provides that one name (it raises if called)
    while the zoo module imports, and is removed again, so nothing else sees a fake torchvision.

    Example:
        >>> resnet = import_zoo_module("spiking_resnet")
        >>> net = resnet.spiking_resnet18(spiking_neuron=neuron.IFNode, num_classes=10)
    """
    module = f"spikingjelly.activation_based.model.{name}"
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    else:
        return importlib.import_module(module)
    utils = types.ModuleType("torchvision.models.utils")

    def load_state_dict_from_url(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("pretrained SpikingJelly weights need torchvision (pip install torchvision)")

    utils.load_state_dict_from_url = load_state_dict_from_url  # type: ignore[attr-defined]
    fakes = {"torchvision": types.ModuleType("torchvision"),
             "torchvision.models": types.ModuleType("torchvision.models"), "torchvision.models.utils": utils}
    sys.modules.update(fakes)
    try:
        return importlib.import_module(module)
    finally:
        for key in fakes:
            sys.modules.pop(key, None)
