"""``Integrator``: a neuron model's charge equations without firing; the output is the voltage.

The torch side of the ``integrator`` op (NIR's ``LI``, ``CubaLI`` and ``I``). The equations are
the model's own, compiled from sympy like a spiking neuron's, with no threshold and no reset.
"""

from __future__ import annotations

from typing import Any

import torch

from snnir.neurons import NeuronModel, get_model

from .base import StepModule, check_step_mode
from .neuron import compiled_equations


class Integrator(StepModule):
    """Run ``model``'s charge equations each step and output ``v`` (no spikes, no reset).

    Example:
        >>> import torch
        >>> li = Integrator("LIF", tau=2.0, decay_input=False, step_mode="m")
        >>> li(torch.ones(3, 1, 1)).flatten().tolist()   # v = v - v / 2 + 1
        [1.0, 1.5, 1.75]
    """

    def __init__(self, model: str | NeuronModel, v_reset: float = 0.0, step_mode: str = "s",
                 **kwargs: Any) -> None:
        super().__init__()
        self.model = get_model(model) if isinstance(model, str) else model
        self.options = {k: bool(kwargs.pop(k)) for k in list(kwargs) if k in self.model.options}
        unknown = set(kwargs) - set(self.model.params)
        if unknown:
            raise TypeError(f"Integrator({self.model.name}) got unknown arguments {sorted(unknown)}")
        self.params = {k: float(kwargs.get(k, d)) for k, d in self.model.params.items()}
        self.v_reset = float(v_reset)
        self.model.check_params({"v_reset": self.v_reset, **self.params}, who=f"Integrator({self.model.name})")
        self.step_mode = check_step_mode(step_mode)
        for name in self.model.state:
            self.register_buffer(name, None, persistent=False)

    def _equations(self):
        return compiled_equations(type(self.model), "none", tuple(sorted(self.options.items())))

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        eqs = self._equations()
        # v_threshold is unused without firing, but the compiled functions take every parameter
        params = eqs.with_constants({"v_threshold": 0.0, "v_reset": self.v_reset, **self.params})
        state = {k: getattr(self, k) for k in self.model.state}
        if state["v"] is None:
            state = eqs.initial_state(x, params)
        env: dict[str, Any] = {"x": x, "spike": 0.0, **params, **state}
        for name, fn in eqs.charge:
            env[name] = fn(**env)
        for k in self.model.state:
            setattr(self, k, env[k])
        return env["v"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.single_step(x)
        return torch.stack([self.single_step(xt) for xt in x.unbind(0)])

    def reset(self) -> None:
        for k in self.model.state:
            setattr(self, k, None)

    def extra_repr(self) -> str:
        return f"model={self.model.name}, v_reset={self.v_reset}, {self.params}, {self.options}"
