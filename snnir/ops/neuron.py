"""The ``neuron`` op: a layer of spiking neurons running a registered ``NeuronModel``.

Attributes: ``model`` (registered name), ``v_threshold``, ``v_reset`` (``None`` = soft reset),
``detach_reset``, ``surrogate`` (``{"name": ..., **params}``), then the model's own parameters and
options. Learnable model parameters (ParametricLIF's ``w``) are arrays in ``params``.
"""

from __future__ import annotations

from typing import Any

from snnir.errors import GraphError
from snnir.neurons import get_model
from snnir.ops.registry import OpSpec, Shape, register_op
from snnir.surrogate import surrogate_from_dict


def _normalize(attrs: dict[str, Any]) -> dict[str, Any]:
    if "model" not in attrs:
        raise GraphError("neuron op needs a 'model' attribute naming a NeuronModel")
    model = get_model(attrs["model"])
    defaults = model.all_params()
    out: dict[str, Any] = {"model": model.name, "v_threshold": float(attrs.get("v_threshold", defaults["v_threshold"]))}
    v_reset = attrs.get("v_reset", defaults["v_reset"])
    out["v_reset"] = None if v_reset is None else float(v_reset)
    out["detach_reset"] = bool(attrs.get("detach_reset", False))
    out["surrogate"] = surrogate_from_dict(attrs.get("surrogate", {"name": "ATan"})).to_dict()
    out = model_attrs(model, attrs, out, f"neuron model {model.name}",
                      f" (learnable parameters {list(model.learnable)} are params)")
    model.check_params(out, who=f"neuron model {model.name}")
    return out


def model_attrs(model: Any, attrs: dict[str, Any], out: dict[str, Any], who: str, hint: str = "") -> dict[str, Any]:
    """``out`` plus the model's own (non-learnable) parameters and options from ``attrs``, with
    their defaults; any attribute left over is an error naming ``who``."""
    for name, default in model.params.items():
        if name not in model.learnable:
            out[name] = float(attrs.get(name, default))
    for name, default in model.options.items():
        out[name] = bool(attrs.get(name, default))
    unknown = set(attrs) - set(out)
    if unknown:
        raise GraphError(f"{who} has no attribute {sorted(unknown)}; it takes {sorted(out)}{hint}")
    return out


def _state(attrs: dict[str, Any], shape: Shape, in_shape: Shape) -> dict[str, Shape]:
    return dict.fromkeys(get_model(attrs["model"]).state, shape)


def _infer(attrs: dict[str, Any], params: dict[str, Any], in_shapes: list[Shape]) -> Shape:
    model = get_model(attrs["model"])
    missing = set(model.learnable) - set(params)
    if missing:
        raise GraphError(f"neuron model {model.name} needs learnable params {sorted(missing)}")
    return in_shapes[0]


register_op(OpSpec("neuron", _infer, state=_state, normalize=_normalize,
                   doc="A layer of spiking neurons; the model's equations give its dynamics."))
