"""Spiking neuron modules generated from ``NeuronModel`` equations.

One class, ``Neuron``, runs any model; the built-ins (``LIF``, ``IF``, ...) are one-line
subclasses that fix the model. A user-defined model needs no code beyond its equations:
``snn.Neuron(MyModel(), tau=3.0)`` or ``snn.neuron_class(MyModel)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from torch import nn

from snnir import neurons as models
from snnir.neurons import Equations, NeuronModel
from snnir.surrogate import ATan, Surrogate

from .base import StepModule, check_step_mode
from .codegen import compile_expr
from .fused import fused_steps, get_kernel
from .signature import MODEL_DEFAULT as _DEFAULT
from .signature import neuron_signature
from .surrogate import spike as spike_fn


class CompiledEquations:
    """Torch functions for one ``Equations``: charge, fire and reset, each from its expression."""

    def __init__(self, eq: Equations) -> None:
        self.eq = eq
        args = ("x", "spike", *eq.states, *eq.params, *(k for k, _ in eq.constants))
        self.constants = [(k, compile_expr(e, eq.params, ref=eq.params[0])) for k, e in eq.constants]
        self.charge = [(k, compile_expr(e, args)) for k, e in eq.charge]
        self.fire = compile_expr(eq.fire, args)
        self.reset = [(k, compile_expr(e, args)) for k, e in eq.reset]
        self.init = [(k, compile_expr(e, args)) for k, e in eq.init]

    def with_constants(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` plus the hoisted constants: float64 floats, or tensors if learnable."""
        if not self.constants:
            return params
        learnable = any(torch.is_tensor(v) for v in params.values())
        args = {k: v if torch.is_tensor(v) else torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
        out = dict(params)
        for name, fn in self.constants:
            value = fn(**args)
            out[name] = value if learnable and value.requires_grad else float(value)
        return out

    def step(self, x: torch.Tensor, state: dict[str, torch.Tensor], params: dict[str, Any],
             surrogate: Surrogate, detach_reset: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One time step: returns the spikes and the new state (the input dict is not changed)."""
        env: dict[str, Any] = {"x": x, "spike": 0.0, **params, **state}
        for name, fn in self.charge:
            env[name] = fn(**env)
        spikes = spike_fn(self.fire(**env), surrogate)
        env["spike"] = spikes.detach() if detach_reset else spikes
        for name, fn in self.reset:
            env[name] = fn(**env)
        return spikes, {k: env[k] for k in self.eq.states}

    def initial_state(self, like: torch.Tensor, params: dict[str, Any]) -> dict[str, torch.Tensor]:
        env = {"x": like, "spike": 0.0, **dict.fromkeys(self.eq.states, 0.0), **params}
        out = {}
        for name, fn in self.init:
            value = fn(**env)
            out[name] = torch.zeros_like(like) + value if not torch.is_tensor(value) else \
                value.to(like).expand_as(like).clone()
        return out


@cache
def compiled_equations(model_cls: type[NeuronModel], reset: str,
                       options: tuple[tuple[str, Any], ...]) -> CompiledEquations:
    """Compiled once per model class (not name: a class redefined in a notebook recompiles)."""
    return CompiledEquations(model_cls().equations(reset=reset, **dict(options)))


class Neuron(StepModule):
    """A spiking neuron layer running ``model``'s equations (see ``snnir.neurons``).

    Args:
        model: the ``NeuronModel`` (built-in subclasses fix it).
        v_threshold: firing threshold (model default if omitted).
        v_reset: hard-reset potential; ``None`` selects soft reset (subtract the threshold).
        surrogate: surrogate gradient of the spike (default ``ATan(alpha=2)``).
        detach_reset: stop gradients through the reset.
        step_mode: ``'s'`` (``[N, ...]`` per call) or ``'m'`` (``[T, N, ...]`` per call).
        store_v_seq: in multi-step mode keep ``v_seq`` (``[T, N, ...]``, after reset).
        fused: run all time steps as one fused, generated kernel (CPU, float32/float64; the
            default). ``False`` selects the per-step reference path (torch ops per step).
        **kwargs: the model's parameters and options (e.g. ``tau``, ``decay_input``).

    State variables are attributes (``self.v``, ``self.i``, ...), ``None`` until the first step
    and after ``reset()``.

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> lif = snn.LIF(tau=2.0, step_mode="m")
        >>> lif(torch.full((3, 1, 1), 1.5)).flatten().tolist()   # v: 0.75, 1.125 -> spike, ...
        [0.0, 1.0, 0.0]
    """

    model: NeuronModel | None = None

    def __init__(self, model: NeuronModel | None = None, *, v_threshold: float = _DEFAULT,
                 v_reset: float | None = _DEFAULT, surrogate: Surrogate | None = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 fused: bool = True, **kwargs: Any) -> None:
        super().__init__()
        model = model if model is not None else type(self).model
        if model is None:
            raise TypeError("Neuron needs a NeuronModel, e.g. snn.Neuron(snnir.neurons.LIF())")
        self.model = model
        defaults = model.all_params()
        self.v_threshold = float(defaults["v_threshold"] if v_threshold is _DEFAULT else v_threshold)
        v_reset = defaults["v_reset"] if v_reset is _DEFAULT else v_reset
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate = surrogate if surrogate is not None else ATan()
        if not isinstance(self.surrogate, Surrogate):
            raise TypeError(f"surrogate must be a snnir.surrogate.Surrogate (e.g. snn.surrogate.ATan()), "
                            f"got {self.surrogate!r}")
        self.detach_reset = bool(detach_reset)
        self.step_mode = check_step_mode(step_mode)
        self.store_v_seq = bool(store_v_seq)
        self.fused = bool(fused)
        self.options = {k: kwargs.pop(k) for k in list(kwargs) if k in model.options}
        params = model.user_params(**kwargs)
        unknown = set(params) - set(model.params)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown arguments {sorted(unknown)}; model "
                            f"{model.name} takes {sorted([*model.params, *model.options])}")
        self.params: dict[str, float] = {}
        for name, default in model.params.items():
            value = params.get(name, default)
            if name in model.learnable:
                self.register_parameter(name, nn.Parameter(torch.as_tensor(value, dtype=torch.float32)))
            else:
                self.params[name] = float(value)
        for name in model.state:
            self.register_buffer(name, None, persistent=False)
        self.v_seq: torch.Tensor | None = None

    @property
    def reset_kind(self) -> str:
        return "soft" if self.v_reset is None else "hard"

    def equations(self) -> CompiledEquations:
        """The compiled equations for this module's reset kind and options (cached per model)."""
        return compiled_equations(type(self.model), self.reset_kind, tuple(sorted(self.options.items())))

    def _param_env(self) -> dict[str, Any]:
        env: dict[str, Any] = {"v_threshold": self.v_threshold,
                               "v_reset": 0.0 if self.v_reset is None else self.v_reset, **self.params}
        for name in self.model.learnable:
            env[name] = getattr(self, name)
        return env

    def state(self) -> dict[str, torch.Tensor | None]:
        """The current state tensors by name (``None`` before the first step)."""
        return {k: getattr(self, k) for k in self.model.state}

    def reset(self) -> None:
        """Forget the state (call between sequences)."""
        for k in self.model.state:
            setattr(self, k, None)
        self.v_seq = None

    def _current_state(self, x: torch.Tensor, params: dict[str, Any]) -> dict[str, torch.Tensor]:
        state = self.state()
        if state["v"] is None:
            return self.equations().initial_state(x, params)
        if state["v"].shape != x.shape:
            raise ValueError(f"{type(self).__name__}: input shape {tuple(x.shape)} differs from the state "
                             f"shape {tuple(state['v'].shape)}; call snn.reset(net) between sequences")
        return state  # type: ignore[return-value]

    def _kernel(self, x: torch.Tensor):
        if not self.fused or x.device.type != "cpu":
            return None
        if any(getattr(self, k).numel() != 1 for k in self.model.learnable):
            return None  # per-neuron learnable parameters: reference path
        return get_kernel(self.model, self.reset_kind, self.options, self.surrogate, self.detach_reset, x.dtype)

    def _run_fused(self, kernel, x_seq: torch.Tensor) -> torch.Tensor:
        params = self.equations().with_constants(self._param_env())
        state = self._current_state(x_seq[0], params)
        learnable = [getattr(self, k) for k in self.model.learnable]
        spikes, state, v_seq = fused_steps(kernel, x_seq, state, params, self.surrogate, learnable,
                                           self.store_v_seq and self.step_mode == "m")
        for k, value in state.items():
            setattr(self, k, value)
        if v_seq is not None:
            self.v_seq = v_seq
        return spikes

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self._kernel(x)
        if kernel is not None:
            return self._run_fused(kernel, x.unsqueeze(0))[0]
        return self.reference_step(x)

    def reference_step(self, x: torch.Tensor) -> torch.Tensor:
        """One step through torch ops generated from the equations (the unfused reference)."""
        eqs = self.equations()
        params = eqs.with_constants(self._param_env())
        state = self._current_state(x, params)
        spikes, state = eqs.step(x, state, params, self.surrogate, self.detach_reset)
        for k, value in state.items():
            setattr(self, k, value)
        return spikes

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        kernel = self._kernel(x_seq)
        if kernel is not None and x_seq.shape[0] > 0:
            return self._run_fused(kernel, x_seq)
        spikes, v_seq = [], []
        for x in x_seq.unbind(0):  # unbind, not x_seq[t]: indexing costs O(T^2) in backward
            spikes.append(self.reference_step(x))
            if self.store_v_seq:
                v_seq.append(self.v)
        if self.store_v_seq:
            self.v_seq = torch.stack(v_seq)
        return torch.stack(spikes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.single_step(x) if self.step_mode == "s" else self.multi_step(x)

    def extra_repr(self) -> str:
        opts = [f"{k}={v}" for k, v in {**self.params, **self.options}.items()]
        return ", ".join([*opts, f"v_threshold={self.v_threshold}", f"v_reset={self.v_reset}",
                          f"detach_reset={self.detach_reset}", f"surrogate={self.surrogate}",
                          f"step_mode={self.step_mode}"])


def neuron_class(model: type[NeuronModel] | NeuronModel, name: str | None = None) -> type[Neuron]:
    """A ``Neuron`` subclass bound to ``model``: the module class for a user-defined model.

    Example:
        >>> from snnir.neurons import NeuronModel
        >>> from snnir import nn as snn
        >>> class Doubler(NeuronModel):
        ...     def charge(self, s, **options):
        ...         return {"v": s.v + 2 * s.x}
        >>> DoublerNeuron = snn.neuron_class(Doubler)
        >>> DoublerNeuron(v_threshold=1.0)(torch.tensor([0.6])).tolist()
        [1.0]
    """
    instance = model() if isinstance(model, type) else model
    cls = type(name or instance.name, (Neuron,), {"model": instance, "__doc__": type(instance).__doc__,
                                                  "__module__": __name__})
    cls.__signature__ = neuron_signature(cls)  # help() shows the model's defaults, not **kwargs
    return cls


def _builtin(model: type[NeuronModel]) -> type[Neuron]:
    return neuron_class(model)


IF = _builtin(models.IF)
LIF = _builtin(models.LIF)
QIF = _builtin(models.QIF)
EIF = _builtin(models.EIF)
Izhikevich = _builtin(models.Izhikevich)
CubaLIF = _builtin(models.CubaLIF)
AdaptiveLIF = _builtin(models.AdaptiveLIF)


class ParametricLIF(Neuron):
    __doc__ = models.ParametricLIF.__doc__
    model = models.ParametricLIF()

    def __init__(self, init_tau: float = 2.0, **kwargs: Any) -> None:
        super().__init__(init_tau=init_tau, **kwargs)

    @property
    def tau(self) -> torch.Tensor:
        """The current time constant ``1 / sigmoid(w)``."""
        return 1.0 / torch.sigmoid(self.w.detach())


ParametricLIF.__signature__ = neuron_signature(ParametricLIF)  # type: ignore[attr-defined]


BUILTIN_NEURONS: dict[str, type[Neuron]] = {c.model.name: c for c in  # type: ignore[union-attr]
                                            (IF, LIF, ParametricLIF, QIF, EIF, Izhikevich, CubaLIF, AdaptiveLIF)}


def neuron_for(model_name: str) -> Callable[..., Neuron]:
    """The module class for a registered model name (built-in or user-defined)."""
    if model_name in BUILTIN_NEURONS:
        return BUILTIN_NEURONS[model_name]
    return neuron_class(models.get_model(model_name))
