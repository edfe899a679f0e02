"""``Integrator``: a neuron model's charge equations without firing; the output is the voltage.

The torch side of the ``integrator`` op (NIR's ``LI``, ``CubaLI`` and ``I``). The equations are
the model's own, compiled from sympy like a spiking neuron's, with no threshold and no reset.
"""

from __future__ import annotations

from typing import Any

import torch

from snnir.neurons import NeuronModel, get_model

from .base import StepModule, check_step_mode
from .neuron import _check_broadcast, compiled_equations, parameter_value


class Integrator(StepModule):
    """Run ``model``'s charge equations each step and output ``v`` (no spikes, no reset).

    Example:
        >>> import torch
        >>> li = Integrator("LIF", tau=2.0, decay_input=False, step_mode="m")
        >>> li(torch.ones(3, 1, 1)).flatten().tolist()   # v = v - v / 2 + 1
        [1.0, 1.5, 1.75]
    """

    def __init__(self, model: str | NeuronModel, v_reset: Any = 0.0, step_mode: str = "s",
                 **kwargs: Any) -> None:
        super().__init__()
        self.model = get_model(model) if isinstance(model, str) else model
        self.options = {k: bool(kwargs.pop(k)) for k in list(kwargs) if k in self.model.options}
        unknown = set(kwargs) - set(self.model.params)
        if unknown:
            raise TypeError(f"Integrator({self.model.name}) got unknown arguments {sorted(unknown)}")
        # parameters: floats, or per-neuron tensors (buffers) broadcastable to the layer
        self.params: dict[str, Any] = {}
        self._tensor_params: tuple[str, ...] = ()
        for name, value in {"v_reset": v_reset, **{k: kwargs.get(k, d) for k, d in self.model.params.items()}}.items():
            value = parameter_value(f"Integrator({self.model.name})", name, value)
            if isinstance(value, torch.Tensor):
                self.register_buffer(name, value)
                self._tensor_params = (*self._tensor_params, name)
            elif name == "v_reset":
                self.v_reset = value
            else:
                self.params[name] = value
        self.model.check_params({"v_reset": self.v_reset, **self.params,
                                 **{k: getattr(self, k) for k in self._tensor_params}},
                                who=f"Integrator({self.model.name})")
        self.step_mode = check_step_mode(step_mode)
        for name in self.model.state:
            self.register_buffer(name, None, persistent=False)

    def _equations(self):
        return compiled_equations(type(self.model), "none", tuple(sorted(self.options.items())))

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        eqs = self._equations()
        # v_threshold is unused without firing, but it is one of the equations' parameters
        params: dict[str, Any] = {"v_threshold": 0.0, "v_reset": self.v_reset, **self.params}
        for name in self._tensor_params:
            value = getattr(self, name)
            _check_broadcast(f"Integrator({self.model.name})", name, tuple(value.shape), tuple(x.shape[1:]))
            params[name] = value.to(x.dtype)
        uniforms = [u.to(x.dtype) if isinstance(u, torch.Tensor) else u for u in eqs.uniforms(params)]
        state = [getattr(self, k) for k in self.model.state]
        if state[0] is None:
            state = eqs.initial_state(x, params)
        state = eqs.charge(x.dtype)(x, *state, *uniforms)
        for k, value in zip(self.model.state, state):
            setattr(self, k, value)
        return self.v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.single_step(x)
        return torch.stack([self.single_step(xt) for xt in x.unbind(0)])

    def reset(self) -> None:
        for k in self.model.state:
            setattr(self, k, None)

    def extra_repr(self) -> str:
        arrays = {k: tuple(getattr(self, k).shape) for k in self._tensor_params}
        v_reset = arrays.pop("v_reset", None) or self.v_reset
        return f"model={self.model.name}, v_reset={v_reset}, {self.params}, {arrays or ''}{self.options}"
