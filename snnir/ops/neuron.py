"""The ``neuron`` op: a layer of spiking neurons running a registered ``NeuronModel``.

Attributes: ``model`` (registered name), ``v_threshold``, ``v_reset`` (``None`` = soft reset),
``detach_reset``, ``surrogate`` (``{"name": ..., **params}``), then the model's own parameters and
options, and ``learnable`` (parameters trained beyond the model's own, e.g. ``["v_threshold"]``;
present only when not empty).

Every parameter is a scalar attribute or a **per-neuron array** in ``params`` under its name
(then it is not an attribute): broadcastable to the layer's per-sample shape, e.g. ``(C, 1, 1)``
per channel of a ``(C, H, W)`` layer, or the full shape. The model's learnable parameters
(ParametricLIF's ``w``) are always arrays (shape ``()`` for one value per layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snnir.errors import GraphError, ShapeError
from snnir.lowering import lower_equations
from snnir.neurons import get_model
from snnir.ops.registry import OpSpec, Shape, register_op
from snnir.surrogate import surrogate_from_dict


def _normalize(attrs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    if "model" not in attrs:
        raise GraphError("neuron op needs a 'model' attribute naming a NeuronModel")
    model = get_model(attrs["model"])
    defaults = model.all_params()
    out: dict[str, Any] = {"model": model.name}
    if "v_threshold" not in params:
        out["v_threshold"] = float(attrs.get("v_threshold", defaults["v_threshold"]))
    if "v_reset" not in params:
        v_reset = attrs.get("v_reset", defaults["v_reset"])
        out["v_reset"] = None if v_reset is None else float(v_reset)
    out["detach_reset"] = bool(attrs.get("detach_reset", False))
    out["surrogate"] = surrogate_from_dict(attrs.get("surrogate", {"name": "ATan"})).to_dict()
    learnable = [str(n) for n in attrs.get("learnable", ()) if n not in model.learnable]
    if learnable:
        unknown = set(learnable) - set(defaults)
        if unknown:
            raise GraphError(f"learnable names {sorted(unknown)}, which are not parameters of neuron model "
                             f"{model.name} ({sorted(defaults)})")
        out["learnable"] = sorted(set(learnable))
    out = model_attrs(model, attrs, out, f"neuron model {model.name}", params,
                      f" (learnable parameters {list(model.learnable)} are params)")
    model.check_params({**out, **params}, who=f"neuron model {model.name}")  # scalars and per-neuron arrays
    return out


def model_attrs(model: Any, attrs: dict[str, Any], out: dict[str, Any], who: str, params: dict[str, Any],
                hint: str = "") -> dict[str, Any]:
    """``out`` plus the model's own parameters (those not given as arrays in ``params``) and options
    from ``attrs``, with their defaults; any attribute left over is an error naming ``who``."""
    both = sorted(set(attrs) & set(params))
    if both:
        raise GraphError(f"{who}: {both} given both as attributes and as per-neuron arrays (params)")
    for name, default in model.params.items():
        if name not in model.learnable and name not in params:
            out[name] = float(attrs.get(name, default))
    for name, default in model.options.items():
        out[name] = option_value(model, name, attrs.get(name, default))
    unknown = set(attrs) - set(out) - ({"learnable"} if "learnable" in attrs else set())
    if unknown:
        raise GraphError(f"{who} has no attribute {sorted(unknown)}; it takes {sorted(out)}{hint}")
    return out


def option_value(model: Any, name: str, value: Any) -> bool | str:
    """``value`` of option ``name`` as the type of its default (a bool switch or a str form)."""
    default = model.options[name]
    if isinstance(default, bool):
        return bool(value)
    if not isinstance(value, str):
        raise GraphError(f"neuron model {model.name}: option {name!r} takes a string, got {value!r}")
    return value


def check_parameter_arrays(who: str, params: dict[str, Any], names: set[str], shape: Shape) -> None:
    """Every array in ``params`` names a parameter in ``names``, is finite and broadcasts to one
    sample's neurons ``shape`` (never over the batch)."""
    for name, value in params.items():
        if name not in names:
            raise GraphError(f"{who} has no parameter {name!r} (params are per-neuron values of "
                             f"{sorted(names)})")
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise GraphError(f"{who}: parameter {name!r} must be a float array, got dtype {arr.dtype}")
        if not np.isfinite(arr).all():
            raise GraphError(f"{who}: parameter {name!r} has NaN or Inf values")
        if arr.ndim > len(shape) or any(p not in (1, s) for p, s in zip(reversed(arr.shape), reversed(shape))):
            raise ShapeError(f"{who}: parameter {name!r} of shape {arr.shape} does not broadcast to the layer's "
                             f"neurons {tuple(shape)} (per channel: (C, 1, 1); per neuron: the full shape)")


def per_neuron_params(node: Any) -> list[str]:
    """The parameters of a neuron/integrator node given as arrays (per neuron, or learnable), other
    than the model's own learnable ones (which exporters read from ``params`` already): for an
    exporter that only takes one value per layer to refuse with the names."""
    model = get_model(node.attrs["model"])
    return sorted(k for k in node.params if k not in model.learnable)


def parameter_values(node: Any) -> dict[str, float | np.ndarray]:
    """Every equation parameter of a neuron/integrator node: floats (attributes) or float64 arrays
    (per-neuron ``params``, shape ``()`` arrays as floats). ``v_reset`` is 0 under soft reset."""
    model = get_model(node.attrs["model"])
    a = node.attrs
    values: dict[str, float | np.ndarray] = {}
    for name in model.all_params():
        if name in node.params:
            arr = np.asarray(node.params[name], np.float64)
            values[name] = float(arr.reshape(())) if arr.size == 1 and arr.ndim == 0 else arr
        elif name == "v_reset":
            values[name] = 0.0 if a.get("v_reset") is None else float(a["v_reset"])
        else:
            values[name] = float(a.get(name, 0.0))  # v_threshold of an integrator: unused
    return values


def _state(attrs: dict[str, Any], shape: Shape, in_shape: Shape) -> dict[str, Shape]:
    return dict.fromkeys(get_model(attrs["model"]).state, shape)


def _infer(attrs: dict[str, Any], params: dict[str, Any], in_shapes: list[Shape]) -> Shape:
    model = get_model(attrs["model"])
    missing = set(model.learnable) - set(params)
    if missing:
        raise GraphError(f"neuron model {model.name} needs learnable params {sorted(missing)}")
    absent = set(attrs.get("learnable", ())) - set(params)
    if absent:
        raise GraphError(f"learnable parameters {sorted(absent)} must be arrays in params")
    check_parameter_arrays(f"neuron model {model.name}", params, set(model.all_params()), in_shapes[0])
    reset = "soft" if "v_reset" in attrs and attrs["v_reset"] is None else "hard"
    check_lowerable(model, reset, attrs)
    return in_shapes[0]


def check_lowerable(model: Any, reset: str, attrs: dict[str, Any]) -> None:
    """Lower the model's equations (cached), so an unsupported function is refused when the graph
    is validated, with the model and the function named."""
    lower_equations(model.equations(reset=reset, **{k: attrs[k] for k in model.options if k in attrs}))


register_op(OpSpec("neuron", _infer, state=_state, normalize=_normalize,
                   doc="A layer of spiking neurons; the model's equations give its dynamics."))
