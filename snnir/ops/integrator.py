"""The ``integrator`` op: a neuron model run without firing, whose output is its voltage ``v``.

NIR's non-spiking nodes are these: ``LI`` (a leaky integrator, model ``LIF``), ``CubaLI`` (model
``CubaLIF``: a synaptic current feeding a leaky voltage) and ``I`` (model ``IF``). The dynamics
are the model's charge equations with no threshold and no reset, e.g. for ``LIF`` with
``decay_input=False``: ``v[t] = v - (v - v_reset) / tau + x``; ``y[t] = v[t]``. ``v_reset`` is
the leak target and the initial voltage (NIR's ``v_leak``).

Attributes: ``model`` (a registered ``NeuronModel`` without spike-triggered updates),
``v_reset``, then the model's parameters and options (as for ``neuron``; any parameter may instead
be a per-neuron array in ``params``).
"""

from __future__ import annotations

from typing import Any

from snnir.errors import GraphError
from snnir.neurons import get_model
from snnir.ops.neuron import check_lowerable, check_parameter_arrays, model_attrs
from snnir.ops.registry import OpSpec, Shape, register_op


def _normalize(attrs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    if "model" not in attrs:
        raise GraphError("integrator op needs a 'model' attribute naming a NeuronModel")
    model = get_model(attrs["model"])
    if model.learnable:
        raise GraphError(f"integrator: model {model.name} has learnable parameters {list(model.learnable)}; "
                         "use a model with fixed parameters")
    if model.equations(reset="none").reset:
        raise GraphError(f"integrator: model {model.name} has spike-triggered updates, which need firing")
    out: dict[str, Any] = {"model": model.name}
    if "v_reset" not in params:
        out["v_reset"] = float(attrs.get("v_reset", model.all_params()["v_reset"]))
    out = model_attrs(model, attrs, out, f"integrator with model {model.name}", params)
    model.check_params({**out, **params}, who=f"integrator with model {model.name}")
    return out


def _state(attrs: dict[str, Any], shape: Shape, in_shape: Shape) -> dict[str, Shape]:
    return dict.fromkeys(get_model(attrs["model"]).state, shape)


def _infer(attrs: dict[str, Any], params: dict[str, Any], in_shapes: list[Shape]) -> Shape:
    model = get_model(attrs["model"])
    check_parameter_arrays(f"integrator with model {model.name}", params, {"v_reset", *model.params}, in_shapes[0])
    check_lowerable(model, "none", attrs)
    return in_shapes[0]


register_op(OpSpec("integrator", _infer, state=_state,
                   normalize=_normalize,
                   doc="A neuron model's charge equations without firing; the output is the voltage v."))
